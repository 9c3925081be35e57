"""Temporal explanations (SSR-DFD Figure 3): the per-step logits are the explanation.

From an analysis result: peaks, predicted fake segments, ground-truth segments per
modality, frame-level localisation AUC/AP, segment IoU and the leading-silence check.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.analysis import AnalysisResult
from models.probes import ProbeScores
from models.timing import SAMPLES_PER_STEP, STEP_RATE

Segment = tuple[float, float]  # [start, end) in seconds
TRUTH_KEYS = {"audio": "audio_fake_segments", "lips": "visual_fake_segments", "face": "visual_fake_segments",
              "frame": "visual_fake_segments", "audio-visual": "fake_segments"}
SILENCE_DB = -35.0  # a step is silent when its RMS is this far below the clip's loudest step


@dataclass
class TemporalExplanation:
    """Everything the temporal figure and report show for one probe on one clip."""

    probe_id: str
    modality: str
    logits: np.ndarray
    probabilities: np.ndarray
    video_score: float
    p_fake: float
    peaks: list[int]
    predicted: list[Segment]
    truth: list[Segment] | None
    metrics: dict = field(default_factory=dict)

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.logits)) / STEP_RATE

    def to_dict(self) -> dict:
        return {"probe": self.probe_id, "modality": self.modality, "video_score": self.video_score,
                "p_fake": self.p_fake, "peaks_s": [round(p / STEP_RATE, 3) for p in self.peaks],
                "predicted_segments": [list(s) for s in self.predicted],
                "true_segments": [list(s) for s in self.truth] if self.truth is not None else None,
                "metrics": self.metrics}


def top_peaks(logits: np.ndarray, k: int = 3, min_gap_steps: int = STEP_RATE // 2) -> list[int]:
    """The k highest steps, each at least `min_gap_steps` from every higher one, in time order."""
    chosen: list[int] = []
    for step in np.argsort(-np.asarray(logits), kind="stable"):
        if all(abs(int(step) - c) >= min_gap_steps for c in chosen):
            chosen.append(int(step))
            if len(chosen) == k:
                break
    return sorted(chosen)


def predicted_segments(probabilities: np.ndarray, threshold: float = 0.5, min_duration_s: float = 0.2,
                       merge_gap_s: float = 0.0) -> list[Segment]:
    """Runs of steps with probability above `threshold`, runs separated by at most
    `merge_gap_s` joined, kept when they last at least `min_duration_s`."""
    above = np.concatenate([[False], np.asarray(probabilities) >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    runs: list[list[int]] = []
    for start, end in zip(edges[0::2], edges[1::2]):
        if runs and (start - runs[-1][1]) / STEP_RATE <= merge_gap_s + 1e-9:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return [(start / STEP_RATE, end / STEP_RATE) for start, end in runs
            if (end - start) / STEP_RATE >= min_duration_s - 1e-9]


def segment_score(probabilities: np.ndarray, segment: Segment) -> float:
    """The mean step probability over a segment given in seconds."""
    start, end = segment
    return float(np.mean(probabilities[int(round(start * STEP_RATE)):int(round(end * STEP_RATE))]))


def step_labels(segments: list[Segment], n_steps: int) -> np.ndarray:
    """1 for every step whose centre lies inside a segment, else 0."""
    centres = (np.arange(n_steps) + 0.5) / STEP_RATE
    labels = np.zeros(n_steps, int)
    for start, end in segments:
        labels[(centres >= start) & (centres < end)] = 1
    return labels


def segment_iou(predicted: list[Segment], truth: list[Segment], n_steps: int) -> float | None:
    """Intersection over union of the two segment sets on the step grid (None if both empty)."""
    a, b = step_labels(predicted, n_steps).astype(bool), step_labels(truth, n_steps).astype(bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else None


def localisation_metrics(scores: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    """Frame-level AUC and AP of scores against step labels: pooled over all steps of all
    clips, and averaged over the clips that have both real and fake steps."""
    # lazy: sklearn takes about 0.4 s to import, and only clips with a known truth are measured
    from sklearn.metrics import average_precision_score, roc_auc_score

    pooled_scores, pooled_labels = np.concatenate(scores), np.concatenate(labels)
    result: dict = {"pooled": None, "per_video": None}
    if 0 < pooled_labels.sum() < len(pooled_labels):
        result["pooled"] = {"auc": float(roc_auc_score(pooled_labels, pooled_scores)),
                            "ap": float(average_precision_score(pooled_labels, pooled_scores)),
                            "steps": int(len(pooled_labels))}
    mixed = [(s, y) for s, y in zip(scores, labels) if 0 < y.sum() < len(y)]
    if mixed:
        result["per_video"] = {"auc": float(np.mean([roc_auc_score(y, s) for s, y in mixed])),
                               "ap": float(np.mean([average_precision_score(y, s) for s, y in mixed])),
                               "videos": len(mixed)}
    return result


def speech_onset_step(audio: np.ndarray, silence_db: float = SILENCE_DB) -> int:
    """First step whose RMS is within `silence_db` of the loudest step (0 if all silent)."""
    n_steps = len(audio) // SAMPLES_PER_STEP
    if n_steps == 0:
        return 0
    frames = audio[: n_steps * SAMPLES_PER_STEP].reshape(n_steps, SAMPLES_PER_STEP)
    rms_db = 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(1)) + 1e-10)
    loud = np.flatnonzero(rms_db >= rms_db.max() + silence_db)
    return int(loud[0]) if len(loud) else 0


def leading_silence_share(logits: np.ndarray, audio: np.ndarray | None, top_fraction: float = 0.1) -> dict | None:
    """Share of the probe's top steps (highest logits, `top_fraction` of the clip) that
    fall in the silence before speech starts; the paper found audio probes react to it."""
    if audio is None:
        return None
    onset = speech_onset_step(audio)
    k = max(1, int(round(top_fraction * len(logits))))
    top = np.argsort(-logits, kind="stable")[:k]
    return {"speech_onset_s": onset / STEP_RATE, "top_steps": k,
            "share_in_leading_silence": float(np.mean(top < onset)),
            "silence_share_of_clip": onset / len(logits)}


def truth_for_modality(truth: dict | None, modality: str) -> list[Segment] | None:
    """The true fake segments a probe of `modality` should find (visual probes: visual
    segments, audio probes: audio segments, audio-visual probes: all)."""
    if truth is None:
        return None
    key = TRUTH_KEYS[modality]
    segments = truth.get(key)
    if segments is None and key != "fake_segments":
        segments = truth.get("fake_segments")
    return [tuple(map(float, s)) for s in segments or []]


def explain_scores(probe_id: str, modality: str, scores: ProbeScores, truth: list[Segment] | None = None,
                   audio: np.ndarray | None = None, k: int = 3, threshold: float = 0.5,
                   min_duration_s: float = 0.2) -> TemporalExplanation:
    """Peaks, predicted segments and metrics for one probe's scores."""
    predicted = predicted_segments(scores.probabilities, threshold, min_duration_s)
    metrics = {"leading_silence": leading_silence_share(scores.logits, audio)}
    if truth is not None:
        labels = step_labels(truth, len(scores.logits))
        metrics["localisation"] = localisation_metrics([scores.logits], [labels])
        metrics["segment_iou"] = segment_iou(predicted, truth, len(scores.logits))
    return TemporalExplanation(probe_id=probe_id, modality=modality, logits=scores.logits,
                               probabilities=scores.probabilities, video_score=scores.video_score,
                               p_fake=scores.p_fake, peaks=top_peaks(scores.logits, k), predicted=predicted,
                               truth=truth, metrics=metrics)


def explain_temporal(result: AnalysisResult, truth: dict | None = None, k: int = 3, threshold: float = 0.5,
                     min_duration_s: float = 0.2) -> list[TemporalExplanation]:
    """One TemporalExplanation per probe (plus the fusion when several probes ran)."""
    audio = result.clip.audio if result.clip is not None else None
    entries = [(pid, probe.modality, probe.scores) for pid, probe in result.probes.items()]
    if result.fusion is not None:
        entries.append(("fusion", "fusion", result.fusion))
    return [explain_scores(probe_id, modality, scores,
                           truth_for_modality(truth, "audio-visual" if modality == "fusion" else modality),
                           audio, k, threshold, min_duration_s)
            for probe_id, modality, scores in entries]
