"""Which spatial explanation points at the manipulation? Every registered method on the
manipulated steps of left-out visual families: for each family, the probe trained without
it (as in the leave-one-family-out matrix) is explained on that family's held-out fakes.

Per method: pointing game (the map's maximum, and its hot-spot centre, inside the
manipulated box), MAE of the hot-spot centre to the box centre against the frame-centre
and face-centre baselines, and deletion/insertion faithfulness against a random order.

    python -m benchmarks.bench_explanations [--data out/generalisation] [--out docs/bench_explanations.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_generalisation import (
    MODALITIES,
    QUICK_FAMILIES,
    ROOT,
    SHIPPED,
    ensure_data,
    fit_probe,
    load_clips,
    present_families,
)
from benchmarks.machine import cpu_line
from explain.alignment import FRAME_CENTRE, face_centre, mae
from explain.explainers import default_explainer, list_explainers
from explain.faithfulness import explanation_faithfulness
from explain.spatial import explain_spatial, pointing_game
from models.analysis import AnalysisOptions, analyze
from models.probes import save_probe
from models.zoo import list_probes
from research.extract import RESEARCH_SETTINGS
from research.workflows import FeatureSource, record_in_card

TARGETS = {"pointing": 0.6, "mae_ratio_to_frame_centre": 0.5}


def family_rows(probe_card: Path, clips: list[Path], regions: dict, methods: list[str], steps_per_clip: int) -> list:
    """One row per (method, explained step) over the family's fake clips."""
    rows = []
    for clip in clips:
        result = analyze(clip, [str(probe_card)], AnalysisOptions(settings=RESEARCH_SETTINGS, cache=None))
        probe_id = next(iter(result.probes))
        truth = regions[clip.parent.name + "/" + clip.name]
        manipulated = sorted(int(s) for s in truth)
        chosen = manipulated[:: max(1, len(manipulated) // steps_per_clip)][:steps_per_clip]
        for method in methods:
            explanation = explain_spatial(result, probe_id, steps=chosen, sanity=False, method=method)
            faith = explanation_faithfulness(result, explanation)
            areas, scores = faith.areas(), faith.scores()
            for index, heatmap in enumerate(explanation.heatmaps):
                region = truth[str(heatmap.step)]
                rows.append({"method": method, "hit": pointing_game(heatmap.peak, region["box"]),
                             "hotspot_hit": pointing_game(heatmap.hotspot, region["box"]),
                             "mae": mae(heatmap.hotspot, region["centre"]),
                             "mae_frame_centre": mae(FRAME_CENTRE, region["centre"]),
                             "mae_face_centre": mae(face_centre(result, heatmap.step), region["centre"]),
                             "deletion": float(areas["deletion_auc"][index]),
                             "insertion": float(areas["insertion_auc"][index]),
                             "faithfulness": float(scores[index])})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per method, the means of every column and the MAE ratios to the two baselines."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        means = {key: round(float(np.mean([r[key] for r in mine])), 4)
                 for key in ("hit", "hotspot_hit", "mae", "mae_frame_centre", "mae_face_centre", "deletion",
                             "insertion", "faithfulness")}
        means["mae_ratio_to_frame_centre"] = round(means["mae"] / means["mae_frame_centre"], 4)
        means["mae_ratio_to_face_centre"] = round(means["mae"] / means["mae_face_centre"], 4)
        out[method] = {"steps": len(mine), **means}
    return out


def compare(folder: Path, quick: bool, clips_per_family: int, steps_per_clip: int) -> dict:
    families, _ = ensure_data(folder, quick)
    spec_folder = families.parent
    regions = json.loads((spec_folder / "test_regions.json").read_text())
    source = FeatureSource()
    encoder, visual_families = MODALITIES["visual"]
    data = {split: load_clips(families, split, "visual", source) for split in ("train", "val", "test")}
    methods = list_explainers()
    per_family, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for family in present_families(data["test"], QUICK_FAMILIES if quick else visual_families):
            started = time.perf_counter()
            probe = fit_probe([c for c in data["train"] if c.family != family],
                              [c for c in data["val"] if c.family != family], encoder, f"lofo/visual-without-{family}")
            card = save_probe(probe, Path(tmp) / family)
            fakes = [spec_folder / c.name for c in data["test"] if c.family == family and c.label == 1]
            found = family_rows(card, fakes[:clips_per_family], regions, methods, steps_per_clip)
            per_family[family] = {**summarise(found), "seconds": round(time.perf_counter() - started, 1)}
            rows += found
    overall = summarise(rows)
    best = max(overall, key=lambda m: (overall[m]["hotspot_hit"], -overall[m]["mae"]))
    return {"machine": cpu_line(), "targets": TARGETS, "methods": methods, "default": default_explainer(encoder),
            "best": best, "overall": overall, "per_family": per_family,
            "clips_per_family": clips_per_family, "steps_per_clip": steps_per_clip}


def print_report(report: dict) -> None:
    print(f"# Spatial explanations on left-out visual families  ({report['machine']})")
    header = (f"{'method':22s} {'steps':>5s} {'point(max)':>10s} {'point(hot)':>10s} {'MAE':>6s} {'frame-c':>7s} "
              f"{'face-c':>7s} {'ratio':>6s} {'del':>6s} {'ins':>6s} {'faith':>6s}")
    for title, table in [("all left-out families", report["overall"])] + [
            (f"left out: {family}", {k: v for k, v in rows.items() if k != "seconds"})
            for family, rows in report["per_family"].items()]:
        print(f"\n## {title}\n{header}")
        for method, row in table.items():
            print(f"{method:22s} {row['steps']:5d} {row['hit']:10.3f} {row['hotspot_hit']:10.3f} {row['mae']:6.3f} "
                  f"{row['mae_frame_centre']:7.3f} {row['mae_face_centre']:7.3f} {row['mae_ratio_to_frame_centre']:6.2f} "
                  f"{row['deletion']:6.3f} {row['insertion']:6.3f} {row['faithfulness']:6.3f}")
    print(f"\nbest (pointing of the hot-spot centre, then MAE): {report['best']}; shipped default: {report['default']}")
    print(f"targets: pointing >= {TARGETS['pointing']}, MAE <= {TARGETS['mae_ratio_to_frame_centre']} x frame-centre MAE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "out" / "generalisation"))
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_explanations.json"))
    parser.add_argument("--clips-per-family", type=int, default=3)
    parser.add_argument("--steps-per-clip", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="the quick data set of bench_generalisation")
    parser.add_argument("--into-cards", action="store_true", help="record the comparison in the shipped visual probe's card")
    args = parser.parse_args(argv)
    report = compare(Path(args.data), args.quick, args.clips_per_family, args.steps_per_clip)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print_report(report)
    if args.into_cards:
        print("recorded in", record_in_shipped_card(report))
    return 0


def record_in_shipped_card(report: dict) -> Path:
    """Write the comparison (every method's figures over all left-out families, the best, the
    default, the targets) into the shipped visual probe's card, beside its generalisation figures."""
    card = next(e.card["path"] for e in list_probes() if e.id == SHIPPED["visual"])
    keys = ("machine", "targets", "methods", "default", "best", "overall", "clips_per_family", "steps_per_clip")
    return record_in_card(card, "explanations", {key: report[key] for key in keys})


if __name__ == "__main__":
    raise SystemExit(main())
