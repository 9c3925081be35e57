"""Research workflows over datasets (extract → train → evaluate), shared by the CLI and tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from models.cache import FeatureCache, atomic_write
from models.calibration import Calibration
from models.encoders import get_spec
from models.errors import AnalysisError
from models.probes import LinearProbe, save_probe
from models.settings import Settings
from models.zoo import load_probe
from research.anomaly import (
    REAL_MODEL_NETWORK,
    REAL_MODEL_TRAINING,
    NextStepConfig,
    load_scorer,
    save_scorer,
    train_av_sync,
    train_next_step,
    with_real_model,
)
from research.calibration import fit_calibration
from research.datasets import DatasetSpec, Record, load_dataset_spec
from research.evaluation import evaluate as run_evaluation
from research.evaluation import video_metrics, write_evaluation
from research.extract import RESEARCH_SETTINGS, ExtractionReport, ShaIndex, extract_dataset, load_record_features
from research.sources import provenance
from research.training import TrainConfig, train_probe


class FeatureSource:
    """Features of dataset records: a dataset's precomputed folder, else the feature cache,
    extracting what is missing in-process when allowed."""

    def __init__(self, cache: FeatureCache | None = None, settings: Settings = RESEARCH_SETTINGS,
                 extract_missing: bool = True):
        self.cache = cache or FeatureCache()
        self.settings, self.extract_missing = settings, extract_missing
        self.sha_index = ShaIndex.for_cache(self.cache)
        self.features_roots: dict[str, Path | None] = {}
        self.failed: dict[str, str] = {}

    def add_dataset(self, spec: DatasetSpec) -> None:
        self.features_roots[spec.name] = spec.features

    def describe(self, dataset: str, encoder_id: str) -> str:
        """Which features a dataset's records get for an encoder (recorded in probe cards):
        its precomputed folder, or the feature-cache version (preprocessing, precision,
        face stride and face-tracker version, weights)."""
        root = self.features_roots.get(dataset)
        if root is not None:
            return f"precomputed in {root}"
        return self.settings.cache_key(get_spec(encoder_id))

    def __call__(self, record: Record, encoder_id: str) -> np.ndarray | None:
        root = self.features_roots.get(record.dataset)
        features = load_record_features(record, encoder_id, self.cache, self.settings, root,
                                        self.sha_index)
        if features is None and root is None and self.extract_missing and record.path not in self.failed:
            report = extract_dataset([record], [encoder_id], self.cache, self.settings,
                                     sha_index=self.sha_index)
            self.failed.update(report.failed)
            features = load_record_features(record, encoder_id, self.cache, self.settings, None,
                                            self.sha_index)
        return features


def extract(data: list[str], splits: list[str], encoder_ids: list[str], cache: FeatureCache | None = None,
            use_ray: bool = False, ray_address: str | None = None, settings: Settings = RESEARCH_SETTINGS,
            threads: int = 1, progress: Callable[[int, int], None] | None = None) -> ExtractionReport:
    for encoder_id in encoder_ids:
        get_spec(encoder_id)  # unknown ids fail before any work
    records = [r for path in data for split in splits for r in _split(load_dataset_spec(path), split)]
    return extract_dataset(records, encoder_ids, cache, settings, ray_address, use_ray, threads,
                           progress)


def _split(spec: DatasetSpec, split: str) -> list[Record]:
    return spec.read(split) if split in spec.splits else []


def labelled_features(spec: DatasetSpec, split: str, encoder_id: str, source: FeatureSource,
                      target: str = "any") -> list[tuple]:
    """(features, label, record) for every record of a split whose features are available."""
    source.add_dataset(spec)
    out = []
    for record in spec.read(split, target):
        features = source(record, encoder_id)
        if features is not None:
            out.append((features, record.label, record))
    if not out:
        raise AnalysisError(f"no features for {spec.name}/{split} with encoder {encoder_id}.",
                            hint="Run `python cli.py extract` first, or check the failures it lists.")
    return out


ATTRIBUTIONS = ("manipulation", "dataset")


def train(data: str, encoder_id: str, out_dir: str | Path, name: str | None = None,
          config: TrainConfig = TrainConfig(), attribution: str | None = None, source: FeatureSource | None = None,
          progress=None, target: str = "any", real_model: bool = False) -> tuple[Path, LinearProbe]:
    """Train a probe on the train split with early stopping on the val split; write it with its card.
    `real_model`: the probe also carries a next-step model trained on the splits' real clips
    (models/probes.py), added before the calibration is fitted."""
    get_spec(encoder_id)
    if attribution is not None and attribution not in ATTRIBUTIONS:
        raise AnalysisError(f"unknown attribution {attribution!r}.", hint=f"Use one of {', '.join(ATTRIBUTIONS)}.")
    spec = load_dataset_spec(data)
    source = source or FeatureSource()
    train_set = labelled_features(spec, "train", encoder_id, source, target)
    val_set = labelled_features(spec, "val", encoder_id, source, target)
    classes = None
    if attribution:
        names = sorted({getattr(r, attribution) for _, _, r in train_set + val_set})
        classes = ([names.index(getattr(r, attribution)) for _, _, r in train_set],
                   [names.index(getattr(r, attribution)) for _, _, r in val_set])
    probe_id = name or f"user/{spec.name}-{encoder_id}" + ("-triplet" if config.triplet_weight > 0 else "")
    card = {"id": probe_id, "encoder": encoder_id, "source": "user", "licence": "as the training data allows",
            "training_data": {"dataset": spec.name, "format": spec.format,
                              "splits": {"train": len(train_set), "val": len(val_set)},
                              "real_fake_train": [sum(1 for _, y, _ in train_set if y == 0),
                                                  sum(1 for _, y, _ in train_set if y == 1)],
                              "attribution": attribution, "target": target,
                              "features": source.describe(spec.name, encoder_id),
                              "provenance": dataset_provenance(spec, ("train", "val"))},
            "synthetic": bool(spec.name.startswith("synthetic"))}
    if card["synthetic"]:
        card["warning"] = SYNTHETIC_WARNING
    probe, result = train_probe([(x, y) for x, y, _ in train_set], [(x, y) for x, y, _ in val_set], config, card,
                                classes, progress)
    if real_model:
        reals = {name: [x for x, y, _ in split if y == 0] for name, split in (("train", train_set), ("val", val_set))}
        scorer, _ = train_next_step(reals["train"], reals["val"], {
            "id": f"{probe_id}/real-data", "encoder": encoder_id,
            "training_data": {"real_train": len(reals["train"]), "real_val": len(reals["val"])}},
            REAL_MODEL_TRAINING, REAL_MODEL_NETWORK)
        probe = with_real_model(probe, scorer, reals["val"])

    scores = [probe.score(x).video_score for x, _, _ in val_set]
    probe.card["metrics"] = {"val": video_metrics([y for _, y, _ in val_set], scores)}
    val_clips = [(probe.step_logits(x), y, segments_for(record, target)) for x, y, record in val_set]
    if {y for _, y, _ in val_clips} == {0, 1}:  # the verdict's calibration, fitted on the same validation split
        probe.card["calibration"] = fit_calibration(val_clips, {"dataset": spec.name, "split": "val",
                                                                "target": target}).to_card()
    return save_probe(probe, out_dir), probe


def dataset_provenance(spec: DatasetSpec, splits: tuple[str, ...]) -> dict | None:
    """For generated AV-Deepfake1M-style sets: per split, the families, identities, voices and
    real source files the clips were made of (research.sources.provenance); None otherwise."""
    if spec.format != "av1m":
        return None
    records = {split: json.loads((spec.base / spec.splits[split]).read_text()) for split in splits}
    if not all("identity" in r for rows in records.values() for r in rows):
        return None
    return {split: provenance(rows) for split, rows in records.items()}


def load_scorer_ref(ref: str):
    """A probe id / probe card, or an anomaly scorer card (kind next-step or av-sync)."""
    path = Path(ref)
    if path.suffix == ".json" and path.exists():
        try:
            kind = json.loads(path.read_text()).get("kind")
        except ValueError:
            kind = None
        if kind in ("next-step", "av-sync"):
            return load_scorer(path)
    return load_probe(ref)


SYNTHETIC_WARNING = "trained on synthetic manipulations; not a real-world detector"


def record_in_card(card_path: str | Path, key: str, figures) -> Path:
    """Store measured figures under metrics[key] of a probe card file, atomically."""
    return _update_card(card_path, lambda card: card.setdefault("metrics", {}).__setitem__(key, figures))


def _update_card(card_path: str | Path, change) -> Path:
    """Apply `change` to the card in a NAME.json file and write it back atomically."""
    path = Path(card_path)
    if path.suffix != ".json" or not path.exists():
        raise AnalysisError("measured figures go into a probe card given as a NAME.json file.", path=card_path)
    card = json.loads(path.read_text())
    change(card)
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(card, indent=1)))


def segments_for(record: Record, target: str) -> list:
    """The fake segments of a record that a probe of `target` should find."""
    chosen = {"audio": record.audio_fake_segments, "visual": record.visual_fake_segments}.get(target)
    return list(chosen if chosen is not None else record.fake_segments or [])


def calibrate(data: str, probe_ref: str, split: str = "val", source: FeatureSource | None = None,
              target: str = "any", seed: int = 0) -> Calibration:
    """Fit a probe's calibration on one split of a dataset (labels by `target`)."""
    probe = load_probe(probe_ref)
    spec = load_dataset_spec(data)
    items = labelled_features(spec, split, probe.encoder_id, source or FeatureSource(), target)
    clips = [(probe.step_logits(x), y, segments_for(record, target)) for x, y, record in items]
    return fit_calibration(clips, {"dataset": spec.name, "split": split, "target": target})


def store_calibration(card_path: str | Path, calibration: Calibration) -> Path:
    """Write a calibration into a probe card file (NAME.json)."""
    return _update_card(card_path, lambda card: card.__setitem__("calibration", calibration.to_card()))


def record_in_cards(scorer_refs: list[str], report: dict) -> list[Path]:
    """Add each probe's measured test figures (video AUC/AP, localisation) to its card file."""
    written = []
    for ref in scorer_refs:
        card_id = json.loads(Path(ref).read_text())["id"] if Path(ref).suffix == ".json" else ref
        results = [r for r in report["results"] if r["scorer"] == card_id]
        if results:
            written.append(record_in_card(ref, "test", results))
    return written


def evaluate(scorer_refs: list[str], data: list[str], out_dir: str | Path, split: str = "test",
             source: FeatureSource | None = None, target: str = "any") -> tuple[dict, dict]:
    """Evaluate scorers on the `split` of every dataset; write the report files."""
    if not scorer_refs:
        raise AnalysisError("no probe to evaluate.", hint="Pass --probe ID (repeat for several).")
    scorers = [load_scorer_ref(ref) for ref in scorer_refs]
    source = source or FeatureSource()
    test_sets = {}
    for path in data:
        spec = load_dataset_spec(path)
        source.add_dataset(spec)
        test_sets[spec.name] = spec.read(split, target)
    report = run_evaluation(scorers, test_sets, source)
    report["failed_files"] = dict(source.failed)
    return report, write_evaluation(report, out_dir)


ANOMALY_KINDS = ("next-step", "av-sync")


def train_anomaly(kind: str, data: str, encoder_id: str, out_dir: str | Path, visual_encoder: str | None = None,
                  name: str | None = None, config: TrainConfig = TrainConfig(), width: int = 512,
                  layers: int = 4, heads: int = 4, source: FeatureSource | None = None) -> Path:
    """Train an anomaly proxy on the real videos of the train/val splits."""
    if kind not in ANOMALY_KINDS:
        raise AnalysisError(f"unknown anomaly proxy {kind!r}.", hint=f"Use one of {', '.join(ANOMALY_KINDS)}.")
    if kind == "av-sync" and not visual_encoder:
        raise AnalysisError("the av-sync proxy needs an audio --encoder and a --visual-encoder.")
    spec = load_dataset_spec(data)
    source = source or FeatureSource()
    encoders = [encoder_id] + ([visual_encoder] if kind == "av-sync" else [])
    splits = {}
    for split in ("train", "val"):
        real = [r for r in spec.read(split) if r.label == 0]
        pairs = [[source(r, e) for e in encoders] for r in real]
        splits[split] = [p for p in pairs if all(f is not None for f in p)]
        if not splits[split]:
            raise AnalysisError(f"no real videos with features in {spec.name}/{split}.")
    card = {"id": name or f"user/{spec.name}-{kind}-{encoder_id}", "encoder": encoder_id, "source": "user",
            "training_data": {"dataset": spec.name, "real_train": len(splits["train"]),
                              "real_val": len(splits["val"])}}
    if kind == "next-step":
        scorer, _ = train_next_step([p[0] for p in splits["train"]], [p[0] for p in splits["val"]], card, config,
                                    NextStepConfig(layers=layers, heads=heads, width=width))
    else:
        card["visual_encoder"] = visual_encoder
        scorer, _ = train_av_sync([tuple(p) for p in splits["train"]], [tuple(p) for p in splits["val"]], card,
                                  config, width)
    return save_scorer(scorer, out_dir)
