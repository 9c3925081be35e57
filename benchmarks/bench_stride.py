"""What a stride costs in accuracy and saves in time: one probe on a dataset split, analysed
with the per-frame encoders (`--kind encoder`, `--stride N`) or the face detection
(`--kind face`, `--face-stride N`) on every N-th step; video AUC, localisation AUC (pooled
over the fake clips' steps, as `evaluate` reports it), the largest and the median per-step
logit change against the first stride, and the time.
`--reencoded` adds the first stride on every clip re-encoded once (H.264 at x264's
default quality, same size): how far per-step logits move when the same video is simply
uploaded again, the scale to read the stride's changes against.

    python -m benchmarks.bench_stride --data SET/dataset.json --split test --probe demo/visual-selfblend \
        [--target visual] [--kind encoder|face] [--strides 1,2,5] [--reencoded] [--skip-manipulation desync]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from explain.temporal import step_labels, truth_for_modality
from models.analysis import AnalysisOptions, analyze
from models.encoders import get_spec
from models.media import MediaLimits, decode, write_test_clip
from models.settings import Settings
from models.zoo import load_probe
from research.datasets import load_dataset_spec
from research.evaluation import fake_clip_localisation

ROOT = Path(__file__).resolve().parents[1]


def reencoded_copy(video: str, folder: Path) -> str:
    """The clip decoded and written again (frames and audio), as an upload would be."""
    clip = decode(video, MediaLimits(frame_max_side=100_000))  # every pixel of the source
    path = folder / Path(video).name
    return str(write_test_clip(path, np.asarray(clip.frames), fps=clip.info.fps or 25, audio=clip.audio))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--probe", required=True)
    parser.add_argument("--target", default="visual", choices=["any", "audio", "visual"])
    parser.add_argument("--kind", default="encoder", choices=["encoder", "face"],
                        help="which stride to vary: the per-frame encoders' or the face detection's")
    parser.add_argument("--strides", default="1,2,5")
    parser.add_argument("--reencoded", action="store_true", help="add the first stride on re-encoded copies")
    parser.add_argument("--skip-manipulation", action="append", default=[],
                        help="leave out records of this manipulation (e.g. desync for a visual probe)")
    args = parser.parse_args()
    records = [r for r in load_dataset_spec(args.data).read(args.split, args.target)
               if r.manipulation not in args.skip_manipulation]
    strides = [int(s) for s in args.strides.split(",")]
    option = "stride" if args.kind == "encoder" else "face_stride"
    runs = [(f"{args.kind} stride {s}", s, False) for s in strides]
    if args.reencoded:
        runs.append((f"re-encoded, stride {strides[0]}", strides[0], True))
    modality = get_spec(load_probe(args.probe).encoder_id).modality
    logits: dict[str, list[np.ndarray]] = {}
    print(f"{len(records)} videos, probe {args.probe}")
    print(f"{'run':<22}{'AUC':>7}{'loc AUC':>9}{'max |Δlogit|':>14}{'median':>8}{'seconds':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for name, stride, reencoded in runs:
            scores, truths, seconds = [], [], 0.0
            for record in records:
                video = reencoded_copy(record.path, Path(folder)) if reencoded else record.path
                started = time.perf_counter()
                result = analyze(video, [args.probe], AnalysisOptions(cache=None, settings=Settings(**{option: stride})))
                seconds += time.perf_counter() - started
                scores.append(result.probes[args.probe].scores.video_score)
                logits.setdefault(name, []).append(result.probes[args.probe].scores.logits)
                truth = truth_for_modality(record.truth(), modality)
                truths.append(step_labels(truth, result.media.n_steps) if truth is not None else None)
            changes = np.concatenate([np.abs(a - b) for a, b in zip(logits[name], logits[runs[0][0]])])
            auc = roc_auc_score([r.label for r in records], scores)
            localisation = fake_clip_localisation(logits[name], truths)
            pooled = localisation["pooled"] if localisation else None
            print(f"{name:<22}{auc:>7.3f}{pooled['auc'] if pooled else float('nan'):>9.3f}{changes.max():>14.3f}"
                  f"{np.median(changes):>8.3f}{seconds:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
