"""The one interface every spatial explanation method implements (as pytorch-grad-cam's
base class does): maps of a probe's step logit over its encoder's input crops."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from models.encoders.vision import FrameEncoder
from models.errors import AnalysisError
from models.probes import LinearProbe
from models.timing import STEP_RATE

Attribution = tuple[np.ndarray, np.ndarray]  # maps (N, crop, crop) in 0..1 and step logits (N,)
BLUR_SIGMA_FRACTION = 1 / 8  # the blurred crop's Gaussian sigma as a share of the crop side
LOGIT_BATCH = 16


class SanityMaps(NamedTuple):
    """The three sets of maps (N, crop, crop) the randomisation sanity check compares: the
    probe's, the probe's through the encoder's untrained twin, and the shuffled head's."""

    maps: np.ndarray
    twin_maps: np.ndarray
    shuffled_maps: np.ndarray


@dataclass
class StepMap:
    """One step's map over the encoder's input crop (0..1, crop size), with the logit it explains."""

    probe_id: str
    step: int
    crop_map: np.ndarray
    logit: float

    @property
    def time_s(self) -> float:
        """The start of the step on the 25 Hz clock."""
        return self.step / STEP_RATE


class Explainer:
    """An explanation method. Subclasses implement `attribute`; `__call__` ties the maps to
    their steps and probe."""

    name = ""

    def __call__(self, encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                 steps: Sequence[int]) -> list[StepMap]:
        """Maps for the face crops (N, H, W, 3) of `steps`, one per step."""
        if len(crops) != len(steps):
            raise AnalysisError(f"{len(crops)} crops were given for {len(steps)} steps.")
        return self.step_maps(probe, steps, *self.attribute(encoder, probe, crops))

    @staticmethod
    def step_maps(probe: LinearProbe, steps: Sequence[int], maps: np.ndarray, logits: np.ndarray) -> list[StepMap]:
        """`attribute`'s maps and logits tied to their steps and probe."""
        return [StepMap(probe.id, int(step), crop_map, float(logit))
                for step, crop_map, logit in zip(steps, maps, logits)]

    def attribute(self, encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                  network: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Maps (N, crop, crop) scaled to 0..1 and the step logits (N,) of the crops;
        `network` stands in for the encoder's own (the randomisation sanity check)."""
        raise NotImplementedError

    def attribute_heads(self, encoder: FrameEncoder, probes: Sequence[LinearProbe], crops: np.ndarray,
                        network: nn.Module | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """`attribute` for several heads on one encoder (the sanity check's shuffled head beside
        the probe); a method whose passes do not depend on the head shares them."""
        return [self.attribute(encoder, probe, crops, network) for probe in probes]

    def attribute_with_sanity(self, encoder: FrameEncoder, probe: LinearProbe, shuffled: LinearProbe,
                              crops: np.ndarray, twin: nn.Module) -> tuple[Attribution, SanityMaps]:
        """The probe's `attribute`, and the maps the randomisation sanity check compares (the
        probe's, through `twin`, the encoder's untrained twin, and the `shuffled` head's); a
        method that feeds both networks the same inputs prepares them once."""
        (maps, logits), (shuffled_maps, _) = self.attribute_heads(encoder, [probe, shuffled], crops)
        twin_maps = self.attribute(encoder, probe, crops, twin)[0]
        return (maps, logits), SanityMaps(maps, twin_maps, shuffled_maps)


def to_crop_size(maps: np.ndarray, size: int) -> np.ndarray:
    """Upsample (N, h, w) maps to (N, size, size) and scale each to 0..1."""
    out = np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])
    peaks = out.reshape(len(out), -1).max(1)
    return out / np.where(peaks > 0, peaks, 1.0)[:, None, None]


def blurred_crops(crops: np.ndarray) -> np.ndarray:
    """Heavily blurred copies of (N, H, W, 3) uint8 crops (sigma = H/8): the "nothing to see"
    reference that integrated gradients start from and occlusion and deletion fill in with."""
    sigma = BLUR_SIGMA_FRACTION * crops.shape[1]
    return np.stack([cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
                     for crop in crops])


def crop_logits(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                network: nn.Module | None = None) -> np.ndarray:
    """The probe's step logits (N,) of (N, H, W, 3) uint8 crops through the encoder's network
    (or `network`), in batches of LOGIT_BATCH, without gradients."""
    return networks_crop_logits(encoder, [probe], crops, [network])[0][0]


def networks_crop_logits(encoder: FrameEncoder, probes: Sequence[LinearProbe], crops: np.ndarray,
                         networks: Sequence[nn.Module | None],
                         subsets: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Per network (None: the encoder's own), the (P, n) step logits of several heads on the
    crops, or on its subset of them (indices; None: all); each batch of crops is preprocessed
    once for all networks."""
    networks = [network or encoder.torch_module() for network in networks]
    masks = [np.ones(len(crops), bool) if rows is None else np.isin(np.arange(len(crops)), rows)
             for rows in (subsets or [None] * len(networks))]
    out: list[list[np.ndarray]] = [[] for _ in networks]
    with torch.no_grad():
        for start in range(0, len(crops), LOGIT_BATCH):
            pixels = encoder.preprocess(crops[start:start + LOGIT_BATCH])
            for rows, network, mask in zip(out, networks, masks):
                batch_mask = torch.from_numpy(mask[start:start + LOGIT_BATCH])
                if batch_mask.any():
                    features = network(pixels if batch_mask.all() else pixels[batch_mask])
                    rows.append(np.stack([probe.head_logits(features).float().numpy() for probe in probes]))
    return [np.concatenate(rows, axis=1) if rows else np.zeros((len(probes), 0)) for rows in out]
