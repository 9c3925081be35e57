"""The encoder registry (open_clip style): `list_encoders()`, `get_spec(id)` and one
factory, `create_encoder(id)`, that builds any entry.

Every hub entry has a `random-` twin: the same architecture at a fixed seed with no
pretraining (the paper's random baselines), always available offline.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import replace
from pathlib import Path

from models.encoders.base import ClipInputs, Encoder, EncoderSpec, pair_frames  # noqa: F401 (re-export)
from models.encoders.external import CHECKPOINT_FAMILIES
from models.errors import AnalysisError
from models.media import file_sha256

_STABLE_LAYER_NORM = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}
_LARGE_AUDIO = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                "intermediate_size": 4096, **_STABLE_LAYER_NORM}
_VIDEOMAE_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "intermediate_size": 4096, "image_size": 224, "patch_size": 16, "num_frames": 16,
                   "tubelet_size": 2}

_HUB_ENCODERS = [
    EncoderSpec("wav2vec2-xls-r-2b", "wav2vec2", "audio", "hub", 3840, "facebook/wav2vec2-xls-r-2b",
                {"hidden_size": 1920, "num_hidden_layers": 48, "num_attention_heads": 16,
                 "intermediate_size": 7680, "conv_bias": True, **_STABLE_LAYER_NORM},
                "≈ 8.6 GB", "Apache-2.0", "XLS-R 2B, last hidden state 1920-d at 50 Hz, pairs → 3840-d (SSR-DFD)"),
    EncoderSpec("wav2vec2-xls-r-300m", "wav2vec2", "audio", "hub", 2048, "facebook/wav2vec2-xls-r-300m",
                {**_LARGE_AUDIO, "conv_bias": True}, "≈ 1.3 GB", "Apache-2.0",
                "XLS-R 300M, 1024-d at 50 Hz, pairs → 2048-d"),
    EncoderSpec("wavlm-large", "wavlm", "audio", "hub", 2048, "microsoft/wavlm-large",
                {**_LARGE_AUDIO, "conv_bias": False}, "≈ 1.3 GB", "MIT (see model card)",
                "WavLM Large, 1024-d at 50 Hz, pairs → 2048-d"),
    EncoderSpec("hubert-large", "hubert", "audio", "hub", 2048, "facebook/hubert-large-ll60k",
                {**_LARGE_AUDIO, "conv_bias": True}, "≈ 1.3 GB", "Apache-2.0",
                "HuBERT Large (LibriLight 60k h), 1024-d at 50 Hz, pairs → 2048-d"),
    EncoderSpec("clip-vit-l14", "clip", "face", "hub", 768, "openai", {"model_name": "ViT-L-14"},
                "≈ 0.9 GB", "MIT", "CLIP ViT-L/14 (OpenAI) image embedding of the 224 px face crop, per step"),
    EncoderSpec("clip-vit-b16", "clip", "face", "hub", 512, "openai", {"model_name": "ViT-B-16"},
                "≈ 0.6 GB", "MIT", "CLIP ViT-B/16 (OpenAI) image embedding of the 224 px face crop, per step"),
    EncoderSpec("videomae-large", "videomae", "face", "hub", 1024, "MCG-NJU/videomae-large", _VIDEOMAE_LARGE,
                "≈ 1.3 GB", "CC BY-NC 4.0", "VideoMAE-L mean token of 16-step face-crop windows, nearest window"),
    EncoderSpec("fsfm-vit-b16", "fsfm", "face", "hub", 768,
                "Wolowolo/fsfm-3c::pretrained_models/VF2_ViT-B/checkpoint-400.pth",
                {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12},
                "≈ 1 GB (unverified)", "CC BY-NC 4.0",
                "FSFM ViT-B/16 (MAE on VGGFace2 faces) mean patch token of the 224 px face crop (1.3× box)"),
]

_AVHUBERT_STREAMS = {"av": ("audio-visual", "audio + lips"), "a": ("audio", "audio with the lips zeroed"),
                     "v": ("lips", "lips with the audio zeroed")}
_EXTERNAL_ENCODERS = [  # features from a file (--features), or computed here from a checkpoint (--weights)
    *(EncoderSpec(f"avhubert-{size}-{stream}", "avhubert", modality, "external", dim, None,
                  licence="AV-HuBERT licence (non-commercial)",
                  description=f"AV-HuBERT {size}{' (self_large_vox_433h in SSR-DFD)' if size == 'large' else ''}, "
                              f"{what}, last layer")
      for size, dim in (("large", 1024), ("base", 768)) for stream, (modality, what) in _AVHUBERT_STREAMS.items()),
    *(EncoderSpec(f"braven-{size}-v", "braven", "lips", "external", dim, None,
                  licence="code MIT; weights trained on LRS3 / VoxCeleb2 (research use)",
                  description=f"BRAVEn {size} visual encoder ({layers} layers × {dim}) on 88 px mouth ROIs, "
                              "output after its final norm")
      for size, dim, layers in (("large", 1024, 24), ("base", 512, 12))),
]
NATIVE_FAMILIES = set(CHECKPOINT_FAMILIES)  # external families that also run here from their published checkpoint


_PACKAGE_ENCODERS = [
    EncoderSpec("ge2e-speaker", "ge2e", "audio", "package", 512, "resemblyzer::pretrained.pt",
                download="ships in the resemblyzer wheel (17 MB)", licence="Apache-2.0",
                description="Resemblyzer GE2E speaker embedding of the 0.8 s around each step and its deviation "
                            "from the clip mean (pretrained, supervised, offline)"),
]


_PROJECT_ENCODERS = [
    EncoderSpec("selfblend-cnn", "selfblend", "face", "project", 128, "selfblend-cnn.safetensors",
                {"input_size": 112, "widths": [32, 64, 128, 128]}, download="ships in assets/encoders (1.2 MB)",
                licence="CC BY-NC-SA 4.0 (this project)",
                description="4-stage CNN on the 112 px face crop, pretrained here on real face crops to find "
                            "self-blended regions; mean of its last 14×14 map (offline, synthetic-data knowledge)"),
    EncoderSpec("selfsplice-gru", "selfsplice", "audio", "project", 128, "selfsplice-gru.safetensors",
                {"width": 128, "hidden": 64}, download="ships in assets/encoders (0.5 MB)",
                preprocessing_version="3",  # 3: edge frames repeated at both ends (2: mirrored) at both ends of the clip
                licence="CC BY-NC-SA 4.0 (this project)",
                description="conv + BiGRU over the log-mel spectrogram, pretrained here on real speech to find "
                            "steps spliced in from another recording; GRU state per step (offline, synthetic-data knowledge)"),
]


def _random_twin(spec: EncoderSpec) -> EncoderSpec:
    return replace(spec, id=f"random-{spec.id}", source="random", weights=None, download="",
                   description=f"{spec.description} — random init, seed 0, no pretraining (offline baseline)")


_REGISTRY: dict[str, EncoderSpec] = {}
_instances: dict[tuple, Encoder] = {}
_instances_lock = threading.Lock()


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add (or replace) a registry entry; tests and plug-ins use this."""
    _REGISTRY[spec.id] = spec
    _instances.clear()
    return spec


def unregister_encoder(encoder_id: str) -> None:
    """Remove a registry entry added with register_encoder."""
    _REGISTRY.pop(encoder_id, None)
    _instances.clear()


for _spec in _HUB_ENCODERS + _PROJECT_ENCODERS:
    register_encoder(_spec)
    register_encoder(_random_twin(_spec))
for _spec in _EXTERNAL_ENCODERS + _PACKAGE_ENCODERS:
    register_encoder(_spec)


def list_encoders() -> list[str]:
    """All registered encoder ids."""
    return sorted(_REGISTRY)


def get_spec(encoder_id: str) -> EncoderSpec:
    try:
        return _REGISTRY[encoder_id]
    except KeyError:
        raise AnalysisError(f"unknown encoder {encoder_id!r}.",
                            hint=f"Known encoders: {', '.join(list_encoders())}.") from None


_FAMILY_CLASSES = {  # family → "module:class"; anything else reads precomputed feature files
    "wav2vec2": "models.encoders.audio_ssl:AudioSSLEncoder", "wavlm": "models.encoders.audio_ssl:AudioSSLEncoder",
    "hubert": "models.encoders.audio_ssl:AudioSSLEncoder", "clip": "models.encoders.vision:ClipEncoder",
    "fsfm": "models.encoders.vision:FSFMEncoder", "ge2e": "models.encoders.speaker:SpeakerEncoder",
    "selfblend": "models.encoders.project:SelfBlendEncoder", "selfsplice": "models.encoders.project:SelfSpliceEncoder",
    "videomae": "models.encoders.videomae:VideoMAEEncoder", "avhubert": "models.encoders.avhubert:AVHubertEncoder",
    "braven": "models.encoders.braven:BRAVEnEncoder",
}
_EXTERNAL_CLASS = "models.encoders.external:ExternalFeatures"


def _encoder_class(family: str) -> type[Encoder]:
    """The class that implements a family. Its module is imported on first use, so a process
    loads only the libraries (transformers, open_clip, timm, resemblyzer) of the families it runs."""
    module, _, name = _FAMILY_CLASSES.get(family, _EXTERNAL_CLASS).partition(":")
    return getattr(importlib.import_module(module), name)


def takes_face_crops(encoder_id: str) -> bool:
    """True for encoders that embed each step's face crop as an image (CLIP, FSFM, self-blend):
    the ones Grad-CAM can explain spatially."""
    from models.encoders.vision import FrameEncoder  # lazy: it needs torch, which the registry must not load

    spec = get_spec(encoder_id)
    return spec.source != "external" and issubclass(_encoder_class(spec.family), FrameEncoder)


def create_encoder(encoder_id: str, weights: str | None = None, precision: str = "auto") -> Encoder:
    """Build encoder `encoder_id`. `weights` (a hub id or a local folder/file) overrides the
    entry's; hub and local weights go through the same loading call."""
    spec = get_spec(encoder_id)
    if spec.source == "random" and weights is not None:
        raise AnalysisError(f"{encoder_id} is random-init and takes no weights.")
    return _encoder_class(spec.family)(spec, weights or spec.weights, precision)


# Checkpoint files of the families loaded from a local file, by SHA-256 → what they are. The
# AV-HuBERT and BRAVEn authors publish no SHA-256 for their files; add one here once it is
# verified against the authors' source. A file not listed is used with a warning.
KNOWN_CHECKPOINTS: dict[str, dict[str, str]] = {"avhubert": {}, "braven": {}}


def checkpoint_warning(encoder_id: str, weights: str | None) -> str | None:
    """A warning when `weights` is a checkpoint file of a family in KNOWN_CHECKPOINTS whose
    SHA-256 is not listed there (None when it is listed, or nothing is checked)."""
    family = get_spec(encoder_id).family
    if weights is None or family not in KNOWN_CHECKPOINTS or not Path(weights).is_file():
        return None
    digest = file_sha256(weights)
    if digest in KNOWN_CHECKPOINTS[family]:
        return None
    return (f"the {CHECKPOINT_FAMILIES.get(family, family)} checkpoint {Path(weights).name} (SHA-256 {digest[:16]}…) is not one this app knows "
            f"(the authors publish no SHA-256); its features are only as trustworthy as its source: check the file "
            f"against where you got it")


def checkpoint_encoders() -> list[str]:
    """Entries that run here from a checkpoint file the user gives (AV-HuBERT, BRAVEn)."""
    return [encoder_id for encoder_id in list_encoders() if get_spec(encoder_id).family in NATIVE_FAMILIES]


def forget_encoder(encoder_id: str, weights: str) -> None:
    """Drop what get_encoder memoised for `encoder_id` loaded from `weights` (an uploaded
    checkpoint whose session ended or replaced it), so its memory can be freed."""
    with _instances_lock:
        for key in [key for key in _instances if key[:2] == (encoder_id, weights)]:
            del _instances[key]


def get_encoder(encoder_id: str, weights: str | None = None, precision: str = "auto") -> Encoder:
    """create_encoder, memoised per process: loading a large model takes seconds."""
    key = (encoder_id, weights, precision)
    with _instances_lock:
        if key not in _instances:
            _instances[key] = create_encoder(encoder_id, weights, precision)
        return _instances[key]
