"""VideoMAE through transformers on 16-step windows of face crops.

How the paper brings VideoMAE clip embeddings to 25 Hz is unverified; here a
16-step window (tubelet 2) is encoded every `window_stride` steps and each step takes
the embedding of the window whose centre is nearest (documented choice).
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import VideoMAEConfig, VideoMAEModel

from models.encoders.base import ClipInputs, Encoder, EncoderSpec, Progress, hub_unavailable, offline_mode
from models.encoders.vision import IMAGENET_MEAN, IMAGENET_STD, to_tensor

WINDOW_STEPS = 16
WINDOW_STRIDE = 8


def load_videomae(spec: EncoderSpec, weights: str | None) -> torch.nn.Module:
    """VideoMAEModel from a hub id or local folder (the same call), or random-init."""
    if weights is None:
        torch.manual_seed(spec.seed)
        return VideoMAEModel(VideoMAEConfig(**spec.arch))
    try:
        return VideoMAEModel.from_pretrained(weights, local_files_only=offline_mode())
    except OSError as error:
        raise hub_unavailable(spec, weights, error) from None


def window_starts(n_steps: int, window: int = WINDOW_STEPS, stride: int = WINDOW_STRIDE) -> list[int]:
    """Start steps of the encoded windows; the last window ends at the last step."""
    if n_steps <= window:
        return [0]
    starts = list(range(0, n_steps - window + 1, stride))
    if starts[-1] != n_steps - window:
        starts.append(n_steps - window)
    return starts


class VideoMAEEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, precision)
        self.network = load_videomae(spec, weights).eval().to(self.dtype)
        self.network.requires_grad_(False)
        self.window = self.network.config.num_frames

    def torch_module(self) -> torch.nn.Module:
        return self.network

    @torch.inference_mode()
    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        crops = inputs.face_crops
        n_steps = len(crops)
        if n_steps < self.window:  # pad short clips by repeating the last crop
            crops = np.concatenate([crops[:], np.repeat(crops[-1:], self.window - n_steps, 0)], 0)
        starts = window_starts(len(crops), self.window)
        embeddings = []
        for index, start in enumerate(starts):
            pixels = to_tensor(crops[start:start + self.window], IMAGENET_MEAN, IMAGENET_STD, self.dtype)
            hidden = self.network(pixel_values=pixels[None]).last_hidden_state
            embeddings.append(hidden.mean(1)[0].float().numpy())
            if progress:
                progress((index + 1) / len(starts))
        centres = np.array(starts) + (self.window - 1) / 2
        nearest = np.abs(np.arange(n_steps)[:, None] - centres[None]).argmin(1)
        return np.stack(embeddings)[nearest]
