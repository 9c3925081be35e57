"""Per-frame image encoders on the 224 px face crop: CLIP (open_clip) and FSFM (a
standard timm ViT loaded with FSFM's released MAE-style checkpoint)."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from models.encoders.base import (
    ClipInputs,
    Encoder,
    EncoderSpec,
    Progress,
    batched,
    hub_unavailable,
    interpolate_steps,
    is_local_path,
    strided_steps,
)
from models.errors import AnalysisError
from models.media import StepFrames

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tensor(images: np.ndarray, mean: tuple, std: tuple, dtype: torch.dtype) -> torch.Tensor:
    """(N, H, W, 3) uint8 → normalised (N, 3, H, W) tensor (channels-last in memory)."""
    return normalise(raw_pixels(images), mean, std).to(dtype)


def raw_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float32 pixel values 0..255 (channels-last in memory)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def normalise(pixels: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """(x / 255 − mean) / std per channel of 0..255 float pixels, in one pass over them."""
    scale = (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1)
    shift = (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1)
    return torch.addcmul(shift, pixels, scale)


class FrameEncoder(Encoder):
    """An image network applied to each step's face crop, in batches."""

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    network: torch.nn.Module

    def torch_module(self) -> torch.nn.Module:
        return self.network

    def images(self, inputs: ClipInputs) -> StepFrames:
        return inputs.face_crops

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        return to_tensor(images, self.mean, self.std, self.dtype)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        """Features of every step's crop, in batches of `inputs.batch_frames`; with a stride,
        of every stride-th step, linearly interpolated in between."""
        steps = strided_steps(inputs.n_steps, inputs.stride)
        images = self.images(inputs)
        out = []
        for start, batch_steps in batched(steps, inputs.batch_frames):  # only a batch of crops in memory at once
            out.append(self.forward(self.preprocess(images[batch_steps])).float().numpy())
            if progress:
                progress(min(1.0, (start + len(batch_steps)) / len(steps)))
        return interpolate_steps(np.concatenate(out, 0), steps, inputs.n_steps)


class ClipEncoder(FrameEncoder):
    """open_clip image tower; the feature is the projected image embedding."""

    mean, std = CLIP_MEAN, CLIP_STD

    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, precision)
        self.network = load_clip(spec, weights).visual.eval().to(self.dtype)
        self.network.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(pixels)


def load_clip(spec: EncoderSpec, weights: str | None) -> torch.nn.Module:
    """open_clip model `spec.arch['model_name']` with pretrained tag (e.g. 'openai'), a
    local weights file (the same call), or random-init at the entry's seed."""
    import open_clip  # lazy: only CLIP encoders need open_clip (about 2 s to import)

    model_name = spec.arch["model_name"]
    torch.manual_seed(spec.seed)
    try:
        return open_clip.create_model(model_name, pretrained=weights, load_weights=weights is not None)
    except RuntimeError as error:
        if weights is not None and not is_local_path(weights):
            raise hub_unavailable(spec, f"open_clip {model_name} {weights}", error) from None
        raise AnalysisError(f"cannot load CLIP weights {weights!r} for {spec.id}: {error}") from None
    except OSError as error:
        raise hub_unavailable(spec, f"open_clip {model_name} {weights}", error) from None


class FSFMEncoder(FrameEncoder):
    """FSFM ViT-B/16: mean of the final-normalised patch tokens (MAE-style global pool)."""

    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, precision)
        self.network = build_vit(spec)
        if weights is not None:
            load_mae_checkpoint(self.network, resolve_hub_file(spec, weights), spec)
        self.network.eval().to(self.dtype).requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(pixels)


def build_vit(spec: EncoderSpec) -> torch.nn.Module:
    """A timm VisionTransformer of the entry's architecture, pooling patch tokens."""
    from timm.models.vision_transformer import VisionTransformer  # lazy: only FSFM-style ViTs need timm

    torch.manual_seed(spec.seed)
    return VisionTransformer(img_size=224, num_classes=0, global_pool="avg", fc_norm=False, **spec.arch)


def resolve_hub_file(spec: EncoderSpec, weights: str) -> str:
    """A local file path for `weights`: the path itself, or 'REPO::FILE' fetched through the hub cache."""
    if is_local_path(weights):
        return weights
    repo, _, filename = weights.partition("::")
    from huggingface_hub import hf_hub_download  # lazy: only hub downloads need it

    try:
        return hf_hub_download(repo_id=repo, filename=filename)
    except Exception as error:  # noqa: BLE001 - every hub failure gets the same message
        raise hub_unavailable(spec, weights, error) from None


def load_mae_checkpoint(network: torch.nn.Module, path: str, spec: EncoderSpec) -> None:
    """Load the encoder part of an MAE-style checkpoint ({'model': state_dict, ...}) safely."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001
            raise AnalysisError(f"cannot read the {spec.id} checkpoint ({error}).", path=path,
                                hint="Pass the released FSFM pre-training checkpoint (.pth).") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise AnalysisError(f"the {spec.id} checkpoint holds no state dict.", path=path)
    state = {k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))}
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing:
        raise AnalysisError(f"the {spec.id} checkpoint lacks {len(missing)} encoder weights "
                            f"(first: {missing[0]}); it is not a ViT-B/16 FSFM checkpoint.", path=path)
