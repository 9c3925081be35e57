"""App startup to ready: `python app.py` until the page answers, then the first analysis of
a demo clip through the API (cold) and a second one (warm caches).

    python benchmarks/bench_startup.py [--runs 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo" / "visual_fake.mp4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_run() -> dict:
    port = free_port()
    home = tempfile.mkdtemp(prefix="avxplain-bench-")
    env = {**os.environ, "AVXPLAIN_HOME": home, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > 300:
                    raise RuntimeError("the app did not start")
                time.sleep(0.1)
        ready = time.perf_counter() - started

        client = Client(url, verbose=False)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            client.predict(video=handle_file(str(DEMO)), probes=["demo/audio-selfsplice", "demo/visual-selfblend"],
                           api_name="/analyse")
            times.append(time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"startup_to_ready_s": ready, "first_analysis_s": times[0], "second_analysis_s": times[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    summary = {key: sorted(r[key] for r in runs)[len(runs) // 2] for key in runs[0]}
    print(f"{'app startup (median of ' + str(args.runs) + ')':<40}{'seconds':>10}")
    for key, value in summary.items():
        print(f"{key:<40}{value:>10.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": summary}, indent=1))


if __name__ == "__main__":
    main()
