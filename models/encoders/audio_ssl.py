"""wav2vec2 / XLS-R, WavLM and HuBERT through transformers: last hidden state at 50 Hz,
paired to 25 Hz by concatenating consecutive frames (SSR-DFD)."""
from __future__ import annotations

import numpy as np
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

from models.encoders.base import (
    ClipInputs,
    Encoder,
    EncoderSpec,
    Progress,
    fit_steps,
    hub_unavailable,
    offline_mode,
    pair_frames,
)
from models.timing import SAMPLE_RATE

MAX_CHUNK_S = 30.0  # longer audio is encoded in chunks to bound attention memory


def model_class(family: str):
    return {"wav2vec2": Wav2Vec2Model, "wavlm": WavLMModel, "hubert": HubertModel}[family]


def config_class(family: str):
    return {"wav2vec2": Wav2Vec2Config, "wavlm": WavLMConfig, "hubert": HubertConfig}[family]


def load_audio_model(spec: EncoderSpec, weights: str | None) -> torch.nn.Module:
    """The transformers model: from a hub id or a local folder (the same call), or
    random-init from the architecture config at the entry's seed."""
    cls = model_class(spec.family)
    if weights is None:
        torch.manual_seed(spec.seed)
        return cls(config_class(spec.family)(**spec.arch))
    try:
        return cls.from_pretrained(weights, local_files_only=offline_mode(), use_safetensors=None)
    except OSError as error:
        raise hub_unavailable(spec, weights, error) from None


class AudioSSLEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, precision)
        self.model = load_audio_model(spec, weights).eval().to(self.dtype)
        self.model.requires_grad_(False)

    def torch_module(self) -> torch.nn.Module:
        return self.model

    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        audio = inputs.audio
        chunk = int(MAX_CHUNK_S * SAMPLE_RATE)
        parts = []
        starts = list(range(0, len(audio), chunk)) or [0]
        for index, start in enumerate(starts):
            parts.append(self._hidden_states(audio[start:start + chunk]))
            if progress:
                progress((index + 1) / len(starts))
        paired = pair_frames(np.concatenate(parts, 0))
        return fit_steps(paired, inputs.n_steps)

    @torch.inference_mode()
    def _hidden_states(self, audio: np.ndarray) -> np.ndarray:
        """Last hidden state (frames × hidden) at 50 Hz for one chunk, zero-mean unit-variance input."""
        audio = audio.astype(np.float32)
        if len(audio) < 400:  # shorter than the conv receptive field
            audio = np.pad(audio, (0, 400 - len(audio)))
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        values = torch.from_numpy(audio)[None].to(self.dtype)
        hidden = self.model(values).last_hidden_state[0]
        return hidden.float().numpy()
