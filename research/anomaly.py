"""Anomaly-detection proxies trained on real videos only (SSR-DFD §4):

- next-step prediction: a small causal transformer predicts the next L2-normalised
  feature; per-step score = squared error, video score = its maximum;
- audio-visual synchronisation: per-modality projections, an MLP on the concatenated
  pair; every video step is contrasted against the audio steps within ±15 (log-softmax
  rewards the aligned pair); per-step score = −log p(aligned), video score =
  logsumexp_t of it.

Both train with `research.training.fit` (early stopping on validation loss) and score
through the same `ProbeScores` as the probes, so `evaluate` treats them alike; they give
no calibrated probability (p_fake is NaN) and stay out of the probability fusion.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from models.anomaly import NextStepConfig, NextStepPredictor
from models.cache import atomic_write
from models.calibration import contrast, noise_scale
from models.errors import AnalysisError
from models.probes import LinearProbe, ProbeScores, RealDataModel, safe_name
from research.training import TrainConfig, fit

SYNC_WINDOW = 15
# the real-data model a probe may carry (`train --with-real-model`, the benchmark's folds):
# small, as it learns from about a hundred real clips; a context of 64 steps (2.6 s), which
# every training clip fills
REAL_MODEL_NETWORK = NextStepConfig(layers=2, heads=4, width=128, max_steps=64)
REAL_MODEL_TRAINING = TrainConfig(max_epochs=20, patience=5)


class AVSync(nn.Module):
    def __init__(self, audio_dim: int, visual_dim: int, width: int = 512):
        super().__init__()
        self.audio = nn.Linear(audio_dim, width)
        self.visual = nn.Linear(visual_dim, width)
        self.mlp = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, 1))

    def aligned_log_probs(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """For each step t: log-softmax over audio steps t-15..t+15 of the pair logits, at t."""
        steps = min(len(audio), len(visual))
        a = self.audio(F.normalize(audio[:steps], dim=-1))
        v = self.visual(F.normalize(visual[:steps], dim=-1))
        offsets = torch.arange(-SYNC_WINDOW, SYNC_WINDOW + 1)
        index = torch.arange(steps)[:, None] + offsets[None]
        valid = (index >= 0) & (index < steps)
        pairs = torch.cat([a[index.clamp(0, steps - 1)], v[:, None].expand(-1, len(offsets), -1)], -1)
        logits = self.mlp(pairs)[..., 0].masked_fill(~valid, float("-inf"))
        return F.log_softmax(logits, -1)[:, SYNC_WINDOW]

    def score(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return -self.aligned_log_probs(audio, visual)


@dataclass
class AnomalyScorer:
    """A trained proxy with its card; `score(features)` mirrors LinearProbe.score."""

    kind: str  # next-step | av-sync
    model: nn.Module
    card: dict

    @property
    def id(self) -> str:
        return self.card["id"]

    @property
    def encoders(self) -> list[str]:
        return [self.card["encoder"]] + ([self.card["visual_encoder"]] if self.kind == "av-sync" else [])

    def step_logits(self, *features: np.ndarray) -> np.ndarray:
        """Per-step anomaly scores in float64, read like a probe's step logits (higher = less
        like the real training clips), so the same calibration and metrics apply."""
        return self.score(*features).logits

    @torch.no_grad()
    def score(self, *features: np.ndarray) -> ProbeScores:
        tensors = [torch.from_numpy(np.asarray(f, np.float32)) for f in features]
        steps = self.model.score(*tensors).double().numpy()
        video = float(steps.max()) if self.kind == "next-step" else float(torch.logsumexp(torch.from_numpy(steps), 0))
        return ProbeScores(logits=steps, probabilities=np.full(len(steps), np.nan), video_score=video, p_fake=math.nan)


def train_next_step(train: list[np.ndarray], val: list[np.ndarray], card: dict, config: TrainConfig,
                    net_config: NextStepConfig = NextStepConfig()) -> tuple[AnomalyScorer, object]:
    """Fit the next-step predictor on real videos' features (MSE)."""
    torch.manual_seed(config.seed)
    model = NextStepPredictor(train[0].shape[1], net_config)

    def windows(clips: list[np.ndarray]) -> list[torch.Tensor]:
        return [w for x in clips if len(x) > 1 for w in model.windows(torch.from_numpy(np.asarray(x, np.float32)))]

    items, val_items = windows(train), windows(val)

    def batch_loss(net, batch):
        return torch.stack([net.step_errors(x).mean() for x in batch]).mean()

    def val_loss(net, batch):
        return float(batch_loss(net, batch))

    result = fit(model, batch_loss, val_loss, items, val_items, config)
    card = {**card, "kind": "next-step", "dim": train[0].shape[1], "network": asdict(net_config),
            "training": {**config.to_dict(), "best_epoch": result.best_epoch, "data": "real videos only",
                         "loss": "MSE of the next L2-normalised feature"}}
    return AnomalyScorer("next-step", result.model, card), result


def with_real_model(probe: LinearProbe, scorer: AnomalyScorer, val_reals: list[np.ndarray]) -> LinearProbe:
    """A copy of `probe` whose step logits add `scorer`'s (a next-step model trained on real
    clips), each divided by its median step noise on the real validation clips `val_reals`
    (1.4826 × MAD of the contrast with the clip's level), so neither drowns the other."""
    if scorer.kind != "next-step":
        raise AnalysisError(f"a probe carries a next-step real-data model, not {scorer.kind}.")
    units = [float(np.median([noise_scale(contrast(step_logits(x))) for x in val_reals]))
             for step_logits in (probe.step_logits, scorer.step_logits)]
    if not all(u > 0 for u in units):
        raise AnalysisError("the real validation clips give no step noise to scale the real-data model by.")
    card = {"kind": "next-step", "dim": scorer.card["dim"], "network": scorer.card["network"],
            "training": scorer.card["training"], "training_data": scorer.card.get("training_data")}
    return replace(probe, card=copy.deepcopy(probe.card), real_model=RealDataModel(scorer.model, *units, card=card))


def train_av_sync(train: list[tuple[np.ndarray, np.ndarray]], val: list[tuple[np.ndarray, np.ndarray]], card: dict,
                  config: TrainConfig, width: int = 512) -> tuple[AnomalyScorer, object]:
    """Fit the synchronisation model on real videos' (audio, visual) features."""
    torch.manual_seed(config.seed)
    model = AVSync(train[0][0].shape[1], train[0][1].shape[1], width)
    as_tensors = [(torch.from_numpy(np.asarray(a, np.float32)), torch.from_numpy(np.asarray(v, np.float32)))
                  for a, v in train]
    val_tensors = [(torch.from_numpy(np.asarray(a, np.float32)), torch.from_numpy(np.asarray(v, np.float32)))
                   for a, v in val]

    def batch_loss(net, batch):
        return torch.stack([-net.aligned_log_probs(a, v).mean() for a, v in batch]).mean()

    def val_loss(net, batch):
        return float(batch_loss(net, batch))

    result = fit(model, batch_loss, val_loss, as_tensors, val_tensors, config)
    card = {**card, "kind": "av-sync", "dims": [train[0][0].shape[1], train[0][1].shape[1]], "width": width,
            "window": SYNC_WINDOW, "training": {**config.to_dict(), "best_epoch": result.best_epoch,
                                                "data": "real videos only",
                                                "loss": "-log softmax of the aligned pair among ±15 audio steps"}}
    return AnomalyScorer("av-sync", result.model, card), result


def save_scorer(scorer: AnomalyScorer, folder: str | Path) -> Path:
    folder = Path(folder)
    stem = safe_name(scorer.id)
    state = {k: v.contiguous() for k, v in scorer.model.state_dict().items()}
    atomic_write(folder / f"{stem}.safetensors", lambda tmp: save_file(state, str(tmp)))
    atomic_write(folder / f"{stem}.json", lambda tmp: tmp.write_text(json.dumps(scorer.card, indent=2)))
    return folder / f"{stem}.json"


def load_scorer(card_path: str | Path) -> AnomalyScorer:
    card_path = Path(card_path)
    try:
        card = json.loads(card_path.read_text())
        state = load_file(str(card_path.with_suffix(".safetensors")))
    except (OSError, ValueError) as error:
        raise AnalysisError(f"cannot read the anomaly scorer ({error}).", path=card_path) from None
    if card.get("kind") == "next-step":
        model = NextStepPredictor(card["dim"], NextStepConfig(**card["network"]))
    elif card.get("kind") == "av-sync":
        model = AVSync(*card["dims"], card["width"])
    else:
        raise AnalysisError(f"unknown anomaly scorer kind {card.get('kind')!r}.", path=card_path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise AnalysisError(f"the weights do not fit the card ({error}).", path=card_path) from None
    return AnomalyScorer(card["kind"], model.eval(), card)
