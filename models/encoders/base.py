"""What every encoder shares: its registry entry, its inputs, precision, hub errors."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable

import numpy as np

from models.errors import AnalysisError
from models.faces import FaceTrack, lip_view
from models.landmarks import DEFAULT_ALIGNMENT, MOUTH_ALIGNMENTS
from models.media import Clip, StepFrames

if TYPE_CHECKING:
    import torch

Progress = Callable[[float], None] | None
MODALITIES = ("audio", "lips", "face", "frame", "audio-visual")
FACE_MODALITIES = ("face", "lips")  # encoders of face crops or mouth regions: they need the face track
MOUTH_MODALITIES = ("lips", "audio-visual")  # encoders that read mouth regions
SOURCES = ("hub", "random", "package", "project", "external")
STRIDED_FAMILIES = ("clip", "fsfm", "selfblend")  # per-frame image encoders: `stride` runs them on every N-th step
FRAME_BATCH = 16  # face crops per forward pass


@dataclass(frozen=True)
class EncoderSpec:
    """One registry entry: what the encoder is, what it eats, where its weights come from."""

    id: str
    family: str  # wav2vec2 | wavlm | hubert | clip | videomae | fsfm | avhubert | braven | ge2e | selfblend | ...
    modality: str  # one of MODALITIES
    source: str  # one of SOURCES
    dim: int  # feature width at 25 Hz (after pairing for 50 Hz audio models)
    weights: str | None  # hub id / open_clip tag / hub file; None for random and external
    arch: dict = field(default_factory=dict, hash=False)  # architecture config (random init, tests)
    download: str = ""  # human-readable download size of `weights`
    licence: str = ""
    description: str = ""
    preprocessing_version: str = "1"
    seed: int = 0  # for random-init weights

    @property
    def offline(self) -> bool:
        """True when the encoder works with no download (random-init, packaged, external)."""
        return self.source != "hub"

    def card(self) -> dict:
        return {"id": self.id, "family": self.family, "modality": self.modality, "source": self.source,
                "dim": self.dim, "weights": self.weights, "download": self.download, "licence": self.licence,
                "description": self.description, "offline": self.offline}


def mouth_alignment(spec: EncoderSpec) -> str:
    """How the encoder's family cuts its mouth region (its authors' preprocessing), the
    default alignment for families without one."""
    return spec.family if spec.family in MOUTH_ALIGNMENTS else DEFAULT_ALIGNMENT


class ClipInputs:
    """The inputs encoders take from one clip, each computed once and shared."""

    def __init__(self, clip: Clip, track: FaceTrack | None, features: dict[str, np.ndarray] | None = None,
                 batch_frames: int = FRAME_BATCH, stride: int = 1):
        self.clip = clip
        self.track = track
        self.features = features or {}  # precomputed features for external encoders
        self.batch_frames = max(1, batch_frames)  # crops per forward pass (1: the naive baseline)
        self.stride = max(1, stride)  # per-frame encoders run on every `stride`-th step, interpolated between
        self._mouth_rois: dict[str, np.ndarray] = {}

    @property
    def n_steps(self) -> int:
        return self.clip.n_steps

    @property
    def audio(self) -> np.ndarray:
        if self.clip.audio is None:
            raise AnalysisError("no audio track: audio probes cannot run on this clip.", path=self.clip.info.path)
        return self.clip.audio

    @cached_property
    def face_crops(self) -> StepFrames:
        """(T, 224, 224, 3) uint8 RGB face crops, in a temporary file (read back a batch at a time)."""
        return self._require_track().face_crops(self.clip.frames)

    def mouth_rois(self, alignment: str = DEFAULT_ALIGNMENT) -> np.ndarray:
        """(T, 88, 88) uint8 grayscale mouth crops (96 px ROI, centre 88 px) as `alignment`
        (an encoder family's reference preprocessing, `mouth_alignment`) cuts them; each
        alignment's computed once."""
        if alignment not in self._mouth_rois:
            self._mouth_rois[alignment] = lip_view(self._require_track().mouth_rois(self.clip.frames,
                                                                                    alignment=alignment))
        return self._mouth_rois[alignment]

    def _require_track(self) -> FaceTrack:
        if self.track is None:
            raise AnalysisError("face crops were asked for but faces were not tracked.")
        return self.track


class Encoder:
    """A frozen encoder: `encode(inputs)` returns float32 features (steps × dim) at 25 Hz."""

    def __init__(self, spec: EncoderSpec, precision: str = "auto"):
        self.spec = spec
        self.dtype = resolve_dtype(precision)

    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        raise NotImplementedError

    def torch_module(self) -> torch.nn.Module | None:
        """The underlying network (for Grad-CAM), or None for feature-only encoders."""
        return None


def dtype_name(precision: str) -> str:
    """The torch dtype name that 'fp32', 'bf16' or 'auto' (bf16 where the CPU has native bf16
    matrix units) stands for; without importing torch (cache keys, the app's start-up)."""
    if precision == "fp32":
        return "float32"
    if precision == "bf16":
        return "bfloat16"
    if precision == "auto":
        return "bfloat16" if cpu_has_fast_bf16() else "float32"
    raise AnalysisError(f"unknown precision {precision!r}.", hint="Use fp32, bf16 or auto.")


def resolve_dtype(precision: str) -> torch.dtype:
    """The torch dtype of `precision` (see dtype_name)."""
    import torch  # lazy: this module is on the app's start-up path, which must not wait for torch

    return getattr(torch, dtype_name(precision))


def precision_warning(precision: str) -> str | None:
    """A note for the user when the requested precision is not native on this CPU."""
    if precision == "bf16" and not cpu_has_fast_bf16():
        return ("bf16 was requested but this CPU has no bf16 matrix units (AVX-512 BF16 or AMX): bf16 runs "
                "emulated here, slower than fp32 (--precision auto picks the faster one).")
    return None


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX, where bf16 matmuls beat fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pair_frames(features: np.ndarray) -> np.ndarray:
    """50 Hz → 25 Hz as in SSR-DFD: concatenate consecutive pairs of frames (T × D →
    ceil(T/2) × 2D), repeating the last frame when T is odd."""
    if len(features) % 2:
        features = np.concatenate([features, features[-1:]], 0)
    return features.reshape(len(features) // 2, 2 * features.shape[1])


def fit_steps(features: np.ndarray, n_steps: int) -> np.ndarray:
    """Trim, or pad by repeating the last row, so features have exactly n_steps rows."""
    if len(features) >= n_steps:
        return features[:n_steps]
    return np.concatenate([features, np.repeat(features[-1:], n_steps - len(features), 0)], 0)


def strided_steps(n_steps: int, stride: int) -> np.ndarray:
    """Every `stride`-th step, and always the last one."""
    steps = np.arange(0, n_steps, max(1, stride))
    return steps if steps[-1] == n_steps - 1 else np.append(steps, n_steps - 1)


def interpolate_steps(features: np.ndarray, steps: np.ndarray, n_steps: int) -> np.ndarray:
    """Features computed at `steps` (K × D), linearly interpolated to every step (n_steps × D)."""
    if len(steps) == n_steps:
        return features
    if len(steps) == 1:
        return np.repeat(features, n_steps, 0)
    upper = np.clip(np.searchsorted(steps, np.arange(n_steps)), 1, len(steps) - 1)
    lower = upper - 1
    weight = ((np.arange(n_steps) - steps[lower]) / (steps[upper] - steps[lower]))[:, None]
    return ((1 - weight) * features[lower] + weight * features[upper]).astype(features.dtype)


def offline_mode() -> bool:
    """True when Hugging Face offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_local_path(weights: str) -> bool:
    return os.path.exists(os.path.expanduser(weights))


def hub_unavailable(spec: EncoderSpec, weights: str, error: Exception) -> AnalysisError:
    """The one message for weights that are neither local nor downloadable."""
    reason = "offline mode is on" if offline_mode() else f"the hub could not be reached ({type(error).__name__})"
    return AnalysisError(
        f"cannot load encoder {spec.id}: its weights {weights!r} ({spec.download or 'size unknown'}) are not in "
        f"the local cache and {reason}.",
        hint=(f"Run once with internet to fill the Hugging Face cache (HF_HOME), copy that cache here, or pass a "
              f"local copy with --weights {spec.id}=PATH. The offline stand-in random-{spec.id} always works."))


def batched(array: np.ndarray, size: int):
    """Consecutive slices of `array` of at most `size` rows."""
    for start in range(0, len(array), size):
        yield start, array[start:start + size]
