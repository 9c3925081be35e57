"""Spatial explanations: Grad-CAM (captum's LayerGradCam) of a probe's step logit with
respect to the encoder's input crop, placed back into the full frame.

Target layer: for ViTs (timm: FSFM, the project's self-blend ViT; open_clip: CLIP) the
last block's pre-attention LayerNorm, patch tokens reshaped to their grid (prefix tokens
dropped); for CNNs the layer the encoder names (its last convolutional stage). The map is
upsampled to the crop, warped into the frame through the crop geometry, and two points
are reported in normalised frame coordinates (0..1, origin top-left): its maximum, and
its hot-spot centre — the map-weighted centre of the connected region around the
maximum where the map is at least half its maximum. A coarse map (a 7×7 to 16×16 grid
upsampled) often peaks on one edge of the area it marks (a blending seam, say); the
hot-spot centre is where that area is, which is what a human click marks.

Sanity check (model randomisation, Adebayo et al. 2018): the encoder's top blocks are
re-initialised and the maps recomputed; a median Spearman rank correlation above
SANITY_MAX_CORRELATION flags the maps as not explaining the model.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

from models.analysis import AnalysisResult
from models.encoders import get_encoder
from models.encoders.vision import FrameEncoder
from models.errors import AnalysisError
from models.faces import FACE_CROP_SIZE, CropGeometry
from models.probes import LinearProbe
from models.timing import STEP_RATE
from models.zoo import load_probe

SANITY_MAX_CORRELATION = 0.5
RANDOMISED_BLOCKS = 2
GRADCAM_BATCH = 8


@dataclass
class GradCamTarget:
    """Where Grad-CAM looks in one network."""

    layer: nn.Module  # its output is the activation map
    blocks: nn.ModuleList  # the stack whose top blocks the sanity check re-initialises
    grid: tuple[int, int] | None = None  # token grid for ViTs; None when the layer is already (N, C, H, W)
    prefix_tokens: int = 0
    sequence_first: bool = False  # tokens laid out (L, N, D) instead of (N, L, D)
    # attention works on (L, N, D) memory (torch's MultiheadAttention transposes batch-first input)
    attention_sequence_first: bool = False


def gradcam_target(network: nn.Module) -> GradCamTarget:
    """The Grad-CAM layer of a supported network (timm ViT, open_clip ViT, or a network
    that names its own `gradcam_layer` and `gradcam_blocks`)."""
    if hasattr(network, "gradcam_layer"):
        return GradCamTarget(network.gradcam_layer, network.gradcam_blocks)
    if hasattr(network, "blocks") and hasattr(network, "patch_embed"):  # timm VisionTransformer
        return GradCamTarget(network.blocks[-1].norm1, network.blocks, tuple(network.patch_embed.grid_size),
                             network.num_prefix_tokens)
    transformer = getattr(network, "transformer", None)
    if transformer is not None and hasattr(transformer, "resblocks"):  # open_clip VisionTransformer
        return GradCamTarget(transformer.resblocks[-1].ln_1, transformer.resblocks, tuple(network.grid_size), 1,
                             not getattr(transformer, "batch_first", True), attention_sequence_first=True)
    raise AnalysisError(f"Grad-CAM does not know where to look in {type(network).__name__}.",
                        hint="Spatial explanations support ViT (timm, open_clip) and CNN encoders that name their "
                             "gradcam_layer.")


class _GridTap(nn.Module):
    """Identity on a (N, C, h, w) grid: the layer captum attributes to."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


class _TokensAsGrid(nn.Module):
    """Wraps a ViT LayerNorm so its patch-token output passes through a (N, C, h, w) tap
    and back, unchanged; captum then sees a conv-like activation."""

    def __init__(self, norm: nn.Module, target: GradCamTarget):
        super().__init__()
        self.norm, self.target, self.tap = norm, target, _GridTap()

    def forward(self, tokens: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.norm(tokens, *args, **kwargs)
        if self.target.sequence_first:
            out = out.transpose(0, 1)
        prefix, patches = out[:, :self.target.prefix_tokens], out[:, self.target.prefix_tokens:]
        n, count, width = patches.shape
        grid = self.tap(patches.transpose(1, 2).reshape(n, width, *self.target.grid))
        out = torch.cat([prefix, grid.reshape(n, width, count).transpose(1, 2)], 1)
        if self.target.attention_sequence_first:
            # Same values, memory in the order attention reads it: a strided input that needs
            # gradients makes its projection broadcast the weight per token (a 1.6 GB copy in bf16).
            out = out.transpose(0, 1).contiguous().transpose(0, 1)
        return out.transpose(0, 1) if self.target.sequence_first else out


@contextlib.contextmanager
def _attribution_layer(network: nn.Module, target: GradCamTarget):
    """Yield the module captum should attribute to, swapping in the token-grid view for ViTs."""
    if target.grid is None:
        yield target.layer
        return
    parent, name = _parent_of(network, target.layer)
    wrapper = _TokensAsGrid(target.layer, target)
    setattr(parent, name, wrapper)
    try:
        yield wrapper.tap
    finally:
        setattr(parent, name, target.layer)


def _parent_of(network: nn.Module, layer: nn.Module) -> tuple[nn.Module, str]:
    for module in network.modules():
        for name, child in module.named_children():
            if child is layer:
                return module, name
    raise AnalysisError("the Grad-CAM layer is not part of the network.")


def grad_cam(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
             network: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (N, crop, crop) in 0..1 and the step logits (N,) for face crops
    (N, H, W, 3), batched; `network` replaces the encoder's (for the sanity check)."""
    from captum.attr import LayerGradCam

    network = network or encoder.torch_module()
    target = gradcam_target(network)

    logits: list[np.ndarray] = []

    def step_logit(pixels: torch.Tensor) -> torch.Tensor:
        out = probe.torch_logits(network(pixels))
        logits.append(out.detach().float().numpy())  # kept from the attribution's own forward pass
        return out

    maps = []
    # The graph starts at the target layer's input: the blocks below it run without
    # recording anything (the pixels and weights need no gradient), which halves the cost.
    hook = target.layer.register_forward_pre_hook(_track_gradients_from_here)
    try:
        with _attribution_layer(network, target) as layer, torch.enable_grad():
            cam = LayerGradCam(step_logit, layer)
            for start in range(0, len(crops), GRADCAM_BATCH):
                attribution = cam.attribute(encoder.preprocess(crops[start:start + GRADCAM_BATCH]),
                                            relu_attributions=True)
                maps.append(attribution[:, 0].detach().float().numpy())
    finally:
        hook.remove()
    if len(logits) != len(maps):
        raise AnalysisError("Grad-CAM ran the network an unexpected number of times.")
    return _to_crop_size(np.concatenate(maps), crops.shape[1]), np.concatenate(logits)


def _track_gradients_from_here(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer's input becomes a leaf that records gradients."""
    first = args[0]
    if isinstance(first, torch.Tensor) and not first.requires_grad:
        first = first.detach().requires_grad_(True)
    return (first, *args[1:])


def _to_crop_size(maps: np.ndarray, size: int) -> np.ndarray:
    """Upsample (N, h, w) maps to (N, size, size) and scale each to 0..1."""
    out = np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])
    peaks = out.reshape(len(out), -1).max(1)
    return out / np.where(peaks > 0, peaks, 1.0)[:, None, None]


@dataclass
class Heatmap:
    """One step's explanation: the crop map, the map in the frame and its maximum."""

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
        return {"step": self.step, "time": round(self.time, 4), "logit": round(self.logit, 6),
                "peak": [round(self.peak[0], 6), round(self.peak[1], 6)],
                "hotspot": [round(self.hotspot[0], 6), round(self.hotspot[1], 6)]}


def map_to_frame(crop_map: np.ndarray, geometry: CropGeometry) -> tuple[np.ndarray, tuple[float, float]]:
    """Warp a crop-space map into the frame; the peak is the crop maximum carried through
    the crop geometry (so it is exact even when the box leaves the frame)."""
    frame_map = cv2.warpAffine(crop_map.astype(np.float32), geometry.crop_to_frame_matrix(),
                               (geometry.frame_width, geometry.frame_height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
    row, col = np.unravel_index(int(np.argmax(crop_map)), crop_map.shape)
    return frame_map, _crop_pixel_to_frame(col + 0.5, row + 0.5, crop_map.shape[0], geometry)


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

    def heatmap(self, step: int) -> Heatmap | None:
        return next((h for h in self.heatmaps if h.step == step), None)

    def to_dict(self) -> dict:
        return {"probe": self.probe_id, "encoder": self.encoder_id, "method": "Grad-CAM (captum LayerGradCam)",
                "heatmaps": [h.to_dict() for h in self.heatmaps], "sanity": self.sanity}


def spatial_probes(result: AnalysisResult) -> list[str]:
    """The probes of an analysis that can be explained spatially (face-crop image encoders)."""
    from models.encoders import takes_face_crops

    return [pid for pid, r in result.probes.items() if takes_face_crops(r.encoder_id)]


def spatial_encoder(result: AnalysisResult, probe_id: str) -> tuple[FrameEncoder, LinearProbe]:
    """The frame encoder and probe behind one probe of an analysis, or a clear error."""
    if probe_id not in result.probes:
        raise AnalysisError(f"probe {probe_id!r} was not part of this analysis.")
    probe_result = result.probes[probe_id]
    options = result.options  # the weights and precision the analysis ran with
    encoder = get_encoder(probe_result.encoder_id, options.weights.get(probe_result.encoder_id) if options else None,
                          options.precision if options else "auto")
    if not isinstance(encoder, FrameEncoder):
        raise AnalysisError(f"probe {probe_id} runs on {probe_result.encoder_id}, which has no image input; "
                            "spatial explanations need a face-crop image encoder (CLIP, FSFM, self-blend CNN).")
    if result.clip is None or result.face_track is None:
        raise AnalysisError("this analysis kept no frames or face track to explain.")
    return encoder, load_probe(probe_id)


def explain_spatial(result: AnalysisResult, probe_id: str, steps: list[int] | None = None, k: int = 3,
                    sanity: bool = True) -> SpatialExplanation:
    """Grad-CAM heatmaps for `steps` (default: the probe's top-k peaks) of one analysed video,
    with the randomisation sanity check."""
    from explain.temporal import top_peaks

    encoder, probe = spatial_encoder(result, probe_id)
    scores = result.probes[probe_id].scores
    if steps is None:
        steps = top_peaks(scores.logits, k)
    steps, geometries, crops = step_crops(result, steps)
    maps, logits = grad_cam(encoder, probe, crops)
    report = randomisation_check(encoder, probe, crops, maps) if sanity else {}
    heatmaps = [Heatmap(step, float(logit), crop_map, *map_to_frame(crop_map, geometry), hotspot(crop_map, geometry))
                for step, geometry, crop_map, logit in zip(steps, geometries, maps, logits)]
    return SpatialExplanation(probe_id, probe.encoder_id, heatmaps, report)


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


def randomisation_check(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray, maps: np.ndarray,
                        blocks: int = RANDOMISED_BLOCKS) -> dict:
    """Median Spearman correlation between the maps and those of a top-block-randomised
    encoder; maps that barely change are flagged as not explaining the model."""
    from scipy.stats import spearmanr

    randomised = randomised_maps(encoder, probe, crops, blocks, seed=0)
    correlations = [_spearman(a, b, spearmanr) for a, b in zip(maps, randomised)]
    median = float(np.nanmedian(correlations)) if correlations else float("nan")
    return {"test": "model randomisation (top blocks re-initialised)", "blocks": blocks,
            "median_rank_correlation": round(median, 4), "threshold": SANITY_MAX_CORRELATION,
            "explains_model": bool(median <= SANITY_MAX_CORRELATION)}


def cascade_depths(network: nn.Module) -> list[int]:
    """How many top blocks the cascading randomisation re-initialises at each stage: one,
    two, half and all of them (Adebayo et al. randomise from the top down to the input)."""
    total = len(gradcam_target(network).blocks)
    return sorted({min(total, depth) for depth in (1, 2, max(1, total // 2), total)})


def randomised_maps(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray, blocks: int,
                    seed: int) -> np.ndarray:
    """Grad-CAM maps of the crops through the encoder with its top `blocks` blocks re-drawn (seeded)."""
    return grad_cam(encoder, probe, crops, randomised_network(encoder.torch_module(), blocks, seed))[0]


def _spearman(a: np.ndarray, b: np.ndarray, spearmanr) -> float:
    small_a = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA).ravel()
    small_b = cv2.resize(b, (32, 32), interpolation=cv2.INTER_AREA).ravel()
    if small_a.std() == 0 or small_b.std() == 0:
        return float("nan")
    return float(spearmanr(small_a, small_b)[0])


def pointing_game(peak: tuple[float, float], box: list[float]) -> bool:
    """True when the normalised point lies inside the normalised box [x0, y0, x1, y1]."""
    return box[0] <= peak[0] <= box[2] and box[1] <= peak[1] <= box[3]
