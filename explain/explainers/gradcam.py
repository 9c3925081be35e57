"""Grad-CAM: captum's LayerGradCam of a probe's step logit with respect to a layer of the
encoder. For ViTs (timm: FSFM; open_clip: CLIP) the layer is the last block's
pre-attention LayerNorm with the patch tokens reshaped to their grid (prefix tokens
dropped); for CNNs the layer the network names (its last convolutional stage).

`gradcam-mid` looks at the middle of the network instead: the pre-attention LayerNorm of
block (depth - 1) // 2 of a ViT (the 6th of 12, the 12th of 24), or the output of the middle
one of the blocks a CNN names (`gradcam_blocks[(len - 1) // 2]`: the 2nd stage of the
self-blend CNN's four, its 28 × 28 map, twice as fine as the last stage's 14 × 14)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from explain.explainers.base import Explainer, to_crop_size
from models.encoders.vision import FrameEncoder
from models.errors import AnalysisError
from models.probes import LinearProbe

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


def gradcam_target(network: nn.Module, middle: bool = False) -> GradCamTarget:
    """The Grad-CAM layer of a supported network (timm ViT, open_clip ViT, or a network
    that names its own `gradcam_layer` and `gradcam_blocks`): the last block's, or with
    `middle` the middle block's."""
    if hasattr(network, "gradcam_layer"):
        blocks = network.gradcam_blocks
        return GradCamTarget(_middle_block(blocks) if middle else network.gradcam_layer, blocks)
    if hasattr(network, "blocks") and hasattr(network, "patch_embed"):  # timm VisionTransformer
        block = _middle_block(network.blocks) if middle else network.blocks[-1]
        return GradCamTarget(block.norm1, network.blocks, tuple(network.patch_embed.grid_size),
                             network.num_prefix_tokens)
    transformer = getattr(network, "transformer", None)
    if transformer is not None and hasattr(transformer, "resblocks"):  # open_clip VisionTransformer
        block = _middle_block(transformer.resblocks) if middle else transformer.resblocks[-1]
        return GradCamTarget(block.ln_1, transformer.resblocks, tuple(network.grid_size), 1,
                             not getattr(transformer, "batch_first", True), attention_sequence_first=True)
    raise AnalysisError(f"Grad-CAM does not know where to look in {type(network).__name__}.",
                        hint="Spatial explanations support ViT (timm, open_clip) and CNN encoders that name their "
                             "gradcam_layer.")


def _middle_block(blocks: nn.Module) -> nn.Module:
    """Block (depth - 1) // 2 of a stack: the middle one (the first of the two middle ones)."""
    return blocks[(len(blocks) - 1) // 2]


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


class GradCam(Explainer):
    """Grad-CAM (captum's LayerGradCam) of the probe's step logit at the last block, batched."""

    name = "gradcam"
    middle = False

    def attribute(self, encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
                  network: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        return grad_cam(encoder, probe, crops, network, self.middle)


class GradCamMid(GradCam):
    """Grad-CAM at the middle block: earlier, finer features than the last block's."""

    name = "gradcam-mid"
    middle = True


def grad_cam(encoder: FrameEncoder, probe: LinearProbe, crops: np.ndarray,
             network: nn.Module | None = None, middle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (N, crop, crop) in 0..1 and the step logits (N,) for face crops
    (N, H, W, 3), batched; `network` replaces the encoder's (for the sanity check), `middle`
    looks at the middle block instead of the last."""
    network = network or encoder.torch_module()
    target = gradcam_target(network, middle)

    logits: list[np.ndarray] = []

    def step_logit(pixels: torch.Tensor) -> torch.Tensor:
        out = probe.head_logits(network(pixels))
        logits.append(out.detach().float().numpy())  # kept from the attribution's own forward pass
        return out

    from captum.attr import LayerGradCam  # lazy: captum takes about 0.8 s to import (it loads pyplot)

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
    return to_crop_size(np.concatenate(maps), crops.shape[1]), np.concatenate(logits)


def _track_gradients_from_here(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer's input becomes a leaf that records gradients."""
    first = args[0]
    if isinstance(first, torch.Tensor) and not first.requires_grad:
        first = first.detach().requires_grad_(True)
    return (first, *args[1:])
