"""Fitting a probe's calibration (models/calibration.py) on a validation split.

Validation clips are short (a few seconds), while users bring clips from seconds to
many minutes. So the fit sees sequences of every length in CALIBRATION_LENGTHS_S, built from
the validation clips' own step logits: a real sequence chains real clips; a fake one
chains real clips around one fake clip kept whole (so a 2-minute fake holds a
manipulation of under a second, as long real-world clips do); sequences shorter than a
clip are cut from one clip, around its fake segment when it has one. A linear probe
scores each step on its own, so chaining step logits is chaining the clips (apart from
the encoder's context at the joins). A Platt mapping of the clip score (the scaled
contrast by default, `models/calibration.py`, whose noise floor is the median step noise of
the real validation clips; with log T beside it for the contrast scores) is fitted by
logistic regression, and the threshold is the lowest that calls at most
TARGET_FALSE_FAKE of the real validation sequences of every length fake (never below 0.5).
The level limit is the highest level (median logit) of the real validation clips: above it
the verdict says the clip is outside what the probe knows.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression

from explain.temporal import predicted_segments, step_labels
from explain.verdict import MERGE_GAP_S, MIN_SEGMENT_S
from models.calibration import (
    CONTRAST_SCORES,
    Calibration,
    clip_level,
    clip_score,
    contrast,
    noise_scale,
    strongest_run,
)
from models.probes import sigmoid
from models.timing import STEP_RATE

CALIBRATION_LENGTHS_S = (2, 5, 10, 30, 60, 120, 600)
SEQUENCES_PER_LENGTH = 100  # of each class
# 1 % on the validation reals: the margin that footage unlike the training reals needs to stay
# within the 5 % the project promises on real recordings kept out of training
TARGET_FALSE_FAKE = 0.01


def chained_sequences(clips: list[tuple[np.ndarray, int, list]], length_s: float, count: int,
                      rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """`count` real and `count` fake step-logit sequences of `length_s` seconds from
    (logits, label, fake segments in seconds) validation clips."""
    steps = max(1, int(round(length_s * STEP_RATE)))
    reals = [c for c in clips if c[1] == 0]
    fakes = [c for c in clips if c[1] == 1]
    if not reals or not fakes:
        raise ValueError("calibration needs real and fake validation clips")
    out = []
    for _ in range(count):
        out.append((_real_sequence(reals, steps, rng), 0))
        out.append((_fake_sequence(reals, fakes[int(rng.integers(len(fakes)))], steps, rng), 1))
    return out


def _real_sequence(reals: list, steps: int, rng: np.random.Generator) -> np.ndarray:
    parts, total = [], 0
    while total < steps:
        logits = reals[int(rng.integers(len(reals)))][0]
        parts.append(logits)
        total += len(logits)
    chained = np.concatenate(parts)
    start = int(rng.integers(0, len(chained) - steps + 1))
    return chained[start:start + steps]


def _fake_sequence(reals: list, fake: tuple, steps: int, rng: np.random.Generator) -> np.ndarray:
    logits, _, segments = fake
    if steps <= len(logits):  # a crop of the fake clip around its (first) fake segment
        centre = int(np.mean(segments[0]) * STEP_RATE) if segments else len(logits) // 2
        start = int(np.clip(centre - steps // 2, 0, len(logits) - steps))
        return logits[start:start + steps]
    before = _real_sequence(reals, steps, rng)[: int(rng.integers(0, steps - len(logits) + 1))]
    after = _real_sequence(reals, steps, rng)[: steps - len(logits) - len(before)]
    return np.concatenate([before, logits, after])


def fit_calibration(clips: list[tuple[np.ndarray, int, list]], description: dict, seed: int = 0,
                    lengths_s: tuple[float, ...] = CALIBRATION_LENGTHS_S,
                    per_length: int = SEQUENCES_PER_LENGTH, score: str = "scaled-contrast") -> Calibration:
    """The Platt mapping of the `score` clip score and its threshold from validation clips,
    with what they were fitted on and the validation false-fake and detection rates per
    length at that threshold."""
    rng = np.random.default_rng(seed)
    sequences = {length: chained_sequences(clips, length, per_length, rng) for length in lengths_s}
    floor = real_noise_floor(clips) if score == "scaled-contrast" else 0.0
    scores = np.array([clip_score(s, score, floor) for group in sequences.values() for s, _ in group])
    steps = np.array([len(s) for group in sequences.values() for s, _ in group])
    labels = np.array([y for group in sequences.values() for _, y in group])
    inputs = np.c_[scores, np.log(steps)] if score in CONTRAST_SCORES else scores[:, None]
    model = LogisticRegression(C=1e4, max_iter=1000).fit(inputs, labels)
    length_scale = float(model.coef_[0, 1]) if score in CONTRAST_SCORES else 0.0
    provisional = Calibration(float(model.coef_[0, 0]), float(model.intercept_[0]), 0.5, "platt", True, score=score,
                              length_scale=length_scale, noise_floor=floor)
    lengths = np.array([length for length, group in sequences.items() for _ in group])
    real_probabilities = provisional.probability(scores, steps)[labels == 0]
    threshold = max([0.5] + [_lowest_threshold(real_probabilities[lengths[labels == 0] == length], TARGET_FALSE_FAKE)
                             for length in lengths_s])
    level_limit = max(clip_level(c[0]) for c in clips if c[1] == 0)
    calibration = Calibration(provisional.scale, provisional.shift, _round_up(threshold),
                              f"platt on the {score} clip score" + (" and log T" if length_scale else ""), True,
                              score=score, level_limit=level_limit, length_scale=length_scale, noise_floor=floor)
    called_fake = calibration.probability(scores, steps) >= calibration.threshold
    rates = {f"{length:g}s": {"false_fake": round(float(called_fake[(lengths == length) & (labels == 0)].mean()), 4),
                              "detected": round(float(called_fake[(lengths == length) & (labels == 1)].mean()), 4)}
             for length in lengths_s}
    step_scale, step_shift, step_threshold, step_rates = _fit_steps(
        [(calibration.step_inputs(logits), label, segments) for logits, label, segments in clips])
    fit_on = {**description, "steps": step_rates, "lengths_s": list(lengths_s), "sequences_per_length_and_class": per_length,
              "clips": {"real": int(sum(1 for c in clips if c[1] == 0)), "fake": int(sum(1 for c in clips if c[1] == 1))},
              "target_false_fake": TARGET_FALSE_FAKE, "validation_rates": rates, "seed": seed}
    return Calibration(calibration.scale, calibration.shift, calibration.threshold, calibration.method, True, fit_on,
                       step_scale, step_shift, step_threshold, score, level_limit, length_scale, floor)


def real_noise_floor(clips: list[tuple[np.ndarray, int, list]]) -> float:
    """The median step noise (`noise_scale` of the contrast) of the real validation clips:
    the least a clip is credited with, so a clip of unusually steady steps does not turn its
    small wobbles into large scaled peaks."""
    return float(np.median([noise_scale(contrast(c[0])) for c in clips if c[1] == 0]))


def _fit_steps(clips: list[tuple[np.ndarray, int, list]]) -> tuple[float, float, float, dict]:
    """A Platt mapping of step inputs (logits or their contrast) fitted on step labels (inside
    a fake segment or not),
    and the lowest step threshold (never below 0.5) at which at most TARGET_FALSE_FAKE of
    the real validation clips show a fake segment."""
    logits = np.concatenate([c[0] for c in clips])
    labels = np.concatenate([_step_truth(c) for c in clips])
    if labels.min() == labels.max():  # no step of one class: keep the paper's mapping for steps
        return 2.0, 0.0, 0.5, {"fitted": False, "reason": "the split has no steps of one class"}
    model = LogisticRegression(C=1e4, max_iter=1000).fit(logits[:, None], labels.astype(int))
    scale, shift = float(model.coef_[0, 0]), float(model.intercept_[0])
    reals = [sigmoid(scale * c[0] + shift) for c in clips if c[1] == 0]
    peaks = np.array([strongest_run(p, MIN_SEGMENT_S) for p in reals])  # where each real clip shows a segment
    threshold = max(0.5, _lowest_threshold(peaks, TARGET_FALSE_FAKE))
    fakes = [(sigmoid(scale * c[0] + shift), c[2]) for c in clips if c[1] == 1]
    found = np.mean([bool(predicted_segments(p, threshold, MIN_SEGMENT_S, MERGE_GAP_S)) for p, _ in fakes])
    return scale, shift, _round_up(threshold), {"real_clips_with_a_segment": round(float(
        (peaks >= threshold).mean()), 4), "fake_clips_with_a_segment": round(float(found), 4),
        "steps": int(len(labels)), "fake_steps": int(labels.sum())}


def _step_truth(clip: tuple[np.ndarray, int, list]) -> np.ndarray:
    """1 for steps of a fake clip inside its segments, or all its steps when the dataset
    gives no segments (FakeAVCeleb, CSV and folder sets label whole videos); 0 elsewhere."""
    logits, label, segments = clip
    if not label:
        return np.zeros(len(logits))
    return step_labels([tuple(s) for s in segments], len(logits)) if segments else np.ones(len(logits))


def _round_up(value: float) -> float:
    """Six decimals, never below `value` (a lower threshold would call more reals fake)."""
    return math.ceil(value * 1e6) / 1e6


def _lowest_threshold(real_probabilities: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most `rate` of these real probabilities reach it."""
    ordered = np.sort(real_probabilities)[::-1]
    allowed = int(np.floor(rate * len(ordered)))
    return float(np.nextafter(ordered[allowed], 1.0)) if allowed < len(ordered) else 0.0
