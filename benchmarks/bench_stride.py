"""What `--stride N` costs in accuracy and saves in time: one probe on a dataset split,
analysed at several encoder strides; video AUC, the largest per-step logit change against
stride 1, and the analysis time.

    python benchmarks/bench_stride.py --data SET/dataset.json --split test --probe demo/visual-selfblend \
        [--target visual] [--strides 1,2,5] [--skip-manipulation desync]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from sklearn.metrics import roc_auc_score

    from models.analysis import AnalysisOptions, analyze
    from models.datasets import load_dataset_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--probe", required=True)
    parser.add_argument("--target", default="visual", choices=["any", "audio", "visual"])
    parser.add_argument("--strides", default="1,2,5")
    parser.add_argument("--skip-manipulation", action="append", default=[],
                        help="leave out records of this manipulation (e.g. desync for a visual probe)")
    args = parser.parse_args()
    records = [r for r in load_dataset_spec(args.data).read(args.split, args.target)
               if r.manipulation not in args.skip_manipulation]
    strides = [int(s) for s in args.strides.split(",")]
    logits: dict[int, list[np.ndarray]] = {}
    print(f"{len(records)} videos, probe {args.probe}")
    print(f"{'stride':>6}{'AUC':>8}{'max |Δlogit|':>14}{'seconds':>9}")
    for stride in strides:
        scores, started = [], time.perf_counter()
        for record in records:
            result = analyze(record.path, [args.probe], AnalysisOptions(cache=None, stride=stride)).probes[args.probe]
            scores.append(result.scores.video_score)
            logits.setdefault(stride, []).append(result.scores.logits)
        seconds = time.perf_counter() - started
        change = max(float(np.abs(a - b).max()) for a, b in zip(logits[stride], logits[strides[0]]))
        auc = roc_auc_score([r.label for r in records], scores)
        print(f"{stride:>6}{auc:>8.3f}{change:>14.3f}{seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
