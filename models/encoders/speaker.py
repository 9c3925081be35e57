"""A pretrained speaker encoder that ships inside a pip package: Resemblyzer's GE2E
network (3-layer LSTM, 256 units, on 40-band mel power frames at 10 ms; Apache-2.0).

Not self-supervised, but real pretrained audio knowledge available offline; each step is
described by the speaker embedding e_t of the 0.8 s window centred on it and by its
deviation from the clip's mean voice, e_t − mean(e) (512-d in all), so a splice of
another voice stands out where it happens whatever the clip's own voice is. Only the package's weights file is
read (with weights_only=True); its Python code is not imported.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.encoders.base import ClipInputs, Encoder, EncoderSpec, Progress
from models.errors import AnalysisError
from models.spectrogram import mel_power
from models.timing import SAMPLE_RATE, STEP_RATE

MEL_BANDS, MEL_HOP, MEL_WINDOW = 40, 160, 400  # 10 ms hop, 25 ms window at 16 kHz
WINDOW_FRAMES = 80  # 0.8 s of mel frames per step
TARGET_DBFS = -30.0


class GE2E(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(MEL_BANDS, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(N, frames, 40) → (N, 256) L2-normalised embeddings."""
        _, (hidden, _) = self.lstm(mels)
        return nn.functional.normalize(torch.relu(self.linear(hidden[-1])), dim=1)


def package_weights(package: str, filename: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AnalysisError(f"the package {package!r} is not installed.", hint=f"pip install {package}")
    return Path(spec.submodule_search_locations[0]) / filename


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power frames of volume-normalised audio, as the encoder was trained."""
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-9
    audio = audio * (10 ** (TARGET_DBFS / 20) / rms)
    return mel_power(audio, MEL_WINDOW, MEL_HOP, MEL_BANDS).T


class SpeakerEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, weights: str | None, precision: str = "auto"):
        super().__init__(spec, "fp32")
        path = Path(weights) if weights and Path(weights).exists() else package_weights(*spec.weights.split("::"))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        except Exception as error:  # noqa: BLE001
            raise AnalysisError(f"cannot read the speaker-encoder weights ({error}).", path=path) from None
        self.network = GE2E()
        self.network.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity")})
        self.network.eval().requires_grad_(False)

    def torch_module(self) -> nn.Module:
        return self.network

    @torch.inference_mode()
    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        mel = mel_frames(inputs.audio)
        half = WINDOW_FRAMES // 2
        padded = np.concatenate([np.zeros((half, MEL_BANDS), np.float32), mel,
                                 np.zeros((half, MEL_BANDS), np.float32)])
        centres = ((np.arange(inputs.n_steps) + 0.5) * SAMPLE_RATE / STEP_RATE / MEL_HOP).astype(int)
        windows = np.stack([padded[c:c + WINDOW_FRAMES] for c in np.minimum(centres, len(mel))])
        out = []
        for start in range(0, len(windows), 64):
            out.append(self.network(torch.from_numpy(windows[start:start + 64])).numpy())
            if progress:
                progress(min(1.0, (start + 64) / len(windows)))
        embeddings = np.concatenate(out)
        return np.concatenate([embeddings, embeddings - embeddings.mean(0, keepdims=True)], 1)
