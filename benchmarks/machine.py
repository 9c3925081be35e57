"""The machine a benchmark ran on, named in every report: CPU model, the vector and matrix
units that decide which precision is fast (AVX2, AVX-512, AVX-512 BF16, AMX), cores."""
from __future__ import annotations

import os
from pathlib import Path

FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX"}


def describe_cpu() -> dict:
    """{'model': ..., 'units': [...], 'cores': N} read from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"model": model, "units": [name for flag, name in FLAGS.items() if flag in flags],
            "cores": len(os.sched_getaffinity(0))}


def cpu_line() -> str:
    cpu = describe_cpu()
    return f"CPU: {cpu['model']} ({', '.join(cpu['units']) or 'no AVX2'}), {cpu['cores']} cores"
