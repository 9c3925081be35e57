"""AV-HuBERT run natively, without fairseq: the published checkpoints loaded safely, the
ResNet-18 lip front end and the filter-bank audio front end, fusion by concatenation (the
missing modality zeroed), the transformer, and its last layer as one 1024-d (large) or
768-d (base) vector per 40 ms step, the SSR-DFD clock.

Written from the AV-HuBERT paper and the layout of its checkpoints (Shi et al., 2022):

- a checkpoint is a torch-pickled dict {"model": state dict, "cfg": dict, "task_state":
  fairseq Dictionary objects, ...}; `load_checkpoint` reads it with
  `checkpoints.read_checkpoint` (torch's weights-only unpickler and inert stand-ins for the
  few fairseq / argparse / numpy classes such files hold), so nothing from the file runs;
- fine-tuned (seq2seq) checkpoints keep the encoder under "encoder.w2v_model."; the
  decoder and the pretraining heads are not used and are named as such; any other key that
  does not map, and any expected key that is missing, fails with its name.

Features (`ClipInputs` gives the 88 px grey mouth ROIs and 16 kHz audio): audio is the
26-band log filter bank (25 ms window, 10 ms hop, as python_speech_features' `logfbank`),
four frames stacked to 104 values at 25 Hz and normalised per frame; video goes through the
lip front end it shares with BRAVEn (`lip_frontend.py`, PReLU here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.encoders.base import ClipInputs, fit_steps
from models.encoders.checkpoints import CheckpointEncoder, load_exact, read_checkpoint
from models.encoders.lip_frontend import TRUNK_WIDTH, ResEncoder, video_features
from models.errors import AnalysisError
from models.timing import SAMPLE_RATE

FBANK_BANDS, FBANK_WINDOW_S, FBANK_HOP_S, FBANK_NFFT, PREEMPHASIS = 26, 0.025, 0.010, 512, 0.97
AUDIO_STACK = 4  # filter-bank frames (10 ms) per step (40 ms): 4 × 26 = 104 values
FINETUNED_PREFIX = "encoder.w2v_model."
UNUSED_PREFIXES = ("decoder.", "final_proj.", "label_embs_concat", "mask_emb", "encoder.proj.")


# -- safe checkpoint loading -------------------------------------------------------------------

def load_checkpoint(path: str | Path) -> dict:
    """An AV-HuBERT checkpoint's dict, read safely (`checkpoints.read_checkpoint`: nothing
    from the file runs), with its "model" state dict."""
    checkpoint = read_checkpoint(path, "AV-HuBERT", "AV-HuBERT checkpoints")
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise AnalysisError("is not an AV-HuBERT checkpoint: no 'model' state dict in it.", path=Path(path))
    return checkpoint


# -- configuration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AVHubertConfig:
    """The transformer's sizes, read from the checkpoint's cfg (fairseq names)."""

    layers: int = 24
    dim: int = 1024
    ffn_dim: int = 4096
    heads: int = 16
    layer_norm_first: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    audio_dim: int = FBANK_BANDS * AUDIO_STACK

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "AVHubertConfig":
        model = (checkpoint.get("cfg") or {}).get("model") or {}
        model = model.get("w2v_args", {}).get("model", model) if isinstance(model.get("w2v_args"), dict) else model
        values = {"layers": "encoder_layers", "dim": "encoder_embed_dim", "ffn_dim": "encoder_ffn_embed_dim",
                  "heads": "encoder_attention_heads", "layer_norm_first": "layer_norm_first",
                  "conv_pos": "conv_pos", "conv_pos_groups": "conv_pos_groups", "audio_dim": "audio_feat_dim"}
        fusion = model.get("modality_fuse", "concat")
        if fusion != "concat":
            raise AnalysisError(f"AV-HuBERT checkpoint fuses modalities by {fusion!r}; only 'concat' (the "
                                "published models) is implemented.")
        return cls(**{field: model[key] for field, key in values.items() if key in model})


# -- network ---------------------------------------------------------------------------------------

class SubModel(nn.Module):
    """One modality's front end and its projection to the model width."""

    def __init__(self, input_dim: int, dim: int, resnet: ResEncoder | None = None):
        super().__init__()
        self.resnet = resnet
        self.proj = nn.Linear(input_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # → (B, T, dim)
        return self.proj(self.resnet(x) if self.resnet is not None else x)


class PositionalConv(nn.Module):
    """wav2vec 2.0's convolutional position embedding (weight-normalised, same padding, GELU)."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        conv = nn.Conv1d(config.dim, config.dim, config.conv_pos, padding=config.conv_pos // 2,
                         groups=config.conv_pos_groups)
        self.trim = 1 if config.conv_pos % 2 == 0 else 0
        self.add_module("0", nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2))

    def fold_weight_norm(self) -> None:
        """For inference: the weight norm replaced by the plain weight it gives (computed
        once), held as a 2-D convolution over channels-last rows, 1.4× faster than the 1-D
        grouped convolution in bf16 on 250 steps."""
        conv = getattr(self, "0")
        nn.utils.parametrize.remove_parametrizations(conv, "weight")
        rows = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]), padding=(0, conv.padding[0]),
                         groups=conv.groups)
        with torch.no_grad():
            rows.weight.copy_(conv.weight[:, :, None, :])
            rows.bias.copy_(conv.bias)
        self.add_module("0", rows.to(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        conv = getattr(self, "0")
        if isinstance(conv, nn.Conv2d):  # folded: (B, D, 1, T) rows, channels-last
            y = conv(x.transpose(1, 2)[:, :, None, :].contiguous(memory_format=torch.channels_last))[:, :, 0]
        else:
            y = conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., :-self.trim]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, steps, self.heads, dim // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(attended.transpose(1, 2).reshape(batch, steps, dim))


class EncoderLayer(nn.Module):
    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.self_attn = SelfAttention(config.dim, config.heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.dim)
        self.fc1 = nn.Linear(config.dim, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.dim)
        self.final_layer_norm = nn.LayerNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x))
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class TransformerEncoder(nn.Module):
    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.pos_conv = PositionalConv(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.layer_norm = nn.LayerNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x) if self.layer_norm_first else x


class AVHubert(nn.Module):
    """The AV-HuBERT encoder: both front ends, concatenation, layer norm, projection, transformer."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.feature_extractor_audio = SubModel(config.audio_dim, config.dim)
        self.feature_extractor_video = SubModel(TRUNK_WIDTH, config.dim, ResEncoder(nn.PReLU))
        self.layer_norm = nn.LayerNorm(2 * config.dim)
        self.post_extract_proj = nn.Linear(2 * config.dim, config.dim)
        self.encoder = TransformerEncoder(config)

    def for_inference(self) -> "AVHubert":
        """Weight norm and batch norms folded into the weights they scale (same outputs within
        float rounding; done once after loading)."""
        self.encoder.pos_conv.fold_weight_norm()
        self.feature_extractor_video.resnet.fold_batch_norms()
        return self.eval()

    def forward(self, audio: torch.Tensor | None, video: torch.Tensor | None) -> torch.Tensor:
        """(B, T, 104) filter banks and/or (B, 1, T, 88, 88) mouth ROIs → (B, T, dim); a
        missing modality is zeroed, as at training time."""
        audio_features = self.feature_extractor_audio(audio) if audio is not None else None
        video_features = self.feature_extractor_video(video) if video is not None else None
        if audio_features is None:
            audio_features = torch.zeros_like(video_features)
        if video_features is None:
            video_features = torch.zeros_like(audio_features)
        fused = self.layer_norm(torch.cat([audio_features, video_features], dim=-1))
        return self.encoder(self.post_extract_proj(fused))


def build_model(checkpoint: dict, source: str = "checkpoint") -> AVHubert:
    """The network of a checkpoint with its weights, every key mapped: a missing or an
    unexpected key fails with its name."""
    state = {_native_key(key): value for key, value in checkpoint["model"].items() if not _unused(key)}
    return load_exact(AVHubert(AVHubertConfig.from_checkpoint(checkpoint)), state, source,
                      "AV-HuBERT").for_inference()


def _unused(key: str) -> bool:
    """Keys of the parts this app does not run: the seq2seq decoder and the pretraining heads."""
    return _strip(key).startswith(UNUSED_PREFIXES)


def _strip(key: str) -> str:
    return key.removeprefix(FINETUNED_PREFIX)


def _native_key(key: str) -> str:
    """fairseq's key → this module's: the fine-tuned prefix goes, the positional convolution's
    old-style weight norm (weight_g / weight_v) becomes torch's parametrisation."""
    key = _strip(key)
    return key.replace("pos_conv.0.weight_g", "pos_conv.0.parametrizations.weight.original0") \
              .replace("pos_conv.0.weight_v", "pos_conv.0.parametrizations.weight.original1")


# -- front ends --------------------------------------------------------------------------------------

def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595.0) - 1)


def filter_bank_matrix(bands: int = FBANK_BANDS, nfft: int = FBANK_NFFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular mel filters on FFT bins, placed as python_speech_features places them."""
    mel_points = np.linspace(_hz_to_mel(0), _hz_to_mel(rate / 2), bands + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mel_points) / rate).astype(int)
    matrix = np.zeros((bands, nfft // 2 + 1))
    for band in range(bands):
        low, centre, high = bins[band], bins[band + 1], bins[band + 2]
        for index in range(low, centre):
            matrix[band, index] = (index - low) / (centre - low)
        for index in range(centre, high):
            matrix[band, index] = (high - index) / (high - centre)
    return matrix


def log_filter_bank(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(frames × 26) log filter-bank energies: pre-emphasis 0.97, 25 ms rectangular windows
    every 10 ms (the last one zero-padded), 512-point power spectrum."""
    signal = np.asarray(audio, np.float64)
    signal = np.append(signal[:1], signal[1:] - PREEMPHASIS * signal[:-1])
    length, hop = int(_round_half_up(FBANK_WINDOW_S * rate)), int(_round_half_up(FBANK_HOP_S * rate))
    frames = 1 if len(signal) <= length else 1 + int(math.ceil((len(signal) - length) / hop))
    padded = np.concatenate([signal, np.zeros((frames - 1) * hop + length - len(signal))])
    windows = np.lib.stride_tricks.sliding_window_view(padded, length)[::hop][:frames]
    power = np.abs(np.fft.rfft(windows, FBANK_NFFT)) ** 2 / FBANK_NFFT
    energies = power @ filter_bank_matrix(rate=rate).T
    return np.log(np.where(energies == 0, np.finfo(float).eps, energies))


def _round_half_up(value: float) -> float:
    return float(math.floor(value + 0.5))


def audio_features(audio: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps × 104): four filter-bank frames stacked per step, zero-padded or cut to the
    clip's steps, each normalised over its 104 values."""
    bank = log_filter_bank(audio).astype(np.float32)
    bank = np.concatenate([bank, np.zeros((-len(bank) % AUDIO_STACK, bank.shape[1]), np.float32)])
    stacked = bank.reshape(-1, AUDIO_STACK * bank.shape[1])
    stacked = np.concatenate([stacked, np.zeros((max(0, n_steps - len(stacked)), stacked.shape[1]), np.float32)])
    stacked = stacked[:n_steps]
    return F.layer_norm(torch.from_numpy(stacked), stacked.shape[1:]).numpy()


# -- the encoder -------------------------------------------------------------------------------------

class AVHubertEncoder(CheckpointEncoder):
    """AV-HuBERT from a checkpoint (`--weights ENCODER=PATH`), or from a feature file
    (`--features`) as before; the modality of the registry entry decides what runs: audio
    and lips together (audio-visual), or one with the other zeroed."""

    def load(self, weights: str) -> nn.Module:
        return build_model(load_checkpoint(weights), str(weights))

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        return self._run(inputs, self.spec.modality)

    def stream_features(self, inputs: ClipInputs) -> tuple[np.ndarray, np.ndarray]:
        """(T, dim) features of the audio alone and of the lips alone (the other zeroed), from
        this checkpoint whatever the entry's own modality: the agreement sync scorer's input."""
        if self.model is None:
            raise AnalysisError(f"{self.spec.id} has no checkpoint loaded.",
                                hint=f"Give one: --weights {self.spec.id}=CHECKPOINT.pt")
        return fit_steps(self._run(inputs, "audio"), inputs.n_steps), fit_steps(self._run(inputs, "lips"),
                                                                                inputs.n_steps)

    def _run(self, inputs: ClipInputs, modality: str) -> np.ndarray:
        """The model on the clip's audio, lips or both (`modality`), one row per model step."""
        audio = torch.from_numpy(audio_features(inputs.audio, inputs.n_steps))[None] \
            if modality in ("audio", "audio-visual") else None
        video = torch.from_numpy(video_features(inputs.mouth_rois("avhubert"))) if modality in ("lips", "audio-visual") else None
        with self.inference():
            return self.model(audio, video)[0].float().numpy()
