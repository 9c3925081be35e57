"""Evaluation of probes and anomaly scorers on labelled test sets: video-level AUC / AP,
the train-set × test-set AUC matrix (the paper's Table 2), frame-level localisation
(pooled over all steps and averaged per video), segment localisation as the
AV-Deepfake1M challenge scores it (AP@IoU, AR@N; proposals written in its format), late
fusion (mean probability) and the Pearson correlation of the scorers' predictions;
written as CSV, JSON and plots."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from explain.figures import save_figure
from explain.temporal import localisation_metrics, predicted_segments, segment_score, step_labels, truth_for_modality
from explain.verdict import MERGE_GAP_S, MIN_SEGMENT_S
from models.cache import atomic_write
from models.calibration import Calibration, calibrate
from models.encoders import get_spec
from models.probes import ProbeScores, safe_name
from research.datasets import Record

PROPOSAL_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
AP_IOUS = (0.5, 0.75, 0.9, 0.95)
AR_COUNTS = (50, 20, 10, 5)


class Scorer(Protocol):
    card: dict

    @property
    def id(self) -> str: ...

    def score(self, *features: np.ndarray) -> ProbeScores: ...


FeatureLookup = Callable[[Record, str], "np.ndarray | None"]


def scorer_encoders(scorer: Scorer) -> list[str]:
    return getattr(scorer, "encoders", None) or [scorer.card["encoder"]]


def train_set_of(scorer: Scorer) -> str:
    data = scorer.card.get("training_data")
    return data.get("dataset", "?") if isinstance(data, dict) else str(data or "?")


@dataclass
class Predictions:
    scorer: str
    test_set: str
    paths: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the dataset's own name of each video (its `file`)
    labels: list[int] = field(default_factory=list)
    video_scores: list[float] = field(default_factory=list)
    p_fake: list[float] = field(default_factory=list)
    step_logits: list[np.ndarray] = field(default_factory=list)
    step_truth: list[np.ndarray | None] = field(default_factory=list)
    segment_truth: list[list | None] = field(default_factory=list)  # the modality's fake segments (s)
    proposals: list[list[list[float]]] = field(default_factory=list)  # [[score, start_s, end_s], ...] per video
    missing: list[str] = field(default_factory=list)

    def prediction(self) -> np.ndarray:
        """What correlation and fusion use: P(fake) when calibrated, else the video score."""
        p = np.asarray(self.p_fake, float)
        return p if len(p) and np.all(np.isfinite(p)) else np.asarray(self.video_scores, float)


def video_metrics(labels: list[int] | np.ndarray, scores: list[float] | np.ndarray) -> dict:
    labels, scores = np.asarray(labels), np.asarray(scores, float)
    result = {"videos": int(len(labels)), "fake": int(labels.sum()), "auc": None, "ap": None}
    if 0 < labels.sum() < len(labels):
        result["auc"] = float(roc_auc_score(labels, scores))
        result["ap"] = float(average_precision_score(labels, scores))
    return result


def fake_clip_localisation(step_logits: list[np.ndarray], step_truth: list[np.ndarray | None]) -> dict | None:
    """Frame-level localisation on the fake clips of the target modality (real clips have
    no segments, and clips without ground truth are left out); None when there are none."""
    fake = [(s, y) for s, y in zip(step_logits, step_truth) if y is not None and y.any()]
    return localisation_metrics([s for s, _ in fake], [y for _, y in fake]) if fake else None


def predict(scorer: Scorer, records: list[Record], test_set: str, features_for: FeatureLookup) -> Predictions:
    out = Predictions(scorer.id, test_set)
    encoders = scorer_encoders(scorer)
    modality = get_spec(encoders[0]).modality if len(encoders) == 1 else "audio-visual"
    for record in records:
        features = [features_for(record, encoder) for encoder in encoders]
        if any(f is None for f in features):
            out.missing.append(record.path)
            continue
        scores = scorer.score(*features)
        out.paths.append(record.path)
        out.files.append(record.relative)
        out.labels.append(record.label)
        out.video_scores.append(scores.video_score)
        out.p_fake.append(scores.p_fake)
        out.step_logits.append(scores.logits)
        truth = truth_for_modality(record.truth(), modality)
        out.step_truth.append(step_labels(truth, len(scores.logits)) if truth is not None else None)
        out.segment_truth.append(truth)
        calibration = Calibration.from_card(scorer.card)
        out.proposals.append(segment_proposals(calibrate(scores.logits, calibration).step_probabilities))
    return out


def segment_proposals(step_probabilities: np.ndarray, levels: tuple[float, ...] = PROPOSAL_LEVELS) -> list:
    """Candidate fake segments [[score, start_s, end_s], ...], best first: the runs above
    each of several probability levels (at least 0.2 s, gaps up to 0.2 s merged), scored by
    their mean step probability, duplicates removed."""
    found = {}
    for level in levels:
        for start, end in predicted_segments(step_probabilities, level, MIN_SEGMENT_S, MERGE_GAP_S):
            found[(round(start, 4), round(end, 4))] = round(segment_score(step_probabilities, (start, end)), 6)
    return sorted(([score, start, end] for (start, end), score in found.items()), key=lambda p: -p[0])


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def segment_metrics(proposals: list[list], truths: list[list | None]) -> dict | None:
    """AV-Deepfake1M-style temporal localisation over a test set's videos: AP at each IoU of
    AP_IOUS (all proposals of all videos ranked by score; a proposal is a hit when it
    overlaps a not yet matched true segment of its video by at least that IoU), and AR@N,
    the share of true segments found by a video's N best proposals, averaged over AP_IOUS.
    None when the set has no true segments."""
    pairs = [(p, t) for p, t in zip(proposals, truths) if t is not None]
    total = sum(len(t) for _, t in pairs)
    if total == 0:
        return None
    ranked = sorted(((score, start, end, video) for video, (props, _) in enumerate(pairs)
                     for score, start, end in props), key=lambda r: -r[0])
    ap = {}
    for threshold in AP_IOUS:
        matched: set[tuple[int, int]] = set()
        hits = []
        for _, start, end, video in ranked:
            candidates = [(_iou((start, end), tuple(seg)), index) for index, seg in enumerate(pairs[video][1])
                          if (video, index) not in matched]
            best = max(candidates, default=(0.0, -1))
            hit = best[0] >= threshold
            if hit:
                matched.add((video, best[1]))
            hits.append(hit)
        hits = np.array(hits, bool)
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1) if len(hits) else np.array([])
        recall = np.cumsum(hits) / total if len(hits) else np.array([])
        ap[str(threshold)] = round(_interpolated_ap(precision, recall), 4)
    ar = {}
    for n in AR_COUNTS:
        recalls = []
        for threshold in AP_IOUS:
            found = sum(sum(any(_iou((s, e), tuple(seg)) >= threshold for _, s, e in props[:n]) for seg in truth)
                        for props, truth in pairs)
            recalls.append(found / total)
        ar[str(n)] = round(float(np.mean(recalls)), 4)
    return {"true_segments": total, "videos": len(pairs), "ap": ap, "ar": ar}


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision-recall curve with precision made non-increasing (VOC style)."""
    if not len(precision):
        return 0.0
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [recall[-1]]])
    for index in range(len(precision) - 2, -1, -1):
        precision[index] = max(precision[index], precision[index + 1])
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def evaluate(scorers: list[Scorer], test_sets: dict[str, list[Record]], features_for: FeatureLookup) -> dict:
    """Every scorer on every test set, plus the matrix, fusion and correlations."""
    predictions = {(s.id, name): predict(s, records, name, features_for)
                   for s in scorers for name, records in test_sets.items()}
    results = []
    for (scorer_id, test_set), pred in predictions.items():
        entry = {"scorer": scorer_id, "test_set": test_set, **video_metrics(pred.labels, pred.video_scores),
                 "missing_features": len(pred.missing)}
        entry["localisation"] = fake_clip_localisation(pred.step_logits, pred.step_truth)
        entry["segments"] = segment_metrics(pred.proposals, pred.segment_truth)
        results.append(entry)
    matrix = {s.id: {"train_set": train_set_of(s), **{name: _auc(results, s.id, name) for name in test_sets}}
              for s in scorers}
    report = {"results": results, "matrix": matrix, "test_sets": list(test_sets),
              "fusion": _fusion(scorers, test_sets, predictions), "correlation": _correlations(scorers, test_sets,
                                                                                             predictions)}
    report["_predictions"] = predictions
    return report


def _auc(results: list[dict], scorer_id: str, test_set: str) -> float | None:
    return next(r["auc"] for r in results if r["scorer"] == scorer_id and r["test_set"] == test_set)


def _common(preds: list[Predictions]) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Predictions of several scorers restricted to the videos all of them scored."""
    shared = set.intersection(*(set(p.paths) for p in preds))
    order = [path for path in preds[0].paths if path in shared]
    by_path = [dict(zip(p.paths, p.prediction())) for p in preds]
    values = [np.array([lookup[path] for path in order]) for lookup in by_path]
    labels_by_path = dict(zip(preds[0].paths, preds[0].labels))
    labels = np.array([labels_by_path[path] for path in order])
    return order, values, labels


def _calibrated(scorer: Scorer, test_sets: dict, predictions: dict) -> bool:
    values = [p for name in test_sets for p in predictions[(scorer.id, name)].p_fake]
    return bool(values) and bool(np.all(np.isfinite(values)))


def _fusion(scorers, test_sets, predictions) -> dict | None:
    calibrated = [s for s in scorers if _calibrated(s, test_sets, predictions)]
    if len(calibrated) < 2:
        return None
    out = {"scorers": [s.id for s in calibrated], "rule": "mean P(fake)"}
    for name in test_sets:
        _, values, labels = _common([predictions[(s.id, name)] for s in calibrated])
        out[name] = video_metrics(labels, np.mean(values, 0)) if len(labels) else None
    return out


def _correlations(scorers, test_sets, predictions) -> dict | None:
    if len(scorers) < 2:
        return None
    out = {}
    for name in test_sets:
        _, values, _ = _common([predictions[(s.id, name)] for s in scorers])
        if len(values[0]) < 3:
            out[name] = None
            continue
        out[name] = {"scorers": [s.id for s in scorers],
                     "pearson": np.round(np.nan_to_num(np.corrcoef(np.stack(values))), 4).tolist()}
    return out


def write_evaluation(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """metrics.json, matrix.csv, predictions.csv, roc_<set>.png and correlation_<set>.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions: dict = report["_predictions"]
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    paths = {"metrics": atomic_write(out_dir / "metrics.json",
                                     lambda tmp: tmp.write_text(json.dumps(public, indent=1)))}

    def write_matrix(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["scorer", "train_set", *report["test_sets"]])
            for scorer, row in report["matrix"].items():
                writer.writerow([scorer, row["train_set"]] + [
                    "" if row[t] is None else f"{100 * row[t]:.1f}" for t in report["test_sets"]])

    def write_predictions(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["scorer", "test_set", "path", "label", "video_score", "p_fake"])
            for pred in predictions.values():
                for row in zip(pred.paths, pred.labels, pred.video_scores, pred.p_fake):
                    writer.writerow([pred.scorer, pred.test_set, *row])

    paths["matrix"] = atomic_write(out_dir / "matrix.csv", write_matrix)
    for pred in predictions.values():  # the AV-Deepfake1M challenge's localisation format, per scorer and set
        name = f"segments_{safe_name(pred.scorer)}_{safe_name(pred.test_set)}"
        by_file = dict(zip(pred.files, pred.proposals))
        paths[name] = atomic_write(out_dir / f"{name}.json", lambda tmp, data=by_file: tmp.write_text(json.dumps(data)))
    paths["predictions"] = atomic_write(out_dir / "predictions.csv", write_predictions)
    paths.update(_plots(report, predictions, out_dir))
    return paths


def _plots(report: dict, predictions: dict, out_dir: Path) -> dict[str, Path]:
    paths = {}
    for name in report["test_sets"]:
        figure = Figure(figsize=(5, 5), layout="constrained")
        ax = figure.add_subplot()
        for (scorer_id, test_set), pred in predictions.items():
            labels = np.asarray(pred.labels)
            if test_set != name or not 0 < labels.sum() < len(labels):
                continue
            fpr, tpr, _ = roc_curve(labels, pred.video_scores)
            auc = _auc(report["results"], scorer_id, name)
            ax.plot(fpr, tpr, label=f"{scorer_id} (AUC {100 * auc:.1f})")
        ax.plot([0, 1], [0, 1], ls="--", color="#888888", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {name}")
        ax.legend(fontsize=7, loc="lower right")
        paths[f"roc_{name}"] = save_figure(figure, out_dir / f"roc_{name}", ("png",))[0]
        correlation = (report.get("correlation") or {}).get(name)
        if correlation:
            figure = Figure(figsize=(5, 4.5), layout="constrained")
            ax = figure.add_subplot()
            values = np.array(correlation["pearson"])
            image = ax.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_xticks(range(len(values)), correlation["scorers"], rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(values)), correlation["scorers"], fontsize=7)
            for i in range(len(values)):
                for j in range(len(values)):
                    ax.text(j, i, f"{100 * values[i, j]:.0f}", ha="center", va="center", fontsize=7)
            figure.colorbar(image, ax=ax, label="Pearson r")
            ax.set_title(f"Correlation of predictions — {name}")
            paths[f"correlation_{name}"] = save_figure(figure, out_dir / f"correlation_{name}", ("png",))[0]
    return paths
