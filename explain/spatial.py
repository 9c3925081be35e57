"""Spatial explanations: a method from `explain.explainers` (Grad-CAM by default) maps a
probe's step logit over the encoder's input crop, and the map is placed back into the
full frame. The map is upsampled to the crop, warped into the frame through the crop geometry, and two points
are reported in normalised frame coordinates (0..1, origin top-left): its maximum, and
its hot-spot centre — the map-weighted centre of the connected region around the
maximum where the map is at least half its maximum. A coarse map (a 7×7 to 16×16 grid
upsampled) often peaks on one edge of the area it marks (a blending seam, say); the
hot-spot centre is where that area is, which is what a human click marks.

Sanity check (model and data randomisation, Adebayo et al. 2018): the maps are recomputed
with the encoder replaced by its untrained twin and with the probe's weights shuffled; a
median Spearman rank correlation above SANITY_MAX_CORRELATION under either flags the maps
as not depending on the model (`randomisation_check`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

from explain.explainers import DEFAULT_EXPLAINER, Explainer, default_explainer, get_explainer, gradcam_target
from explain.temporal import top_peaks
from models.analysis import AnalysisResult
from models.encoders import Encoder, get_encoder, takes_face_crops
from models.encoders.vision import FrameEncoder
from models.errors import AnalysisError
from models.faces import FACE_CROP_SIZE, CropGeometry
from models.probes import LinearProbe
from models.timing import STEP_RATE

SANITY_MAX_CORRELATION = 0.5
MAXIMUM_LEVEL = 1 - 1e-6  # a map's maximum: where it is within this share of its top value
RANDOMISED_BLOCKS = 2


@dataclass
class Heatmap:
    """One step's explanation: the crop map, the map in the frame and its maximum."""

    probe_id: str
    step: int
    logit: float
    crop_map: np.ndarray  # (crop, crop) 0..1
    frame_map: np.ndarray  # (H, W) 0..1 on the working frame
    peak: tuple[float, float]  # normalised frame coordinates of the maximum
    hotspot: tuple[float, float]  # normalised frame coordinates of the hot-spot centre

    @property
    def time(self) -> float:
        return self.step / STEP_RATE

    def to_dict(self) -> dict:
        return {"probe": self.probe_id, "step": self.step, "time": round(self.time, 4), "logit": round(self.logit, 6),
                "peak": [round(self.peak[0], 6), round(self.peak[1], 6)],
                "hotspot": [round(self.hotspot[0], 6), round(self.hotspot[1], 6)]}


def map_to_frame(crop_map: np.ndarray, geometry: CropGeometry) -> tuple[np.ndarray, tuple[float, float]]:
    """Warp a crop-space map into the frame; the peak is the centre of the map's maximum
    (window-based maps are flat over a window: the centre of that plateau, not its first
    pixel) carried through the crop geometry (so it is exact even when the box leaves the frame)."""
    frame_map = cv2.warpAffine(crop_map.astype(np.float32), geometry.crop_to_frame_matrix(),
                               (geometry.frame_width, geometry.frame_height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
    return frame_map, hotspot(crop_map, geometry, MAXIMUM_LEVEL)


def hotspot(crop_map: np.ndarray, geometry: CropGeometry, level: float = 0.5) -> tuple[float, float]:
    """The hot-spot centre in normalised frame coordinates: the map-weighted centre of the
    connected region holding the maximum where the map is at least `level` × its maximum."""
    peak_row, peak_col = np.unravel_index(int(np.argmax(crop_map)), crop_map.shape)
    _, labels = cv2.connectedComponents((crop_map >= level * crop_map.max()).astype(np.uint8))
    weights = np.where(labels == labels[peak_row, peak_col], crop_map, 0.0)
    rows, cols = np.indices(crop_map.shape)
    total = weights.sum()
    if total <= 0:  # an all-zero map has no hot spot: its centre is the maximum's pixel
        return _crop_pixel_to_frame(peak_col + 0.5, peak_row + 0.5, crop_map.shape[0], geometry)
    return _crop_pixel_to_frame(float(((cols + 0.5) * weights).sum() / total),
                                float(((rows + 0.5) * weights).sum() / total), crop_map.shape[0], geometry)


def _crop_pixel_to_frame(x: float, y: float, map_size: int, geometry: CropGeometry) -> tuple[float, float]:
    """A point of a (map_size × map_size) crop map in normalised frame coordinates, clipped to the frame."""
    scale = geometry.out_size / map_size
    frame_x, frame_y = geometry.crop_points_to_frame([[x * scale, y * scale]])[0]
    return float(np.clip(frame_x, 0, 1)), float(np.clip(frame_y, 0, 1))


def overlay(frame: np.ndarray, frame_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The frame with the heatmap blended on top (jet colours where the map is high)."""
    coloured = cv2.applyColorMap((np.clip(frame_map, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    weight = (alpha * np.clip(frame_map, 0, 1))[..., None]
    return (frame * (1 - weight) + coloured * weight).astype(np.uint8)


@dataclass
class SpatialExplanation:
    probe_id: str
    encoder_id: str
    heatmaps: list[Heatmap]
    sanity: dict = field(default_factory=dict)
    method: str = DEFAULT_EXPLAINER

    def heatmap(self, step: int) -> Heatmap | None:
        return next((h for h in self.heatmaps if h.step == step), None)

    def to_dict(self) -> dict:
        return {"probe": self.probe_id, "encoder": self.encoder_id, "method": self.method,
                "heatmaps": [h.to_dict() for h in self.heatmaps], "sanity": self.sanity}


def spatial_probes(result: AnalysisResult) -> list[str]:
    """The probes of an analysis that can be explained spatially (face-crop image encoders)."""
    return [pid for pid, r in result.probes.items() if takes_face_crops(r.encoder_id)]


def probe_encoder(result: AnalysisResult, probe_id: str) -> tuple[Encoder, LinearProbe]:
    """The encoder (with the weights and precision the analysis ran with) and the probe behind
    one probe of an analysis, or a clear error."""
    if probe_id not in result.probes:
        raise AnalysisError(f"probe {probe_id!r} was not part of this analysis.")
    probe_result = result.probes[probe_id]
    settings = result.options.settings if result.options else None
    encoder = get_encoder(probe_result.encoder_id, settings.weights_for(probe_result.encoder_id) if settings else None,
                          settings.precision if settings else "auto")
    return encoder, probe_result.probe


def spatial_encoder(result: AnalysisResult, probe_id: str) -> tuple[FrameEncoder, LinearProbe]:
    """The frame encoder and probe behind one probe of an analysis, or a clear error."""
    encoder, probe = probe_encoder(result, probe_id)
    if not isinstance(encoder, FrameEncoder):
        raise AnalysisError(f"probe {probe_id} runs on {result.probes[probe_id].encoder_id}, which has no image "
                            "input; spatial explanations need a face-crop image encoder (CLIP, FSFM, self-blend CNN).")
    if result.clip is None or result.face_track is None:
        raise AnalysisError("this analysis kept no frames or face track to explain.")
    return encoder, probe


def explain_spatial(result: AnalysisResult, probe_id: str, steps: list[int] | None = None, k: int = 3,
                    sanity: bool = True, method: str | None = None) -> SpatialExplanation:
    """Heatmaps of one explanation method (default: the encoder's shipped one) for `steps`
    (default: the probe's top-k peaks) of one analysed video, with the randomisation sanity check."""
    encoder, probe = spatial_encoder(result, probe_id)
    method = method or default_explainer(probe.encoder_id)
    explainer = get_explainer(method)
    if steps is None:
        steps = top_peaks(result.probes[probe_id].scores.logits, k)
    steps, geometries, crops = step_crops(result, steps)
    if sanity:  # beside the probe: its shuffled head, and the probe through the encoder's untrained twin
        attribution, sanity_maps = explainer.attribute_with_sanity(encoder, probe, shuffled_probe(probe), crops,
                                                                   reference_network(encoder))
        report = randomisation_check(*sanity_maps)
    else:
        attribution, report = explainer.attribute(encoder, probe, crops), {}
    maps = explainer.step_maps(probe, steps, *attribution)
    heatmaps = [Heatmap(probe_id, m.step, m.logit, m.crop_map, *map_to_frame(m.crop_map, geometry),
                        hotspot(m.crop_map, geometry)) for m, geometry in zip(maps, geometries)]
    return SpatialExplanation(probe_id, probe.encoder_id, heatmaps, report, method)


def step_crops(result: AnalysisResult, steps: list[int]) -> tuple[list[int], list[CropGeometry], np.ndarray]:
    """The valid ones of the chosen steps, their face-crop geometries and crops (N, crop,
    crop, 3), or a clear error when none is valid."""
    steps = [int(s) for s in steps if 0 <= int(s) < result.clip.n_steps]
    if not steps:
        raise AnalysisError("no valid steps to explain.", hint=f"Steps run from 0 to {result.clip.n_steps - 1}.")
    geometries = [result.face_track.face_geometry(s, FACE_CROP_SIZE) for s in steps]
    return steps, geometries, np.stack([g.extract(result.clip.frames[s]) for g, s in zip(geometries, steps)])


def randomised_network(network: nn.Module, blocks: int = RANDOMISED_BLOCKS, seed: int = 0) -> nn.Module:
    """A copy of `network` with its top `blocks` blocks re-initialised (seeded)."""
    clone = copy.deepcopy(network)
    torch.manual_seed(seed)
    for block in list(gradcam_target(clone).blocks)[-blocks:]:
        for module in block.modules():
            if hasattr(module, "reset_parameters") and module is not block:
                module.reset_parameters()
    return clone.float().to(next(network.parameters()).dtype)


def shuffled_probe(probe: LinearProbe) -> LinearProbe:
    """The probe with its weights shuffled across features (seeded): a head that learned nothing."""
    return LinearProbe(np.random.default_rng(0).permutation(probe.weight), probe.bias, probe.card, probe.projection)


def randomisation_check(maps: np.ndarray, twin_maps: np.ndarray, shuffled_maps: np.ndarray) -> dict:
    """Do the maps depend on what the model learned? Two randomisations (Adebayo et al. 2018),
    each compared by the median Spearman rank correlation of the maps:

    - parameters: the whole encoder replaced by its untrained twin, the same architecture at
      the registry's random initialisation (the paper's random baseline);
    - data: the probe's weights shuffled across features, a head that learned nothing.

    Maps that stay similar under either (correlation above SANITY_MAX_CORRELATION) do not
    depend on the model, and the check fails. A random-init encoder is its own twin, so
    its maps fail it by construction: they show the architecture, not learning.
    `twin_maps` are the probe's through the untrained twin (`reference_network`),
    `shuffled_maps` the shuffled head's (`shuffled_probe`), both computed beside `maps`."""
    parameters = _median_correlation(maps, twin_maps)
    data = _median_correlation(maps, shuffled_maps)
    finite = [v for v in (parameters, data) if np.isfinite(v)]
    worst = max(finite) if finite else 1.0  # maps without any structure explain nothing
    return {"test": "model and data randomisation (untrained twin encoder; shuffled probe weights)",
            "parameter_randomisation_correlation": _rounded(parameters),
            "data_randomisation_correlation": _rounded(data), "median_rank_correlation": _rounded(worst),
            "threshold": SANITY_MAX_CORRELATION, "explains_model": bool(worst <= SANITY_MAX_CORRELATION)}


def reference_network(encoder: FrameEncoder) -> nn.Module:
    """The encoder's architecture at the registry's random initialisation: its `random-`
    twin (itself, for a random-init encoder), or its blocks re-drawn where no twin exists."""
    spec = encoder.spec
    twin = spec.id if spec.source == "random" else f"random-{spec.id}"
    try:
        return get_encoder(twin, None, "bf16" if encoder.dtype == torch.bfloat16 else "fp32").torch_module()
    except AnalysisError:
        network = encoder.torch_module()
        return randomised_network(network, len(gradcam_target(network).blocks), seed=spec.seed)


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None  # None: a flat map has no rank order


def _median_correlation(maps: np.ndarray, others: np.ndarray) -> float:
    correlations = [_spearman(a, b) for a, b in zip(maps, others)]
    return float(np.nanmedian(correlations)) if np.isfinite(correlations).any() else float("nan")


def cascade_depths(network: nn.Module) -> list[int]:
    """How many top blocks the cascading randomisation re-initialises at each stage: one,
    two, half and all of them (Adebayo et al. randomise from the top down to the input)."""
    total = len(gradcam_target(network).blocks)
    return sorted({min(total, depth) for depth in (1, 2, max(1, total // 2), total)})


def randomised_maps(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray, blocks: int,
                    seed: int, explainer: Explainer | None = None) -> np.ndarray:
    """Maps of the crops (by `explainer`, default Grad-CAM) through the encoder with its top
    `blocks` blocks re-drawn (seeded)."""
    network = randomised_network(encoder.torch_module(), blocks, seed)
    return (explainer or get_explainer()).attribute(encoder, probe, crops, network)[0]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    small_a = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA).ravel()
    small_b = cv2.resize(b, (32, 32), interpolation=cv2.INTER_AREA).ravel()
    if small_a.std() == 0 or small_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(average_ranks(small_a), average_ranks(small_b))[0, 1])


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks (0-based) of a flat array, ties given their mean rank: Spearman's correlation is
    the Pearson correlation of these (written here: scipy.stats takes 0.8 s to import)."""
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts - 1) / 2, counts)
    return ranks


def pointing_game(peak: tuple[float, float], box: list[float]) -> bool:
    """True when the normalised point lies inside the normalised box [x0, y0, x1, y1]."""
    return box[0] <= peak[0] <= box[2] and box[1] <= peak[1] <= box[3]
