"""How far the verdict can be trusted, measured on clips the probes never saw: the real-clip
false-fake rate by clip length (10 s to 10 min), fake detection by length, the sync
scorer's offset error on shifted clips and its false alarms, segment AP/AR in the
AV-Deepfake1M way, and the sanity check on trained and random-init encoders.

    python -m benchmarks.bench_verdicts [--out docs/bench_verdicts.json]

Data (generated in the run when absent, seeded): the synthetic held-out test split (80
clips, seed 303, faces and voices never seen in training or calibration) and a sync split
(40 clips of about 10 s, seed 606, held-out identities). Sequences longer than a clip are
chained from the held-out clips' step logits (a linear probe scores steps one by one):
real ones from real clips, fake ones with one fake clip among real ones. One real clip
of 60 s is analysed end to end as well. All of it is synthetic: these are in-family figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_performance import make_clip
from benchmarks.machine import cpu_line, describe_cpu
from explain.spatial import explain_spatial
from explain.verdict import build_verdict
from models.analysis import AnalysisOptions, analyze
from models.calibration import Calibration, calibrate
from models.sync import MIN_FLAG_OFFSET_S, SYNC_SCORER_ID, estimate_sync
from models.timing import SAMPLES_PER_STEP, STEP_RATE
from models.zoo import DEFAULT_PROBES, DEFAULT_SCORERS, load_probe
from research.calibration import chained_sequences
from research.datasets import load_dataset_spec
from research.evaluation import segment_metrics, segment_proposals
from research.generator import generate
from research.workflows import FeatureSource, labelled_features, segments_for

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"demo/audio-selfsplice": "audio", "demo/visual-selfblend": "visual"}
LENGTHS_S = (10, 30, 60, 120, 600)
SEQUENCES = 100  # per length and class
SYNC_SHIFTS_STEPS = (-15, -10, -5, -3, 3, 5, 10, 15)  # ±0.12 to ±0.6 s
FALSE_FAKE_TARGET = 0.05


def ensure_split(folder: Path, split: str, n: int, seed: int, words: tuple[int, int]) -> Path:
    description = folder / "dataset.json"
    if not (description.exists() and split in json.loads(description.read_text())["splits"]):
        generate(folder, n, seed, split, "heldout", words_range=words)
    return description


def step_logits_by_probe(description: Path, split: str) -> dict[str, list[tuple[np.ndarray, int, list]]]:
    """Per bundled probe: (step logits, label for its modality, its fake segments) per clip, same clip order."""
    spec = load_dataset_spec(description)
    source = FeatureSource()
    by_path = {}
    for probe_id, target in TARGETS.items():
        probe = load_probe(probe_id)
        items = labelled_features(spec, split, probe.encoder_id, source, target)
        by_path[probe_id] = {record.path: (probe.step_logits(x), y, segments_for(record, target))
                             for x, y, record in items}
    shared = [path for path in next(iter(by_path.values())) if all(path in rows for rows in by_path.values())]
    return {probe_id: [rows[path] for path in shared] for probe_id, rows in by_path.items()}


def rates_by_length(clips: dict[str, list], rng: np.random.Generator, sequences: int = SEQUENCES) -> dict:
    """False-fake rate of real sequences and detection of fake ones, per probe and length."""
    out = {}
    for probe_id, items in clips.items():
        calibration = Calibration.from_card(load_probe(probe_id).card)
        single = np.array([calibrate(logits, calibration).p_fake for logits, _, _ in items])
        labels = np.array([label for _, label, _ in items])
        rows = {"single clips": {"false_fake": round(float((single[labels == 0] >= calibration.threshold).mean()), 4),
                                 "detected": round(float((single[labels == 1] >= calibration.threshold).mean()), 4)}}
        for length in LENGTHS_S:
            chained = chained_sequences(items, length, sequences, rng)
            p = np.array([calibrate(s, calibration).p_fake for s, _ in chained])
            y = np.array([label for _, label in chained])
            rows[f"{length}s"] = {"false_fake": round(float((p[y == 0] >= calibration.threshold).mean()), 4),
                                  "detected": round(float((p[y == 1] >= calibration.threshold).mean()), 4)}
        out[probe_id] = rows
    return out


def any_modality_false_fake(clips: dict[str, list], rng: np.random.Generator, sequences: int = SEQUENCES) -> dict:
    """The verdict's rule on real sequences: fake when any bundled probe calls it fake. The
    probes see the same chained clips."""
    probes = list(clips)
    calibrations = {p: Calibration.from_card(load_probe(p).card) for p in probes}
    reals = [index for index, item in enumerate(clips[probes[0]]) if all(clips[p][index][1] == 0 for p in probes)]
    out = {}
    for length in LENGTHS_S:
        steps, flagged = int(length * STEP_RATE), 0
        for _ in range(sequences):
            order, total = [], 0
            while total < steps:
                order.append(int(rng.choice(reals)))
                total += len(clips[probes[0]][order[-1]][0])
            if any(calibrate(np.concatenate([clips[p][i][0] for i in order])[:steps], calibrations[p]).p_fake
                   >= calibrations[p].threshold for p in probes):
                flagged += 1
        out[f"{length}s"] = round(flagged / sequences, 4)
    return out


def segment_figures(clips: dict[str, list]) -> dict:
    out = {}
    for probe_id, items in clips.items():
        calibration = Calibration.from_card(load_probe(probe_id).card)
        proposals = [segment_proposals(calibrate(logits, calibration).step_probabilities) for logits, _, _ in items]
        out[probe_id] = segment_metrics(proposals, [[tuple(s) for s in segments] for _, _, segments in items])
    return out


def shifted(audio: np.ndarray, steps: int) -> np.ndarray:
    """The audio moved `steps` earlier (positive: the video then lags it), padded with silence."""
    k = steps * SAMPLES_PER_STEP
    if k == 0:
        return audio
    pad = np.zeros(abs(k), audio.dtype)
    return np.concatenate([audio[k:], pad]) if k > 0 else np.concatenate([pad, audio[:k]])


def sync_figures(description: Path, split: str) -> dict:
    """Offsets recovered on real clips shifted by known amounts, and false alarms unshifted."""
    spec = load_dataset_spec(description)
    errors, detected, alarms, judged, clips = [], [], [], 0, 0
    for record in spec.read(split):
        if record.label != 0:
            continue
        result = analyze(record.path, ["demo/audio-selfsplice", SYNC_SCORER_ID], AnalysisOptions(cache=None))
        clips += 1
        audio, track = result.clip.audio, result.face_track
        base = estimate_sync(audio, track)
        if not base.reliable:  # the lips do not follow the sound here: no judgement, shifted or not
            continue
        judged += 1
        alarms.append(base.flagged)
        for steps in SYNC_SHIFTS_STEPS:
            moved = estimate_sync(shifted(audio, steps), track)
            errors.append(abs(moved.offset_s - steps / STEP_RATE))
            detected.append(moved.flagged)
    errors = np.array(errors)

    def figure(values) -> float | None:
        return round(float(values), 4) if judged else None

    return {"real_clips": clips, "judged_clips": judged, "shifts_s": [s / STEP_RATE for s in SYNC_SHIFTS_STEPS],
            "offset_error_median_s": figure(np.median(errors) if judged else 0),
            "offset_error_max_s": figure(errors.max() if judged else 0),
            "within_0.08_s": figure((errors <= 0.08).mean() if judged else 0),
            "shifted_flagged": figure(np.mean(detected) if judged else 0),
            "false_alarm_unshifted": figure(np.mean(alarms) if judged else 0),
            "flag_rule": f"|offset| >= {MIN_FLAG_OFFSET_S} s and a clear correlation margin"}


def sanity_figures(description: Path, split: str, videos: int = 12) -> dict:
    """Sanity-check correlations on visual fakes: the trained probe against random-init."""
    spec = load_dataset_spec(description)
    fakes = [r for r in spec.read(split, "visual") if r.label == 1][:videos]
    rows = {"demo/visual-selfblend": [], "random@random-selfblend-cnn": []}
    for record in fakes:
        result = analyze(record.path, list(rows), AnalysisOptions(cache=None))
        for probe_id in rows:
            sanity = explain_spatial(result, probe_id, k=3).sanity
            rows[probe_id].append([sanity["parameter_randomisation_correlation"],
                                   sanity["data_randomisation_correlation"], sanity["explains_model"]])
    return {probe_id: {"videos": len(values), "max_parameter_correlation": max(v[0] for v in values),
                       "max_data_correlation": max(v[1] for v in values),
                       "passed": sum(bool(v[2]) for v in values)} for probe_id, values in rows.items() if values}


def long_real_clip(folder: Path, seconds: float) -> dict:
    """One real clip analysed end to end with the default set."""
    clip = make_clip(folder / f"real_{seconds:.0f}s.mp4", seconds, width=640, height=360)
    started = time.perf_counter()
    result = analyze(clip, list(DEFAULT_SCORERS), AnalysisOptions(cache=None))
    verdict = build_verdict(result)
    return {"seconds": seconds, "label": verdict.label, "p_fake": verdict.p_fake,
            "modalities": {k: v.get("label") for k, v in verdict.modalities.items()},
            "analysis_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "out" / "verdict_data"), help="folder for the generated splits")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_verdicts.json"))
    parser.add_argument("--long-seconds", type=float, default=60.0, help="the real clip analysed end to end")
    parser.add_argument("--test-clips", type=int, default=80)
    parser.add_argument("--sync-clips", type=int, default=40)
    parser.add_argument("--sequences", type=int, default=SEQUENCES, help="chained sequences per length and class")
    args = parser.parse_args(argv)
    folder = Path(args.data)
    rng = np.random.default_rng(0)
    test = ensure_split(folder / "synth", "test", args.test_clips, 303, (7, 10))
    sync = ensure_split(folder / "sync", "sync", args.sync_clips, 606, (24, 31))
    clips = step_logits_by_probe(test, "test")
    report = {"cpu": describe_cpu(), "probes": list(DEFAULT_PROBES),
              "false_fake_any_modality": any_modality_false_fake(clips, rng, args.sequences),
              "by_probe": rates_by_length(clips, rng, args.sequences), "segments": segment_figures(clips),
              "sync": sync_figures(sync, "sync"), "sanity": sanity_figures(test, "test"),
              "long_real_clip": long_real_clip(folder, args.long_seconds)}
    print(cpu_line())
    print("Real clips called fake (the verdict's rule: any bundled probe at or over its threshold), "
          f"target <= {FALSE_FAKE_TARGET:.0%}:")
    for length, rate in report["false_fake_any_modality"].items():
        print(f"  {length:>5}: {rate:.1%}  {'PASS' if rate <= FALSE_FAKE_TARGET else 'FAIL'}")
    for probe_id, rows in report["by_probe"].items():
        print(f"{probe_id}: " + ", ".join(f"{k} false fake {v['false_fake']:.0%} / detected {v['detected']:.0%}"
                                        for k, v in rows.items()))
    sync_report = report["sync"]
    if not sync_report["judged_clips"]:
        print(f"sync: none of {sync_report['real_clips']} real clips judged (their lips do not follow the sound)")
    else:
        print(f"sync: {sync_report['judged_clips']} of {sync_report['real_clips']} real clips judged (the others' lips "
              f"do not follow the sound: no judgement); shifted by ±0.12-0.6 s: median error "
              f"{sync_report['offset_error_median_s']:.3f} s, max {sync_report['offset_error_max_s']:.3f} s, within "
              f"0.08 s {sync_report['within_0.08_s']:.0%} (target: all), flagged {sync_report['shifted_flagged']:.0%}; "
              f"false alarm unshifted {sync_report['false_alarm_unshifted']:.0%} (target <= 5%)")
    for probe_id, figures in report["segments"].items():
        if figures:
            print(f"segments {probe_id}: AP " + ", ".join(f"@{k} {v:.3f}" for k, v in figures["ap"].items())
                  + "; AR " + ", ".join(f"@{k} {v:.3f}" for k, v in figures["ar"].items()))
    for probe_id, figures in report["sanity"].items():
        print(f"sanity {probe_id}: passed {figures['passed']}/{figures['videos']}, max correlations "
              f"{figures['max_parameter_correlation']} (parameters) {figures['max_data_correlation']} (data)")
    print(f"real clip of {args.long_seconds:.0f} s end to end: {report['long_real_clip']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
