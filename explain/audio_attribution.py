"""Time–frequency attribution of an audio probe: which mel bins at which moments drove its
fake score. Integrated gradients of the score with respect to the normalised
log-mel spectrogram the self-splice encoder reads (`splice_net_input`), along the path
from the clip's own floor (every bin at its quietest level, silence in this spectrogram)
to the clip. The score is one step's logit, or by default the clip's pooled score
logsumexp_t s_t, whose gradient is the step gradients weighted by their softmax share, so
the steps that decide the score dominate rather than every step counting alike.

The encoder reads the spectrogram with its edge frames repeated (`edge_padded`); the
attribution of the repeated frames is added back to the edge frame they copy, which is
exact for integrated gradients (the copies move together along the path). The map is the
absolute attribution scaled to 0..1, one column per mel frame as `models.media.log_mel`
gives them (frame j centred at j · 10 ms), so it lies on the spectrogram figures' axis.

Only encoders over the log-mel spectrogram have this input (the project's
`selfsplice-gru`); wav2vec2-style encoders read the waveform and are refused.

Cost: MEL_IG_STEPS forward and backward passes over the whole clip (the GRU is
bidirectional, so every step depends on all of it): well under a second for a 2 s clip,
70 s and 1.7 GB for a 2 min clip (measured on two busy cores).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from explain.spatial import probe_encoder
from models.analysis import AnalysisResult
from models.encoders import Encoder
from models.encoders.base import fit_steps
from models.encoders.project import EDGE_STEPS, MEL_FRAMES_PER_STEP, SelfSpliceEncoder, edge_padded, splice_net_input
from models.errors import AnalysisError
from models.probes import LinearProbe

MEL_IG_STEPS = 32  # points on the path from the floor to the clip's spectrogram
MEL_IG_BATCH = 32  # path points per forward pass: all at once (the GRU runs step by step, so batching pays)


@dataclass
class AudioAttribution:
    """An audio probe's time–frequency map over its clip's log-mel spectrogram."""

    probe_id: str
    attribution: np.ndarray  # (N_MELS, mel frames) 0..1, aligned with log_mel(audio)
    logits: np.ndarray  # (n_steps,) the probe's step logits on this input
    step: int | None  # the explained step, or None for the pooled clip score

    def to_dict(self) -> dict:
        return {"probe": self.probe_id, "target": "pooled clip score" if self.step is None else f"step {self.step}",
                "mel_bins": int(self.attribution.shape[0]), "mel_frames": int(self.attribution.shape[1])}


def audio_attribution(encoder: Encoder, probe: LinearProbe, audio: np.ndarray, n_steps: int,
                      step: int | None = None, network: nn.Module | None = None) -> AudioAttribution:
    """Integrated gradients of the probe's pooled score (or of `step`'s logit) over the
    clip's log-mel input, as a (N_MELS, frames) map in 0..1; `network` replaces the
    encoder's (a randomised twin, a test network)."""
    if not isinstance(encoder, SelfSpliceEncoder):
        raise AnalysisError(f"encoder {encoder.spec.id} does not read a log-mel spectrogram, so its probes have no "
                            "time-frequency attribution.", hint="The self-splice encoder (selfsplice-gru) has one.")
    if step is not None and not 0 <= step < n_steps:
        raise AnalysisError(f"step {step} is outside the clip's {n_steps} steps.")
    network = network or encoder.torch_module()
    mel = splice_net_input(audio)
    padded = torch.from_numpy(edge_padded(mel))[None]

    def score(spectrograms: torch.Tensor) -> torch.Tensor:
        logits = _step_logits(network, probe, spectrograms, n_steps)
        return torch.logsumexp(logits, 1) if step is None else logits[:, step]

    attribution = integrated_gradients(score, padded, torch.full_like(padded, float(mel.min())))
    folded = np.abs(_fold_edges(attribution[0].double().numpy()))
    peak = folded.max()
    with torch.no_grad():
        logits = _step_logits(network, probe, padded, n_steps)[0].double().numpy()
    return AudioAttribution(probe.id, folded / peak if peak > 0 else folded, logits, step)


def integrated_gradients(score, inputs: torch.Tensor, baseline: torch.Tensor, steps: int = MEL_IG_STEPS,
                         batch: int = MEL_IG_BATCH) -> torch.Tensor:
    """Integrated gradients of `score` (a (B,) output of (B, ...) inputs) for one input (1, ...)
    from `baseline`: (input − baseline) × the path integral of the gradient, by
    Gauss–Legendre quadrature on `steps` points (captum's default method, same numbers).
    Written here rather than imported: captum's package import costs 0.5 s of a cold CLI run."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2  # from [-1, 1] to the path's [0, 1]
    difference = inputs - baseline
    total = torch.zeros_like(inputs)
    for start in range(0, steps, batch):
        alpha = torch.tensor(alphas[start:start + batch], dtype=inputs.dtype).view(-1, *[1] * (inputs.dim() - 1))
        points = (baseline + alpha * difference).requires_grad_(True)
        with torch.enable_grad():
            gradients, = torch.autograd.grad(score(points).sum(), points)
        weight = torch.tensor(weights[start:start + batch], dtype=inputs.dtype).view_as(alpha)
        total += (gradients * weight).sum(0, keepdim=True)
    return (total * difference).detach()


def _step_logits(network: nn.Module, probe: LinearProbe, spectrograms: torch.Tensor, n_steps: int) -> torch.Tensor:
    """(B, n_steps) step logits of edge-padded spectrograms, on the clip's steps as the
    encoder gives them (padding steps dropped, then trimmed or the last step repeated)."""
    features = network(spectrograms)[:, EDGE_STEPS:]
    available = features.shape[1]
    logits = torch.stack([probe.torch_logits(clip) for clip in features])  # each its own sequence
    return logits[:, fit_steps(np.arange(available)[:, None], n_steps)[:, 0]]


def _fold_edges(attribution: np.ndarray) -> np.ndarray:
    """The attribution of an edge-padded spectrogram on the clip's own frames: each end's
    repeated frames added to the frame they repeat."""
    pad = EDGE_STEPS * MEL_FRAMES_PER_STEP
    inner = attribution[:, pad:-pad].copy()
    inner[:, 0] += attribution[:, :pad].sum(1)
    inner[:, -1] += attribution[:, -pad:].sum(1)
    return inner


def explain_audio(result: AnalysisResult, probe_id: str, step: int | None = None) -> AudioAttribution:
    """The time–frequency attribution of one audio probe of an analysed video."""
    encoder, probe = probe_encoder(result, probe_id)
    if result.clip is None or result.clip.audio is None:
        raise AnalysisError("this analysis kept no audio to explain.")
    return audio_attribution(encoder, probe, result.clip.audio, result.clip.n_steps, step)
