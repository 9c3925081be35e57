"""Encoders this project pretrains itself, offline, with self-supervised pretext tasks on
real (unmanipulated) material only, and ships in `assets/encoders/` (safetensors + card
with the recipe and SHA-256). They exist because no pretrained SSL weights can be
downloaded on offline machines; see `research/pretext.py` for how they are trained.

- `selfblend-cnn` (face): a small CNN that learned where a real face crop was blended with
  a re-rendered copy of itself (the self-blended-images idea); its feature is the mean of
  its last 14 × 14 feature map, where Grad-CAM looks.
- `selfsplice-gru` (audio): a conv + bidirectional GRU over the clip's log-mel
  spectrogram that learned which steps of an utterance were spliced in from another
  recording (or re-synthesised at another pitch and speed); its feature is the GRU state
  per 25 Hz step.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from models.encoders.base import ClipInputs, Encoder, EncoderSpec, Progress, fit_steps
from models.encoders.vision import IMAGENET_MEAN, IMAGENET_STD, FrameEncoder, normalise, raw_pixels
from models.errors import AnalysisError
from models.media import file_sha256
from models.spectrogram import log_mel
from models.timing import N_MELS

ASSET_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "encoders"
MEL_FRAMES_PER_STEP = 4  # 100 Hz mel frames → 25 Hz steps
EDGE_STEPS = 8  # steps of repeated edge frames added at each end of the audio encoder's input


def weights_path(spec: EncoderSpec, weights: str | None) -> Path:
    """The weights file: an explicit path, or the bundled asset named by the entry."""
    path = Path(weights) if weights else ASSET_DIR / f"{spec.id}.safetensors"
    if not path.is_absolute() and not path.exists():
        path = ASSET_DIR / path.name
    if not path.exists():
        raise AnalysisError(f"the weights of encoder {spec.id} are missing.", path=path,
                            hint=f"Restore assets/encoders from the repository, or pretrain it: "
                                 f"python cli.py pretrain {spec.id} --data DATASET.json")
    return path


def bundled_sha256(spec: EncoderSpec) -> str:
    """The SHA-256 recorded in the bundled card (part of the feature-cache key), or 'missing'."""
    try:
        return str(json.loads((ASSET_DIR / f"{spec.id}.json").read_text())["sha256"])
    except (OSError, ValueError, KeyError):
        return "missing"


def load_project_weights(module: nn.Module, spec: EncoderSpec, weights: str | None) -> dict:
    """Load safetensors weights into `module` after checking them against their card's
    SHA-256; returns the card."""
    path = weights_path(spec, weights)
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as error:
        raise AnalysisError(f"the card of encoder {spec.id} is missing or unreadable ({error}).",
                            path=card_path) from None
    if card.get("sha256") != file_sha256(path):
        raise AnalysisError(f"the weights of encoder {spec.id} do not match the SHA-256 in their card; "
                            "they were damaged or replaced, so they were refused.", path=path)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AnalysisError(f"the weights do not fit encoder {spec.id} (missing {missing[:2]}, "
                            f"unexpected {unexpected[:2]}).", path=path)
    return card


# -- face: self-blended CNN -----------------------------------------------------------------

class BlendCNN(nn.Module):
    """Four conv stages (stride 2, 2, 2, 1; GroupNorm, GELU) from a 112 px crop to a 14 × 14
    map; the feature is the map's spatial mean. Grad-CAM looks at the last stage."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        stages, channels = [], 3
        for index, width in enumerate(widths):
            layers = [nn.Conv2d(channels, width, 3, 2 if index < 3 else 1, 1), nn.GroupNorm(8, width), nn.GELU()]
            if index > 0:
                layers += [nn.Conv2d(width, width, 3, 1, 1), nn.GroupNorm(8, width), nn.GELU()]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.Sequential(*stages)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.stages[-1]

    @property
    def gradcam_blocks(self) -> nn.Sequential:
        return self.stages

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.stages(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.feature_map(pixels).mean((2, 3))


def crop_pixels(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops → ImageNet-normalised (N, 3, size, size) float32, antialiased
    resize first: normalising is per-channel affine and resizing linear, so the numbers are
    the same (within 1e-6) on a quarter of the values (0.21 → 0.12 s for 169 crops)."""
    pixels = raw_pixels(images)
    if pixels.shape[-1] != size:
        pixels = nn.functional.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)
    return normalise(pixels, IMAGENET_MEAN, IMAGENET_STD)


class SelfBlendEncoder(FrameEncoder):
    """Face crops resized to the network's input size; feature = mean of the last conv map."""

    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, "fp32")  # a 0.6 M-parameter CNN: fp32 is fast and exact
        torch.manual_seed(spec.seed)
        self.network = BlendCNN(tuple(spec.arch["widths"]))
        if spec.source != "random":
            self.card = load_project_weights(self.network, spec, weights)
        self.network.eval().requires_grad_(False)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        return crop_pixels(images, self.spec.arch["input_size"])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(pixels)


# -- audio: self-spliced conv + GRU ----------------------------------------------------------

class SpliceNet(nn.Module):
    """(N, N_MELS, frames at 100 Hz) normalised log-mel → (N, steps at 25 Hz, 2·hidden)."""

    def __init__(self, width: int = 128, hidden: int = 64):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(N_MELS, width, 5, stride=2, padding=2), nn.GELU(),
                                  nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU())
        self.gru = nn.GRU(width, hidden, batch_first=True, bidirectional=True)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.gru(self.conv(mel).transpose(1, 2))[0]


def edge_padded(mel: np.ndarray) -> np.ndarray:
    """The spectrogram with its first and last frames repeated for EDGE_STEPS steps at each
    end. At a bare end the convolutions read zeros, which in these normalised units are a
    -40 dB floor louder than the clip's own silence, and the backward GRU starts cold: the
    last step's logit rose by 1.2-1.4 on every demo clip (version 1 features). (Mirrored
    frames also removed the rise but moved the bundled probe's held-out AUC from 0.952 to
    0.908; repeated edge frames keep 0.944.)"""
    frames = EDGE_STEPS * MEL_FRAMES_PER_STEP
    return np.pad(mel, ((0, 0), (frames, frames)), mode="edge")


def splice_net_input(audio: np.ndarray) -> np.ndarray:
    """(N_MELS, frames) log-mel in dB relative to the clip's peak, scaled to about unit range."""
    return ((log_mel(audio) + 40.0) / 40.0).astype(np.float32)


class SelfSpliceEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, "fp32")  # a 0.2 M-parameter GRU: fp32 is fastest and exact
        self.network = SpliceNet(**spec.arch)
        if spec.source != "random":
            self.card = load_project_weights(self.network, spec, weights)
        self.network.eval().requires_grad_(False)

    def torch_module(self) -> nn.Module:
        return self.network

    @torch.inference_mode()
    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        mel = torch.from_numpy(edge_padded(splice_net_input(inputs.audio)))[None]
        features = self.network(mel)[0].numpy()[EDGE_STEPS:]
        if progress:
            progress(1.0)
        return fit_steps(features, inputs.n_steps)
