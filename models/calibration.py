"""Calibrated, length-robust scores on top of the paper's raw ones.

The paper's video score S = logsumexp_t s_t grows by about log T with the clip's length
T, so the same evidence reads as more fake in a longer clip. The clip score here is the
log-mean-exp, S − log T, which does not move when a clip is repeated; a Platt mapping
sigmoid(scale · score + shift), fitted on a validation set whose sequences span 2-120 s
(`research/calibration.py`), turns it into a probability, and the card's threshold
decides fake. Steps get their own Platt mapping of s_t, fitted on step labels, and a
step threshold for fake segments. Probes whose card carries no fitted calibration (released
checkpoints, probes trained before this existed) get the paper's own mapping of the
length-robust score, sigmoid(2 · score), with threshold 0.5, and say so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from models.probes import logsumexp, sigmoid

UNCALIBRATED_METHOD = "uncalibrated: sigmoid(2 · log-mean-exp), the paper's mapping without the log T term"


@dataclass(frozen=True)
class Calibration:
    """A probe's mapping from its length-robust clip score to P(fake), and its threshold."""

    scale: float = 2.0
    shift: float = 0.0
    threshold: float = 0.5
    method: str = UNCALIBRATED_METHOD
    fitted: bool = False
    fit_on: dict = field(default_factory=dict)  # what it was fitted on (data, lengths, counts, rates)
    # steps have their own mapping of s_t, fitted on step labels, and threshold for segments
    step_scale: float = 2.0
    step_shift: float = 0.0
    step_threshold: float = 0.5

    @classmethod
    def from_card(cls, card: dict) -> "Calibration":
        entry = card.get("calibration")
        if not isinstance(entry, dict):
            return cls()
        return cls(float(entry["scale"]), float(entry["shift"]), float(entry["threshold"]),
                   str(entry.get("method", "platt")), bool(entry.get("fitted", True)), dict(entry.get("fit_on", {})),
                   float(entry.get("step_scale", 2.0)), float(entry.get("step_shift", 0.0)),
                   float(entry.get("step_threshold", 0.5)))

    def to_card(self) -> dict:
        return asdict(self)

    def probability(self, score: np.ndarray | float) -> np.ndarray:
        return sigmoid(self.scale * np.asarray(score, np.float64) + self.shift)

    def step_probability(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(self.step_scale * np.asarray(logits, np.float64) + self.step_shift)


def clip_score(logits: np.ndarray) -> float:
    """The log-mean-exp of the step logits: logsumexp − log T, unchanged by repeating a clip."""
    return logsumexp(logits) - math.log(max(1, len(logits)))


@dataclass
class CalibratedScores:
    """One probe's calibrated view of one clip."""

    clip_score: float
    p_fake: float
    step_probabilities: np.ndarray  # (T,)
    calibration: Calibration


def calibrate(logits: np.ndarray, calibration: Calibration) -> CalibratedScores:
    score = clip_score(logits)
    return CalibratedScores(score, float(calibration.probability(score)), calibration.step_probability(logits),
                            calibration)
