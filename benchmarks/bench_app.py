"""The app as a user meets it, measured through its own page endpoint: `python app.py` until
the page answers (cold start), the first analysis of a demo clip in a fresh session with the
default probes (and when its first result, the audio verdict, arrived), the same request again
(served from the session), and how long Cancel takes to stop a running analysis. Torch and
the models load in the background once the page is served, so a second fresh process
measures when the app is ready to analyse and the first analysis of a clip dropped then.

    python -m benchmarks.bench_app [--runs 3] [--json docs/bench_app_CPU.json]

Figures are medians over `--runs` fresh app processes, printed with their targets and the
CPU they ran on.
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

from app import WARM_UP_DONE
from benchmarks.machine import cpu_line

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
CLIP = DEMO / "visual_fake.mp4"
CANCELLED = DEMO / "both_fake.mp4"
TARGETS = {"startup_to_ready_s": 8.0, "cached_reanalysis_s": 0.5, "cancel_s": 2.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(home: str) -> tuple[subprocess.Popen, str, float, float]:
    """`python app.py` with its own home (its log in `home`/app.log); returns the process, its
    URL, seconds to serving and the start time (perf_counter)."""
    port = free_port()
    env = {**os.environ, "AVXPLAIN_HOME": home, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with open(Path(home) / "app.log", "w") as log:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=log)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url, time.perf_counter() - started, started
        except OSError:
            if process.poll() is not None or time.perf_counter() - started > 300:
                process.kill()
                raise RuntimeError("the app did not start") from None
            time.sleep(0.05)


def wait_for_warm_up(process: subprocess.Popen, home: str, started: float) -> float:
    """Seconds from the process start until the app logged that its warm-up finished."""
    log = Path(home) / "app.log"
    while WARM_UP_DONE not in (text := log.read_text(errors="replace")):
        if "Traceback" in text or process.poll() is not None or time.perf_counter() - started > 300:
            raise RuntimeError(f"the app's warm-up did not finish: {text[-1000:]}")
        time.sleep(0.05)
    return time.perf_counter() - started


def page_groups(client: Client, *probes: str) -> list[list[str]]:
    """The page's probe groups: everything in the first (bundled) one."""
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/analyse_page"]
    return [list(probes)] + [[] for _ in range(len(parameters["parameters"]) - 2)]


def analyse(client: Client, clip: Path, groups: list[list[str]]) -> tuple[float, float | None, tuple]:
    """One press of Analyse: seconds to the end, seconds to the first verdict card, last answer."""
    started = time.perf_counter()
    job = client.submit(handle_file(str(clip)), *groups, api_name="/analyse_page")
    first = None
    while not job.done():
        if first is None and any("verdict-card" in str(answer[0]) for answer in job.outputs()):
            first = time.perf_counter() - started
        time.sleep(0.02)
    final = job.result()
    total = time.perf_counter() - started
    return total, first if first is not None else total, final


def first_analysis(client: Client, clip: Path) -> tuple[float, float, list[list[str]]]:
    """The first analysis of `clip` with the default probes in a fresh session: seconds to the
    end and to the first verdict card, and the page's probe groups it used."""
    groups = page_groups(client, "demo/audio-selfsplice", "demo/visual-selfblend", "sync/mouth-audio")
    first_s, first_result_s, answer = analyse(client, clip, groups)
    if "verdict-card" not in answer[0]:
        raise RuntimeError(f"the first analysis failed: {answer[0]}")
    return first_s, first_result_s, groups


def cancel_latency(client: Client, groups: list[list[str]]) -> float:
    """Start an analysis, press Cancel once it is under way, time until its last answer."""
    job = client.submit(handle_file(str(CANCELLED)), *groups, api_name="/analyse_page")
    while not job.outputs() and not job.done():
        time.sleep(0.02)
    time.sleep(0.5)  # under way: past the first answer
    started = time.perf_counter()
    client.predict(api_name="/cancel")
    final = job.result()
    seconds = time.perf_counter() - started
    if "cancelled" not in str(final[-1]):
        raise RuntimeError(f"the run was not cancelled: {final[-1]}")
    return seconds


def one_run(clip: Path = CLIP) -> dict:
    """One fresh app process: cold start, the first analysis of `clip` (and its first result)
    sent the moment the page answers, the same request again, and Cancel."""
    process, url, ready, _ = start(tempfile.mkdtemp(prefix="avxplain-bench-"))
    try:
        client = Client(url, verbose=False, download_files=False)  # time the app, not the client's downloads
        first_s, first_result_s, groups = first_analysis(client, clip)
        cached_s, _, again = analyse(client, clip, groups)
        if "served from" not in again[-1]:
            raise RuntimeError(f"the repeat was analysed again: {again[-1]}")
        cancel_s = cancel_latency(Client(url, verbose=False, download_files=False), groups)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"startup_to_ready_s": ready, "first_analysis_s": first_s, "first_result_s": first_result_s,
            "cached_reanalysis_s": cached_s, "cancel_s": cancel_s}


def warm_run(clip: Path = CLIP) -> dict:
    """One fresh app process whose first analysis of `clip` is sent once the app logged the end
    of its warm-up (torch and the models load after the page is served): how long a user
    who takes that long to drop a clip waits, and when the app is ready to analyse."""
    home = tempfile.mkdtemp(prefix="avxplain-bench-")
    process, url, _, started = start(home)
    try:
        warm = wait_for_warm_up(process, home, started)
        first_s, first_result_s, _ = first_analysis(Client(url, verbose=False, download_files=False), clip)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"startup_to_warm_s": warm, "first_analysis_when_warm_s": first_s,
            "first_result_when_warm_s": first_result_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    runs = [{**one_run(), **warm_run()} for _ in range(args.runs)]
    median = {key: sorted(r[key] for r in runs)[len(runs) // 2] for key in runs[0]}
    print(f"app through its page endpoint, {CLIP.name} with the default probes, median of {args.runs} fresh "
          f"processes, on {cpu_line()}")
    print(f"{'figure':<28}{'seconds':>10}  target")
    for key, value in median.items():
        target = TARGETS.get(key)
        verdict = "" if target is None else f"≤ {target:g} s  {'PASS' if value <= target else 'FAIL'}"
        print(f"{key:<28}{value:>10.2f}  {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_line(), "clip": CLIP.name, "runs": runs,
                                               "median": median, "targets": TARGETS}, indent=1))


if __name__ == "__main__":
    main()
