"""The lip front end that AV-HuBERT and BRAVEn share: a 3-D convolution over (time, height,
width) of the grey mouth regions, then ResNet-18 on each frame, one 512-d vector per step.
The two differ only in the activation (AV-HuBERT: PReLU, BRAVEn: swish), so it is a
parameter; module names follow both checkpoints' layout (frontend3D, trunk.layerN).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROI_MEAN, ROI_STD = 0.421, 0.165  # the grey mouth regions' normalisation in both papers' code
TRUNK_WIDTH = 512
FRAME_CHUNK = 50  # frames per pass of the front end: each chunk's maps stay small (fastest here)
Activation = Callable[[int], nn.Module]  # channels → activation module


def _frame_norm(norm: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """The stem's 3-D batch norm (inference statistics) on (n, C, H, W) frames; once folded
    into the stem it is an identity."""
    if isinstance(norm, nn.BatchNorm3d):
        return F.batch_norm(frames, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
    return norm(frames)


def swish(channels: int) -> nn.Module:
    """x · sigmoid(x), without parameters (BRAVEn's `relu_type: swish`)."""
    return nn.SiLU()


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, activation: Activation = nn.PReLU):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = activation(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = activation(planes)
        self.downsample = None if stride == 1 and inplanes == planes else nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.downsample is None else self.downsample(x)))

    def fold_batch_norms(self) -> None:
        self.bn1 = fold_batch_norm(self.conv1, self.bn1)
        self.bn2 = fold_batch_norm(self.conv2, self.bn2)
        if self.downsample is not None:
            self.downsample[1] = fold_batch_norm(self.downsample[0], self.downsample[1])


class ResNetTrunk(nn.Module):
    """ResNet-18 on each frame's 64-channel map: four stages of two blocks, average pooled."""

    def __init__(self, activation: Activation = nn.PReLU):
        super().__init__()
        widths = (64, 128, 256, TRUNK_WIDTH)
        for index, width in enumerate(widths, start=1):
            inplanes = widths[max(index - 2, 0)]
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(inplanes, width, stride, activation),
                                                         BasicBlock(width, width, 1, activation)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class FrameStackConv(nn.Conv3d):
    """The stem: a (5, 7, 7) convolution, stride (1, 2, 2), padding (2, 3, 3), of the one-channel
    video (Conv3d's weights and key), computed as a 2-D convolution of each frame's five-frame
    neighbourhood stacked as channels, channels-last: the same sums, 2.9× faster in bf16 than
    the 3-D convolution (0.139 → 0.048 s on 250 frames)."""

    def __init__(self, channels: int = 64):
        super().__init__(1, channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False)

    def frame_chunks(self, video: torch.Tensor) -> Iterator[torch.Tensor]:
        """(B, 1, T, H, W) → its (n, C, H', W') output frames in order, FRAME_CHUNK at a time."""
        reach = self.kernel_size[0] // 2
        weight = self.weight[:, 0].contiguous(memory_format=torch.channels_last)  # (C, 5, 7, 7)
        padded = F.pad(video[:, 0].to(weight.dtype), (0, 0, 0, 0, reach, reach))  # (B, T + 4, H, W): zeros in time
        for clip in padded:
            stacked = clip.unfold(0, self.kernel_size[0], 1).permute(0, 3, 1, 2)  # (T, 5, H, W), a view
            for start in range(0, stacked.shape[0], FRAME_CHUNK):
                chunk = stacked[start:start + FRAME_CHUNK].contiguous(memory_format=torch.channels_last)
                yield F.conv2d(chunk, weight, self.bias, self.stride[1:], self.padding[1:])

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, 1, T, H, W) → (B, C, T, H', W')
        frames = torch.cat(list(self.frame_chunks(video)))
        return frames.view(video.shape[0], video.shape[2], *frames.shape[1:]).transpose(1, 2)


class ResEncoder(nn.Module):
    """The lip front end: a 3-D convolution over (time, height, width), batch norm,
    activation, a (1, 3, 3) max pool (stride (1, 2, 2)), then ResNet-18 per frame. It runs
    FRAME_CHUNK frames at a time from stem to pooled vector: each chunk's maps stay in cache
    and no full-clip map is ever gathered."""

    def __init__(self, activation: Activation = nn.PReLU):
        super().__init__()
        self.frontend3D = nn.Sequential(FrameStackConv(64), nn.BatchNorm3d(64), activation(64),
                                        nn.MaxPool2d(3, 2, 1))
        self.trunk = ResNetTrunk(activation)

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, 1, T, H, W) → (B, T, 512)
        stem, norm, activation, pool = self.frontend3D
        vectors = [self.trunk(pool(activation(_frame_norm(norm, frames)))) for frames in stem.frame_chunks(video)]
        return torch.cat(vectors).view(video.shape[0], video.shape[2], -1)

    def fold_batch_norms(self) -> None:
        """For inference: every batch norm folded into the convolution before it (same
        outputs within float rounding, one pass fewer over each activation map), and the
        trunk's weights laid out channels-last."""
        self.frontend3D[1] = fold_batch_norm(self.frontend3D[0], self.frontend3D[1])
        for module in self.trunk.modules():
            if isinstance(module, BasicBlock):
                module.fold_batch_norms()
        self.trunk.to(memory_format=torch.channels_last)  # as its inputs: else each call reorders the weights


@torch.no_grad()
def fold_batch_norm(layer: nn.Conv2d | nn.Conv3d | nn.Linear, norm: nn.modules.batchnorm._BatchNorm) -> nn.Identity:
    """Fold the inference batch norm `norm` that follows `layer` into `layer`'s weight and
    bias: norm(layer(x)) = layer'(x). Returns the identity that takes the norm's place."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
    layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
    layer.bias = nn.Parameter(norm.bias + (bias - norm.running_mean) * scale)
    return nn.Identity()


def video_features(mouth_rois: np.ndarray) -> np.ndarray:
    """(T, 88, 88) uint8 grey ROIs → (1, 1, T, 88, 88) float, scaled to 0..1 and normalised
    as at training."""
    return ((mouth_rois.astype(np.float32) / 255.0 - ROI_MEAN) / ROI_STD)[None, None]
