"""Integrated gradients (captum) of a probe's step logit with respect to the encoder's
preprocessed pixels, from a heavily blurred copy of the crop (the evidence removed, the
colours and layout kept). The map is the absolute attribution summed over the colour
channels, lightly smoothed (sigma = input side / 56: 4 px at 224) so single-pixel
gradient noise does not win the maximum, then brought to the crop size and scaled to 0..1.

Cost: IG_STEPS forward and backward passes through the whole network per crop (Grad-CAM
needs one, from its layer up): on CLIP ViT-L/14 in bf16, 337 s and 1.8 GB per crop against
Grad-CAM's 4 s, on the self-blend CNN 2.3 s against 0.3 s (two cores shared with another job).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from explain.explainers.base import Explainer, blurred_crops, crop_logits, to_crop_size
from models.encoders.vision import FrameEncoder
from models.probes import LinearProbe

IG_STEPS = 16  # points on the path from the blurred crop to the crop (captum's default is 50)
IG_BATCH = 8  # path points per forward pass (every layer keeps its activations for the backward pass)
SMOOTH_SIGMA_FRACTION = 1 / 56


class IntegratedGradients(Explainer):
    """Integrated gradients of the step logit from the blurred crop, |attribution| summed over channels."""

    name = "integrated-gradients"

    def attribute(self, encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                  network: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        return integrated_gradients(encoder, probe, crops, network)


def integrated_gradients(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                         network: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """IG maps (N, crop, crop) in 0..1 and the step logits (N,) of face crops (N, H, W, 3);
    `network` replaces the encoder's (for the sanity check)."""
    # lazy: captum takes about 0.8 s to import (it loads pyplot)
    from captum.attr import IntegratedGradients as CaptumIntegratedGradients

    network = network or encoder.torch_module()
    pixels, baselines = encoder.preprocess(crops), encoder.preprocess(blurred_crops(crops))
    method = CaptumIntegratedGradients(lambda x: probe.head_logits(network(x)))
    with torch.enable_grad():
        attribution = method.attribute(pixels, baselines, n_steps=IG_STEPS, internal_batch_size=IG_BATCH)
    maps = attribution.detach().float().abs().sum(1).numpy()
    return to_crop_size(smoothed(maps), crops.shape[1]), crop_logits(encoder, probe, crops, network)


def smoothed(maps: np.ndarray) -> np.ndarray:
    """(N, h, w) maps blurred lightly (sigma = h × SMOOTH_SIGMA_FRACTION)."""
    sigma = max(0.5, SMOOTH_SIGMA_FRACTION * maps.shape[1])
    return np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigmaX=sigma) for m in maps])
