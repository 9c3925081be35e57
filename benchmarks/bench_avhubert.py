"""AV-HuBERT large on a 10 s clip (250 steps, audio and lips) against its FLOP floor: the
model's FLOPs divided by the matrix-multiply peak of the precision it runs in on this CPU,
both measured in this run (random-init weights: the time does not depend on their values).

    python -m benchmarks.bench_avhubert [--steps 250] [--repeats 3] [--json docs/bench_avhubert_CPU.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_performance import matmul_peak
from benchmarks.machine import cpu_line
from models.encoders.avhubert import AVHubert, AVHubertConfig
from models.encoders.base import resolve_dtype
from models.encoders.checkpoints import for_precision

TARGET = 1.25  # × the floor
# (M, K, N) of the large model's products on 250 steps (qkv / out, FFN in, FFN out) beside a square one
SHAPES = ((2048, 2048, 2048), (250, 1024, 1024), (250, 1024, 4096), (250, 4096, 1024))


def forward(model: AVHubert, audio: torch.Tensor, video: torch.Tensor, dtype: torch.dtype) -> None:
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
        model(audio, video)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AVHubert(AVHubertConfig()).for_inference()  # as build_model leaves a loaded checkpoint
    audio, video = torch.randn(1, args.steps, 104), torch.randn(1, 1, args.steps, 88, 88)
    dtype = resolve_dtype("auto")
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        forward(model, audio, video, torch.float32)
    for_precision(model, dtype)  # as the encoder runs it
    flops = counter.get_total_flops()
    by_part = {name: sum(counter.get_flop_counts().get(f"AVHubert.{name}", {}).values())
               for name in ("feature_extractor_video", "feature_extractor_audio", "encoder")}
    for _ in range(2):  # warm-up: the first forwards also build the convolution primitives
        forward(model, audio, video, dtype)
    peak_dtype = "bfloat16" if precision == "bf16" else "float32"
    times, peaks = [], []
    for _ in range(args.repeats):  # each forward paired with a peak measured just before it: shared machines drift
        peaks.append(matmul_peak(peak_dtype, SHAPES))
        start = time.perf_counter()
        forward(model, audio, video, dtype)
        times.append(time.perf_counter() - start)
    ratios = [seconds * peak * 1e9 / flops for seconds, peak in zip(times, peaks)]
    ratio, seconds, peak = statistics.median(ratios), statistics.median(times), statistics.median(peaks)
    floor = flops / (peak * 1e9)
    print(f"AV-HuBERT large (24 × 1024), audio + lips, {args.steps} steps, {precision}, "
          f"{torch.get_num_threads()} threads, on {cpu_line()}")
    print(f"  FLOPs {flops / 1e9:.1f} G (lip front end {by_part['feature_extractor_video'] / 1e9:.1f}, "
          f"transformer {by_part['encoder'] / 1e9:.1f}); {precision} matmul peak {peak:.1f} GFLOP/s (median)")
    print(f"  forward {seconds:.2f} s (median of {args.repeats}); floor {floor:.2f} s; ratio {ratio:.2f} "
          f"(median of the {args.repeats} forwards, each against the peak measured just before it; "
          f"target ≤ {TARGET}) {'PASS' if ratio <= TARGET else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_line(), "precision": precision, "steps": args.steps,
                                               "gflop": flops / 1e9, "gflop_by_part": {k: v / 1e9 for k, v in
                                                                                      by_part.items()},
                                               "peak_gflops": peaks, "seconds": times, "median_s": seconds,
                                               "floor_s": floor, "ratios": ratios, "ratio": ratio,
                                               "target": TARGET},
                                              indent=1))


if __name__ == "__main__":
    main()
