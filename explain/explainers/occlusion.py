"""Occlusion: how far the probe's step logit drops when one square window of the crop is
replaced by the same window of the heavily blurred crop; a pixel's value is the mean drop
of the windows covering it, and only drops count (a window whose blurring raises the logit
scores 0). Windows are a seventh of the crop side (32 px at 224).

`occlusion` lays them side by side, 7 × 7 = 49 forward passes a crop; `occlusion-fine`
slides them by half a window, 13 × 13 = 169 passes (the last window flush with the far edge
in both, so every pixel is covered). On the left-out visual families of
`benchmarks/bench_explanations.py` the 49 windows pointed at the manipulation as often as
the 169 and placed the hot spot as close, at 3.4 times less cost, so they are the default.
Without gradients: on the self-blend CNN 0.08 s a crop (fine: 0.21 s) on two idle cores; on
CLIP ViT-L/14 in bf16 the fine grid took 200 s a crop (Grad-CAM 4 s).

The randomisation sanity check compares maps on the windows of the grid that tile the crop
(all of them for `occlusion`, every other position for `occlusion-fine`): the untrained
twin runs only those, and the model's and the shuffled head's maps on them are read off
the same windows' drops, so the check adds at most 49 passes a crop.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from explain.explainers.base import (
    Attribution,
    Explainer,
    SanityMaps,
    blurred_crops,
    networks_crop_logits,
    to_crop_size,
)
from models.encoders.vision import FrameEncoder
from models.probes import LinearProbe

WINDOW_FRACTION = 1 / 7  # window side as a share of the crop side
STRIDE_FRACTION = 1.0  # stride as a share of the window side: windows side by side


class Occlusion(Explainer):
    """The drop of the step logit when a window is blurred, averaged over the windows covering each pixel."""

    name = "occlusion"
    stride_fraction = STRIDE_FRACTION

    def attribute(self, encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                  network: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.attribute_heads(encoder, [probe], crops, network)[0]

    def attribute_heads(self, encoder: FrameEncoder, probes: Sequence[LinearProbe], crops: np.ndarray,
                        network: nn.Module | None = None) -> list[Attribution]:
        side = crops.shape[1]
        corners, window = occlusion_windows(side, self.stride_fraction)
        logits, drops, _ = window_drops(encoder, probes, crops, corners, window, network)
        return [(drop_maps(head_drops, corners, window, side), head_logits)
                for head_drops, head_logits in zip(drops, logits)]

    def attribute_with_sanity(self, encoder: FrameEncoder, probe: LinearProbe, shuffled: LinearProbe,
                              crops: np.ndarray, twin: nn.Module) -> tuple[Attribution, SanityMaps]:
        side = crops.shape[1]
        corners, window = occlusion_windows(side, self.stride_fraction)
        tiling = tiling_windows(corners, window)
        logits, drops, twin_drops = window_drops(encoder, [probe, shuffled], crops, corners, window, None,
                                                 twin, tiling)
        tiles = [corners[index] for index in tiling]
        maps, shuffled_maps = (drop_maps(head_drops[:, tiling], tiles, window, side) for head_drops in drops)
        sanity = SanityMaps(maps, drop_maps(twin_drops, tiles, window, side), shuffled_maps)
        return (drop_maps(drops[0], corners, window, side), logits[0]), sanity


class FineOcclusion(Occlusion):
    """Occlusion with windows sliding by half a window: finer maps at 3.4 times the cost."""

    name = "occlusion-fine"
    stride_fraction = 1 / 2


def occlusion_windows(side: int, stride_fraction: float = STRIDE_FRACTION) -> tuple[list[tuple[int, int]], int]:
    """The (row, column) corners of the sliding windows over a square of `side` pixels, and
    the window side; the windows cover every pixel."""
    window = max(1, round(side * WINDOW_FRACTION))
    stride = max(1, round(window * stride_fraction))
    starts = list(range(0, side - window + 1, stride))
    if starts[-1] != side - window:
        starts.append(side - window)
    return [(row, col) for row in starts for col in starts], window


def tiling_windows(corners: list[tuple[int, int]], window: int) -> np.ndarray:
    """Indices of the windows, among a grid's `corners`, that still cover every pixel with
    the fewest overlaps: along each axis, from the first position, the farthest one within a
    window of the last kept (a grid sliding by half a window keeps every other position)."""
    starts = sorted({row for row, _ in corners})
    kept = [starts[0]]
    while kept[-1] != starts[-1]:
        kept.append(max(start for start in starts if start <= kept[-1] + window))
    chosen = set(kept)
    return np.array([index for index, (row, col) in enumerate(corners) if row in chosen and col in chosen])


def window_drops(encoder: FrameEncoder, probes: Sequence[LinearProbe], crops: np.ndarray,
                 corners: list[tuple[int, int]], window: int, network: nn.Module | None = None,
                 twin: nn.Module | None = None, twin_windows: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The heads' step logits (P, N) of the crops, their logit drops (P, N, windows) when
    each window is blurred and, with a `twin` network, the first head's drops through it
    (N, twin windows) on `twin_windows` only; each occluded crop is preprocessed once."""
    networks = [network] if twin is None else [network, twin]
    logits = networks_crop_logits(encoder, probes, crops, networks)
    drops, twin_drops = [], []
    for index, (crop, fill) in enumerate(zip(crops, blurred_crops(crops))):
        occluded = np.repeat(crop[None], len(corners), 0)
        for image, (row, col) in zip(occluded, corners):
            image[row:row + window, col:col + window] = fill[row:row + window, col:col + window]
        occluded_logits = networks_crop_logits(encoder, probes, occluded, networks,
                                               None if twin is None else [None, twin_windows])
        drops.append(logits[0][:, index, None] - occluded_logits[0])
        if twin is not None:
            twin_drops.append(logits[1][0, index] - occluded_logits[1][0])
    return logits[0], np.stack(drops, axis=1), np.stack(twin_drops) if twin is not None else None


def drop_maps(drops: np.ndarray, corners: list[tuple[int, int]], window: int, side: int) -> np.ndarray:
    """Maps (N, side, side) in 0..1 from the logit drops (N, windows): per pixel, the mean
    drop of the windows covering it, rises counted as 0."""
    count = np.zeros((side, side))
    total = np.zeros((len(drops), side, side))
    for index, (row, col) in enumerate(corners):
        count[row:row + window, col:col + window] += 1
        total[:, row:row + window, col:col + window] += drops[:, index, None, None]
    return to_crop_size(np.clip(total / count, 0, None), side)
