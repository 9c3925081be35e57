"""How fast and how lightly the command line refuses what it cannot analyse: each bad file
(and an --out that names a file) in a fresh `python cli.py analyze` process, its wall
time and peak memory (the process's maximum resident set), against the targets.

    python -m benchmarks.bench_refusals [--runs 3] [--out docs/bench_refusals.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from benchmarks.machine import cpu_line, describe_cpu
from models.media import write_test_clip

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo" / "real.mp4"
REFUSAL_LIMIT_S, REFUSAL_LIMIT_MB = 1.0, 200.0
OUT_FILE_LIMIT_S = 2.0


def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, words the refusal must contain)."""
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    png = folder / "picture.mp4"
    with av.open(str(DEMO)) as container:
        next(container.decode(video=0)).to_image().save(png, format="PNG")
    audio_only = folder / "audio_only.mp4"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (0.1 * np.sin(np.arange(32000) / 10)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(DEMO.read_bytes()[: DEMO.stat().st_size // 2])
    one_pixel = write_test_clip(folder / "one_pixel.mp4", np.full((25, 2, 2, 3), 128, np.uint8))
    return {"empty file": (empty, "empty"), "text file": (text, "not a video"),
            "PNG renamed .mp4": (png, "still image"), "audio-only MP4": (audio_only, "no video stream"),
            "truncated MP4": (truncated, "truncated"), "1×1 video": (one_pixel, "too small to hold a face")}


# `python cli.py ARGS` that also writes the process's own peak memory (VmHWM) to a file at
# exit: the rusage a parent reads after fork + exec carries the parent's own peak
CLI_WITH_PEAK = """
import sys, cli
try:
    code = cli.main(sys.argv[2:])
finally:
    status = open('/proc/self/status').read()
    open(sys.argv[1], 'w').write(next(l for l in status.splitlines() if l.startswith('VmHWM:')).split()[1])
sys.exit(code)
"""


def run_cli(args: list[str]) -> dict:
    """One fresh CLI process: exit code, stderr, wall seconds and peak RSS (MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".hwm") as peak:
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", CLI_WITH_PEAK, peak.name, *args], cwd=ROOT,
                             capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_kb = float(Path(peak.name).read_text() or "nan")
    return {"exit": run.returncode, "stderr": run.stderr.strip(), "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def median_run(args: list[str], runs: int) -> dict:
    results = [run_cli(args) for _ in range(runs)]
    middle = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
    return {**middle, "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def measure(runs: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (path, words) in bad_inputs(folder).items():
            run = median_run(["analyze", str(path), "--out", str(folder / "out")], runs)
            one_line = run["stderr"].count("\n") == 0 and "Traceback" not in run["stderr"]
            ok = run["exit"] == 2 and one_line and words in run["stderr"] and path.name in run["stderr"]
            rows.append({"input": name, **run, "message_ok": ok,
                         "pass": ok and run["seconds"] <= REFUSAL_LIMIT_S and run["peak_rss_mb"] <= REFUSAL_LIMIT_MB})
        existing = folder / "report.txt"
        existing.write_text("a file the user keeps\n")
        run = median_run(["analyze", str(DEMO), "--out", str(existing)], runs)
        ok = run["exit"] == 2 and run["stderr"].count("\n") == 0 and "Traceback" not in run["stderr"] \
            and "existing file" in run["stderr"] and existing.read_text() == "a file the user keeps\n"
        rows.append({"input": "--out names an existing file", **run, "message_ok": ok,
                     "pass": ok and run["seconds"] <= OUT_FILE_LIMIT_S})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per input; the median time is reported")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_refusals.json"))
    args = parser.parse_args(argv)
    rows = measure(args.runs)
    print(f"{cpu_line()}; median of {args.runs} fresh processes; limits {REFUSAL_LIMIT_S:g} s and {REFUSAL_LIMIT_MB:g} MB "
          f"(--out: {OUT_FILE_LIMIT_S:g} s)")
    print(f"{'input':<30} {'seconds':>8} {'peak MB':>8}  {'message':<8} result")
    for row in rows:
        print(f"{row['input']:<30} {row['seconds']:8.2f} {row['peak_rss_mb']:8.0f}  "
              f"{'ok' if row['message_ok'] else 'WRONG':<8} {'PASS' if row['pass'] else 'FAIL'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": describe_cpu(), "runs": args.runs, "limits": {"seconds": REFUSAL_LIMIT_S, "peak_rss_mb": REFUSAL_LIMIT_MB,
                                                              "out_file_seconds": OUT_FILE_LIMIT_S},
                               "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
