"""The Gradio app, launched for real: its API through gradio_client and its pages in
headless Chromium (Debian's package, driven by Playwright)."""
from __future__ import annotations

import csv
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from explain.annotations import AnnotationStore
from models.media import write_test_clip
from tests.app_server import MAX_DURATION_S, ROOT, running_app, start_app

DEMO = ROOT / "assets" / "demo"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app-home")) as server:
        yield server


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server["url"], verbose=False)


def analyse(client, path: Path, *probes: str):
    """The page's own analyse event (a session holds its result), all probes in the bundled
    group; its last answer: verdict card, segments, figure, gallery, files, slider, details,
    progress line."""
    from gradio_client import handle_file

    groups = [list(probes)] + [[] for _ in range(n_probe_groups(client) - 1)]
    return client.predict(handle_file(str(path)), *groups, api_name="/analyse_page")


def n_probe_groups(client) -> int:
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/analyse_page"]
    return len(parameters["parameters"]) - 1


def last(outputs):
    """The final answer of the page's staged analysis (a generator of result views)."""
    return list(outputs)[-1]


def test_script_api_takes_named_parameters_and_returns_the_verdict(client):
    """/analyse for scripts: `video`, `probes` (ids), `spatial_steps` by name; the report's
    JSON back, verdict first; /probes lists what can run."""
    from gradio_client import handle_file

    probes = client.predict(api_name="/probes")
    ids = {entry["id"] for entry in probes}
    assert {"demo/audio-selfsplice", "demo/visual-selfblend", "sync/mouth-audio"} <= ids
    assert all({"modality", "stand_in", "card"} <= set(entry) for entry in probes)
    report, files = client.predict(video=handle_file(str(DEMO / "visual_fake.mp4")),
                                   probes=["demo/visual-selfblend", "sync/mouth-audio"], spatial_steps=1,
                                   api_name="/analyse")
    assert next(iter(report)) == "verdict" and report["verdict"]["label"] == "fake"
    assert report["verdict"]["modalities"]["visual"]["label"] == "fake" and "sync" in report["verdict"]["modalities"]
    assert set(report["probes"]) == {"demo/visual-selfblend"}
    assert any(Path(f).name == "report.json" for f in files) and any("heatmap_" in Path(f).name for f in files)


def test_api_analyses_a_demo_clip(client):
    card, segments, figure, gallery, files, slider, details, progress = analyse(
        client, DEMO / "visual_fake.mp4", "demo/audio-selfsplice", "demo/visual-selfblend")
    assert "calibrated P(fake)" in card and "visual_fake.mp4" in card and "verdict-fake" in card
    assert "demo/visual-selfblend" in details and "done in" in progress
    assert Path(figure).name == "temporal.png" and Path(figure).stat().st_size > 10_000
    assert len(gallery) == 3 and all("step" in item["caption"] and "demo/visual-selfblend" in item["caption"]
                                      for item in gallery)
    report = json.loads(Path(next(f for f in files if f.endswith("report.json"))).read_text())
    assert set(report["probes"]) == {"demo/audio-selfsplice", "demo/visual-selfblend"}
    assert report["media"]["n_steps"] == len(report["step_times"]) and report["fusion"]["p_fake"] is not None
    assert report["spatial"][0]["heatmaps"][0]["peak"] and report["temporal"]
    assert slider["maximum"] == report["media"]["n_steps"] - 1


def test_api_annotate_and_export(client, app_server):
    from gradio_client import handle_file

    click = client.predict(handle_file(str(DEMO / "real.mp4")), 12, 0.31, 0.62, "api-user", "<i>lips</i>", 2,
                           api_name="/annotate")
    assert click["video_name"] == "real.mp4" and click["time"] == pytest.approx(12 / 25)
    stored = AnnotationStore(app_server["db"]).list(annotator="api-user")
    assert [(c.x, c.y, c.note) for c in stored] == [(0.31, 0.62, "<i>lips</i>")]
    exported = Path(client.predict("real.mp4", "api-user", api_name="/export"))
    rows = list(csv.DictReader(exported.open(newline="")))
    assert [r["username"] for r in rows] == ["api-user"]
    assert json.loads(rows[0]["click_locations"]) == {"12": {"x": 0.31, "y": 0.62}}


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    frames = np.full((int(25 * (MAX_DURATION_S + 2)), 48, 64, 3), 120, np.uint8)
    long = write_test_clip(folder / "long.mp4", frames, audio=np.zeros(16_000 * (MAX_DURATION_S + 2), np.float32))
    return {"text file": text, "zero-byte file": empty, "too long": long}


@pytest.mark.parametrize("kind, message", [("text file", "not a video"), ("zero-byte file", "empty"),
                                           ("too long", "over the limit")])
def test_bad_uploads_give_a_readable_message_and_the_app_keeps_serving(client, bad_uploads, kind, message):
    card = analyse(client, bad_uploads[kind], "demo/audio-selfsplice")[0]
    assert "Could not analyse" in card and message in card and "What to do" in card and "Traceback" not in card
    card = analyse(client, DEMO / "real.mp4", "demo/audio-selfsplice")[0]
    assert "real.mp4" in card and "Could not analyse" not in card


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


BURSTS = 2


def test_eight_concurrent_clients_are_all_answered_without_cross_talk(tmp_path, figures):
    """Bursts of 8 clients at once: all answered with their own clip's result, and once the
    clients have gone (their sessions closed, well inside the one-hour idle limit) the app's
    memory is back where it was after a warm-up burst, burst after burst (two bursts: the
    leak this guards against grew the app by ~45 MB a burst, past the bound by the second)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    (tmp_path / "home").mkdir()
    process, url = start_app(tmp_path / "home")
    try:
        clips = [DEMO / name for name in ("real.mp4", "audio_fake.mp4", "visual_fake.mp4", "both_fake.mp4")] * 2

        def one(clip: Path) -> tuple[str, float]:
            started = time.perf_counter()
            client = Client(url, verbose=False)
            try:
                return analyse(client, clip, "demo/audio-selfsplice")[0], time.perf_counter() - started
            finally:
                client.close()  # the tab closes: the app frees the session

        def burst() -> list[tuple[str, float]]:
            with ThreadPoolExecutor(len(clips)) as pool:
                return list(pool.map(one, clips))

        def settled_rss(target: float) -> float:
            level = rss_mb(process.pid)
            for _ in range(20):
                if level <= target:
                    break
                time.sleep(1)
                level = rss_mb(process.pid)
            return level

        burst()  # warm-up: models loaded, worker threads started
        time.sleep(3)
        baseline = rss_mb(process.pid)
        bound = baseline * 1.05 + 50  # what a freed burst leaves; it grew by ~45 MB a burst before the fix
        walls, latencies, levels = [], [], []
        for _ in range(BURSTS):
            started = time.perf_counter()
            answers = burst()
            walls.append(time.perf_counter() - started)
            for clip, (summary, _) in zip(clips, answers):
                assert f">{clip.name} · " in summary  # each client got its own clip's result
            latencies += [seconds for _, seconds in answers]
            levels.append(settled_rss(bound))
        latencies.sort()
        figures(f"load: {BURSTS} bursts of {len(clips)} concurrent requests, {len(latencies)} answered, 0 errors, wall "
                f"{max(walls):.1f} s per burst, p50 {latencies[len(latencies) // 2]:.1f} s, p95 "
                f"{latencies[int(0.95 * (len(latencies) - 1))]:.1f} s; app RSS {baseline:.0f} MB before, "
                f"{' → '.join(f'{v:.0f}' for v in levels)} MB after each burst once its clients left (bound "
                f"{bound:.0f} MB)")
        assert max(levels) <= bound
    finally:
        process.terminate()
        process.wait(timeout=30)


REQUEST_BURSTS = """
import gc, json, sys
from pathlib import Path
import app

def rss_mb():
    return next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmRSS:"))

clips = [str(Path(sys.argv[1]) / name) for name in ("real.mp4", "audio_fake.mp4", "visual_fake.mp4", "both_fake.mp4")] * 2
app.limit_heap_arenas()  # as the app does at launch
levels = []
for _ in range(5):
    sessions = [list(app.run_analysis(clip, None, ["demo/audio-selfsplice"], []))[-1][0] for clip in clips]
    for session in sessions:
        app.end_session(session)
    del sessions
    gc.collect()
    levels.append(rss_mb())
print(json.dumps(levels))
"""


def test_repeated_analyses_return_to_the_same_memory(figures, tmp_path):
    """The app's request path in a process of its own, as the app runs it: five bursts of 8
    analyses, each session ended afterwards; after the last burst memory is within 30 MB of
    the median level between the warm-up burst and the last (a leak of 2 MB per analysis puts
    the last level 32 MB above that median). The median, not the lowest level: one burst
    dipped 40 MB below its neighbours (888 → 885 → 840 → 874 → 881 MB), which is the
    allocator's noise, not a leak. Run inside the test process, which carries every earlier test's
    allocations, the levels moved by ±25 MB from burst to burst. A new thread per analysis,
    since replaced by a pool, grew 1907 → 1949 → 1977 → 1980 → 2018 MB there: the numeric
    libraries' per-thread buffers stayed behind."""
    env = {**os.environ, "AVXPLAIN_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-c", REQUEST_BURSTS, str(DEMO)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    levels = json.loads(run.stdout.strip().splitlines()[-1])
    figures(f"memory of the app's request path: {' → '.join(f'{level:.0f}' for level in levels)} MB after "
            f"{len(levels)} bursts of 8 analyses (sessions ended; a process of its own)")
    assert levels[-1] <= statistics.median(levels[1:-1]) + 30


@pytest.mark.security("16 concurrent annotators through the API: no click lost, integrity check ok")
def test_sixteen_annotators_through_the_api_lose_nothing(app_server):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    def annotate(worker: int) -> list[int]:
        client = Client(app_server["url"], verbose=False)
        return [client.predict(handle_file(str(DEMO / "both_fake.mp4")), index, 0.1 + 0.05 * index, 0.5,
                               f"annotator-{worker}", f"note {worker}-{index}", 1, api_name="/annotate")["id"]
                for index in range(5)]

    with ThreadPoolExecutor(16) as pool:
        ids = [i for batch in pool.map(annotate, range(16)) for i in batch]
    store = AnnotationStore(app_server["db"])
    stored = [c for c in store.list() if c.annotator.startswith("annotator-")]
    assert len(ids) == len(set(ids)) == 80 and len(stored) == 80
    assert store.integrity_check() == "ok"


@pytest.mark.security("kill -9 of the app during writes: every committed click kept, integrity check ok")
def test_app_killed_during_writes_keeps_every_committed_click(tmp_path, figures):
    import signal
    import threading

    from gradio_client import Client, handle_file

    process, url = start_app(tmp_path)
    committed, stop = [], threading.Event()

    def annotate() -> None:
        client = Client(url, verbose=False)
        index = 0
        while not stop.is_set():
            try:
                committed.append(client.predict(handle_file(str(DEMO / "real.mp4")), index % 90, 0.5, 0.5,
                                                "crash-test", "", 1, api_name="/annotate")["id"])
            except Exception:  # noqa: BLE001 - the server is being killed
                return
            index += 1

    writers = [threading.Thread(target=annotate) for _ in range(4)]
    for writer in writers:
        writer.start()
    deadline = time.time() + 60
    while len(committed) < 20 and time.time() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    stop.set()
    for writer in writers:
        writer.join(timeout=60)
    store = AnnotationStore(tmp_path / "clicks.sqlite")
    stored = {c.id for c in store.list(annotator="crash-test")}
    figures(f"crash recovery: {len(committed)} clicks acknowledged before kill -9, {len(stored)} stored, "
          f"integrity {store.integrity_check()}")
    assert len(committed) >= 20 and set(committed) <= stored
    assert store.integrity_check() == "ok"


def test_the_app_limits_are_set_by_environment(monkeypatch):
    """Upload size, duration, resolution and frame count are each configurable, and a clip
    over one of them is refused with the limit named."""

    import app

    settings = {"AVXPLAIN_MAX_UPLOAD_MB": "1", "AVXPLAIN_MAX_DURATION_S": "2", "AVXPLAIN_MAX_FRAMES": "30",
                "AVXPLAIN_MAX_WIDTH": "300", "AVXPLAIN_MAX_HEIGHT": "200"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    limits = app.settings_limits()
    assert (limits.max_file_bytes, limits.max_duration_s, limits.max_frames, limits.max_width, limits.max_height) \
        == (1024**2, 2.0, 30, 300, 200)
    card = last(app.run_analysis(str(DEMO / "real.mp4"), None, ["demo/audio-selfsplice"], []))[1]
    assert "320×256, over the limit of 300×200" in card


def test_the_analyse_handler_gets_the_request():
    """Gradio injects gr.Request only into a named positional parameter; the wired handler
    has it after any number of probe groups (a closed tab's analysis can then be stopped),
    and stays a generator (the results fill in stage by stage)."""
    import gradio as gr
    from gradio.helpers import special_args

    import app

    seen = {}

    def handler(*inputs, request):
        seen.update(inputs=inputs, request=request)
        yield "first"
        yield "second"

    wired = app.with_request(handler, 5)
    injected = special_args(wired, ["clip.mp4", None, ["a"], ["f"], ["l"]], gr.Request(session_hash="tab-1"))[0]
    assert inspect.isgeneratorfunction(wired) and list(wired(*injected)) == ["first", "second"]
    assert seen["request"].session_hash == "tab-1" and seen["inputs"] == ("clip.mp4", None, ["a"], ["f"], ["l"])


@pytest.mark.security("temporary files: a failed analysis, or one whose tab closed, leaves no folder; stale "
                      "folders are pruned")
def test_failed_analysis_leaves_no_temporary_folder_and_stale_ones_are_pruned(tmp_path, monkeypatch):

    import app

    monkeypatch.setattr(app, "TEMP_ROOT", tmp_path / "scratch")
    stale = app.scratch_folder("reports")  # as left by a request that was cancelled
    os.utime(stale, (time.time() - 2 * app.TEMP_TTL_S,) * 2)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    assert "broken.mp4" in last(app.run_analysis(str(broken), None, ["demo/audio-selfsplice"], []))[1]
    assert list((tmp_path / "scratch" / "reports").iterdir()) == []  # the stale folder and the failed one
    monkeypatch.setenv("AVXPLAIN_TIME_LIMIT_S", "0.000001")
    assert "longer than the limit" in last(app.run_analysis(str(DEMO / "real.mp4"), None,
                                                            ["demo/audio-selfsplice"], []))[1]
    assert list((tmp_path / "scratch" / "reports").iterdir()) == []
    monkeypatch.delenv("AVXPLAIN_TIME_LIMIT_S")
    monkeypatch.setattr(app, "CLOSED_SESSIONS", OrderedDict())  # this test's closed tab stays in this test
    closing = SimpleNamespace(session_hash="closed-tab")
    answers = app.run_analysis(str(DEMO / "real.mp4"), None, ["demo/audio-selfsplice"], [], request=closing)
    next(answers)  # the run has started …
    app.CLOSED_SESSIONS[closing.session_hash] = None  # … when forget_session marks its tab as disconnected
    assert "was closed" in last(answers)[1]
    assert list((tmp_path / "scratch" / "reports").iterdir()) == []


def test_the_readme_rest_example_reads_the_verdict(app_server):
    """The README's curl steps, with httpx: upload, call /analyse by event, read the last
    server-sent event: [report, files], the verdict in the report."""
    import httpx

    server = app_server["url"].rstrip("/")
    with (DEMO / "visual_fake.mp4").open("rb") as handle:
        uploaded = httpx.post(f"{server}/gradio_api/upload", files={"files": handle}, timeout=60).json()[0]
    video = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(f"{server}/gradio_api/call/analyse", timeout=60,
                       json={"data": [video, ["demo/visual-selfblend"], 1]}).json()["event_id"]
    stream = httpx.get(f"{server}/gradio_api/call/analyse/{event}", timeout=600).text
    report, files = json.loads([line for line in stream.splitlines() if line.startswith("data:")][-1][5:])
    assert report["verdict"]["label"] == "fake" and set(report["probes"]) == {"demo/visual-selfblend"}
    assert any(f["orig_name"] == "report.json" for f in files)


def test_the_app_logs_when_its_background_warm_up_has_loaded_the_models(tmp_path):
    """Torch and the models load after the page is served (the layout test checks the page's
    imports); the app says in its log when it is ready to analyse, which the app benchmark
    waits for to time a first analysis on a warm app."""
    from benchmarks.bench_app import start, wait_for_warm_up

    process, _, serving_s, started = start(str(tmp_path))
    try:
        warm_s = wait_for_warm_up(process, str(tmp_path), started)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert 0 < serving_s < warm_s
    assert "Traceback" not in (tmp_path / "app.log").read_text()
