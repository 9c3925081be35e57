"""Per-stage times and peak memory of `analyze` on a 10 s clip, one random-init probe per
encoder family, each family in its own process so peak memory is its own.

    python -m benchmarks.bench_analysis [--encoders ID,ID] [--seconds 10] [--out out/bench_analysis.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.bench_performance import make_clip  # noqa: E402  the same 1280×720 clip with speech
from models.analysis import AnalysisOptions, analyze
from models.settings import Settings

DEFAULT_ENCODERS = ["random-wav2vec2-xls-r-300m", "random-wavlm-large", "random-hubert-large",
                    "random-clip-vit-b16", "random-clip-vit-l14", "random-videomae-large", "random-fsfm-vit-b16",
                    "random-wav2vec2-xls-r-2b"]


def run_child(encoder_id: str, clip: str, face_stride: int, precision: str) -> dict:
    """Analyse `clip` with random@encoder_id in this process; return timings and peak RSS."""
    start = time.perf_counter()
    result = analyze(clip, [f"random@{encoder_id}"],
                     AnalysisOptions(cache=None, settings=Settings(face_stride=face_stride, precision=precision)))
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"encoder": encoder_id, "total_s": total, "peak_rss_mb": peak_mb, "steps": result.media.n_steps,
            "timings_s": result.timings}


def stage(timings: dict, prefix: str) -> float:
    return sum(v for k, v in timings.items() if k == prefix or k.startswith(prefix + " "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(DEFAULT_ENCODERS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--face-stride", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_analysis.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.clip, args.face_stride, args.precision)))
        return 0
    width, height = map(int, args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "bench.mp4", args.seconds, width, height)
        print(f"clip: {args.seconds:.0f} s, {width}×{height}, 25 fps, speech; threads: "
              f"{os.cpu_count()} cores; precision {args.precision}; face stride {args.face_stride}")
        header = f"{'encoder':<28}{'decode':>8}{'faces':>8}{'crops':>8}{'load':>8}{'encode':>9}{'probe':>8}" \
                 f"{'total':>9}{'x RT':>7}{'peak MB':>9}"
        print(header)
        print("-" * len(header))
        for encoder_id in [e for e in args.encoders.split(",") if e]:
            run = subprocess.run([sys.executable, "-m", "benchmarks.bench_analysis", "--child", encoder_id, "--clip", str(clip),
                                  "--face-stride", str(args.face_stride), "--precision", args.precision],
                                 capture_output=True, text=True, cwd=ROOT)
            if run.returncode != 0:
                print(f"{encoder_id:<28} failed: {run.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            t = row["timings_s"]
            rows.append(row)
            print(f"{encoder_id:<28}{stage(t, 'decode'):8.2f}{stage(t, 'faces'):8.2f}{stage(t, 'crops'):8.2f}"
                  f"{stage(t, 'load'):8.2f}{stage(t, 'encoder'):9.2f}{stage(t, 'probes'):8.3f}"
                  f"{row['total_s']:9.2f}{row['total_s'] / args.seconds:7.2f}{row['peak_rss_mb']:9.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": args.seconds, "size": args.size, "face_stride": args.face_stride,
                               "precision": args.precision, "runs": rows}, indent=1))
    print(f"times in seconds; x RT = total / clip duration; written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
