"""Calibrated, length-robust scores on top of the paper's raw ones.

The paper's video score S = logsumexp_t s_t grows by about log T with the clip's length
T, so the same evidence reads as more fake in a longer clip. Three clip scores fix that:

- `log-mean-exp`, S − log T, which does not move when a clip is repeated (the released
  probes, and probes calibrated before the contrast score existed);
- `contrast` (probes calibrated in the release before this): each step's logit against the clip's own level there
  (the running median over ±CONTRAST_HALF_WINDOW_S), and the clip score is the strongest run
  of SEGMENT_S above that level. A manipulated segment stands out from the footage around
  it; a whole recording that merely differs from the training reals (another microphone,
  camera, face or voice) shifts every step alike and cancels. That shift is kept apart as
  the clip's *level* (its median logit): above the level of the real validation clips, the
  verdict says the input is outside what the probe knows instead of calling it fake;
- `scaled-contrast` (probes calibrated now): the contrast in units of the clip's own step
  noise (1.4826 × the median absolute deviation of its contrast, a robust standard
  deviation), never less than the typical noise of the real validation clips
  (`noise_floor`). Footage whose steps wander more than the training reals' (real
  recordings did, by 0.5-1 logit) has more and higher chance peaks, and a long clip has
  them by the hundred: with the plain contrast, chained real recordings of 60 s were
  called fake half the time, of 10 min every time. Measured against its own noise, a
  peak counts only where it stands out from the rest of the clip.

A Platt mapping sigmoid(scale · score + length_scale · log T + shift), fitted on a
validation set whose sequences span 2 s to 10 min (`research/calibration.py`), turns the
clip score into a probability, and the card's threshold decides fake. The log T term is
there for the contrast scores: the strongest run of a longer real clip is higher by chance
alone, as there are more places for it to be. Steps get their own Platt mapping (of s_t,
or of its (scaled) contrast), fitted on step labels, and a step threshold for fake segments. Probes
whose card carries no fitted calibration (released checkpoints, probes trained before this
existed) get the paper's own mapping of the log-mean-exp, sigmoid(2 · score), with
threshold 0.5, and say so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.ndimage import median_filter

from models.probes import logsumexp, sigmoid
from models.timing import STEP_RATE

CLIP_SCORES = ("log-mean-exp", "contrast", "scaled-contrast")
CONTRAST_SCORES = ("contrast", "scaled-contrast")  # judged against the clip's own level; log T in the mapping
MAD_TO_SD = 1.4826  # the median absolute deviation of normal noise times this is its standard deviation
CONTRAST_HALF_WINDOW_S = 1.5  # the level a step is judged against: the median of ±1.5 s around it
SEGMENT_S = 0.2  # the shortest run of steps that makes a fake segment
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
    score: str = "log-mean-exp"  # one of CLIP_SCORES
    level_limit: float | None = None  # highest clip level (median logit) the real validation clips reach
    length_scale: float = 0.0  # weight of log(steps) in the clip mapping
    noise_floor: float = 0.0  # scaled-contrast: the least step noise a clip is credited with (logits)

    @classmethod
    def from_card(cls, card: dict) -> "Calibration":
        entry = card.get("calibration")
        if not isinstance(entry, dict) or (entry.get("score") == "scaled-contrast"
                                           and not float(entry.get("noise_floor") or 0.0) > 0):
            return cls()  # none, or a scaled contrast without its floor (a flat clip would divide by 0): uncalibrated
        return cls(float(entry["scale"]), float(entry["shift"]), float(entry["threshold"]),
                   str(entry.get("method", "platt")), bool(entry.get("fitted", True)), dict(entry.get("fit_on", {})),
                   float(entry.get("step_scale", 2.0)), float(entry.get("step_shift", 0.0)),
                   float(entry.get("step_threshold", 0.5)), str(entry.get("score", "log-mean-exp")),
                   None if entry.get("level_limit") is None else float(entry["level_limit"]),
                   float(entry.get("length_scale", 0.0)), float(entry.get("noise_floor", 0.0)))

    def to_card(self) -> dict:
        return asdict(self)

    def probability(self, score: np.ndarray | float, steps: np.ndarray | int = 1) -> np.ndarray:
        """P(fake) of clip scores of clips `steps` long."""
        length = np.log(np.maximum(1, np.asarray(steps, np.float64)))
        return sigmoid(self.scale * np.asarray(score, np.float64) + self.length_scale * length + self.shift)

    def clip_probability(self, logits: np.ndarray) -> float:
        """P(fake) of a clip from its step logits, by this calibration's clip score."""
        return float(self.clip_probabilities(np.asarray(logits)[None])[0])

    def clip_probabilities(self, rows: np.ndarray) -> np.ndarray:
        """P(fake) of each row of (R, T) step logits, as `clip_probability` gives it for
        one (the deletion and insertion curves score hundreds of variants of a clip)."""
        rows = np.asarray(rows, np.float64)
        if self.score in CONTRAST_SCORES:  # these work along the last axis: every row at once
            scores = clip_score(rows, self.score, self.noise_floor)
        else:
            scores = np.array([clip_score(row, self.score) for row in rows])
        return self.probability(scores, rows.shape[-1])

    def step_inputs(self, logits: np.ndarray) -> np.ndarray:
        """What the step mapping reads: the logits, or their (scaled) contrast with the clip's level."""
        return step_evidence(logits, self.score, self.noise_floor)

    def step_probability(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(self.step_scale * self.step_inputs(logits) + self.step_shift)


def clip_score(logits: np.ndarray, kind: str = "log-mean-exp", noise_floor: float = 0.0) -> float | np.ndarray:
    """The clip's score of `kind` (CLIP_SCORES): the log-mean-exp of the step logits
    (logsumexp − log T, unchanged by repeating a clip), or the strongest run of the (scaled)
    contrast (along the last axis: one score per row of clips)."""
    if kind in CONTRAST_SCORES:
        return strongest_run(step_evidence(logits, kind, noise_floor))
    if kind != "log-mean-exp":
        raise ValueError(f"unknown clip score {kind!r}; one of {CLIP_SCORES}")
    return logsumexp(logits) - math.log(max(1, len(logits)))


def step_evidence(logits: np.ndarray, kind: str, noise_floor: float = 0.0) -> np.ndarray:
    """Per step (the last axis: one clip, or rows of clips), what the clip score of `kind` is
    made of: the logits themselves, their contrast with the clip's level, or that contrast
    in units of the clip's step noise."""
    if kind == "contrast":
        return contrast(logits)
    if kind == "scaled-contrast":
        differences = contrast(logits)
        return differences / np.maximum(noise_scale(differences), max(noise_floor, 1e-9))[..., None]
    return np.asarray(logits, np.float64)


def noise_scale(differences: np.ndarray) -> np.ndarray | float:
    """A robust standard deviation of a clip's contrast (along the last axis): 1.4826 × its
    median absolute deviation (a manipulated stretch shorter than half the clip barely
    moves it)."""
    differences = np.asarray(differences, np.float64)
    if not differences.shape[-1]:
        return np.zeros(differences.shape[:-1]) if differences.ndim > 1 else 0.0
    centre = np.median(differences, axis=-1, keepdims=True)
    scale = MAD_TO_SD * np.median(np.abs(differences - centre), axis=-1)
    return float(scale) if differences.ndim == 1 else scale


def contrast(logits: np.ndarray) -> np.ndarray:
    """Each step logit (along the last axis) minus the median of the steps within
    ±CONTRAST_HALF_WINDOW_S of it (near the ends, of those that exist: no padding that would
    repeat an end step)."""
    logits = np.asarray(logits, np.float64)
    half = int(round(CONTRAST_HALF_WINDOW_S * STEP_RATE))
    steps = logits.shape[-1]
    if not steps:
        return logits.copy()
    size = (1,) * (logits.ndim - 1) + (2 * half + 1,)
    level = median_filter(logits, size=size, mode="nearest")  # right where the whole window fits
    ends = np.unique(np.r_[np.arange(min(half, steps)), np.arange(max(0, steps - half), steps)])
    padding = [(0, 0)] * (logits.ndim - 1) + [(half, half)]
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(logits, padding, constant_values=np.nan), 2 * half + 1,
                                                       axis=-1)
    ordered = np.sort(windows[..., ends, :], axis=-1)  # the padding (NaN) sorts last
    present = np.sum(~np.isnan(ordered[(0,) * (logits.ndim - 1)]), axis=-1)  # the same in every row
    columns = np.arange(len(ends))
    level[..., ends] = 0.5 * (ordered[..., columns, (present - 1) // 2] + ordered[..., columns, present // 2])
    return logits - level


def strongest_run(values: np.ndarray, seconds: float = SEGMENT_S) -> np.ndarray | float:
    """The highest level that `seconds` of consecutive steps (along the last axis) all reach
    (the largest minimum over any window of that many steps; the clip's minimum when it is
    shorter)."""
    values = np.asarray(values, np.float64)
    width = max(1, int(round(seconds * STEP_RATE)))
    if not values.shape[-1]:
        return np.zeros(values.shape[:-1]) if values.ndim > 1 else 0.0
    if values.shape[-1] < width:
        best = values.min(axis=-1)
    else:
        best = np.lib.stride_tricks.sliding_window_view(values, width, axis=-1).min(-1).max(-1)
    return float(best) if values.ndim == 1 else best


def clip_level(logits: np.ndarray) -> float:
    """The clip's level: the median of its step logits (what the contrast score leaves out)."""
    return float(np.median(logits)) if len(logits) else 0.0


@dataclass
class CalibratedScores:
    """One probe's calibrated view of one clip."""

    clip_score: float
    p_fake: float
    step_probabilities: np.ndarray  # (T,)
    calibration: Calibration
    level: float  # the median step logit

    @property
    def level_out_of_range(self) -> bool:
        """The whole clip sits above every level the probe's real validation clips reached."""
        limit = self.calibration.level_limit
        return limit is not None and self.level > limit


def calibrate(logits: np.ndarray, calibration: Calibration) -> CalibratedScores:
    score = clip_score(logits, calibration.score, calibration.noise_floor)
    return CalibratedScores(score, float(calibration.probability(score, len(logits))),
                            calibration.step_probability(logits), calibration, clip_level(logits))
