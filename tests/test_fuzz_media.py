"""Hostile and broken media: mutated demo clips and crafted oddities must each end in a
correct analysis or the project's clear error, within a time bound, without killing the
process that analyses them and without leaving temporary files behind.

The cases run in a worker process (as the app's would); a crash or a hang of the worker is
a failure of that case, and the worker is restarted for the next one.
"""
from __future__ import annotations

import multiprocessing
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from models.media import write_test_clip

ROOT = Path(__file__).resolve().parent.parent
DEMO = sorted((ROOT / "assets" / "demo").glob("*.mp4"))
CASE_TIME_LIMIT_S = 30
N_MUTATIONS = 300
PROBES = ["random@random-selfsplice-gru", "random@random-selfblend-cnn"]
pytestmark = pytest.mark.slow


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random corruption of a valid file: its name and the corrupted bytes."""
    kind = rng.choice(["truncate", "flip", "header", "zero-block", "shuffle", "garbage-tail", "brand"])
    buffer = bytearray(data)
    if kind == "truncate":
        buffer = buffer[: int(rng.integers(0, len(buffer)))]
    elif kind == "flip":
        for position in rng.integers(0, len(buffer), int(rng.integers(1, 64))):
            buffer[position] ^= int(rng.integers(1, 256))
    elif kind == "header":
        end = int(rng.integers(8, 256))
        buffer[:end] = rng.integers(0, 256, end).astype(np.uint8).tobytes()
    elif kind == "zero-block":
        start, size = int(rng.integers(0, len(buffer))), int(rng.integers(512, 16384))
        buffer[start:start + size] = bytes(len(buffer[start:start + size]))
    elif kind == "shuffle":
        a, b = sorted(rng.integers(0, len(buffer), 2))
        size = int(min(4096, b - a))
        buffer[a:a + size], buffer[b - size:b] = buffer[b - size:b], buffer[a:a + size]
    elif kind == "garbage-tail":
        buffer += rng.integers(0, 256, int(rng.integers(1, 100_000))).astype(np.uint8).tobytes()
    else:
        position = buffer.find(b"ftyp")
        if position >= 0:
            buffer[position + 4:position + 8] = rng.integers(0, 256, 4).astype(np.uint8).tobytes()
    return str(kind), bytes(buffer)


def patch_box(data: bytes, box: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a big-endian field `offset` bytes after the start of an MP4 box's payload."""
    position = data.find(box)
    if position < 0:
        return data
    start = position + 4 + offset
    return data[:start] + struct.pack(fmt, value) + data[start + struct.calcsize(fmt):]


def one_pixel_video(path: Path) -> Path:
    """A 1×1 px, 1 s video (FFV1 in Matroska: H.264 cannot code odd sizes)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width = stream.height = 1
        stream.pix_fmt = "yuv444p"
        for _ in range(25):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((1, 1, 3), 200, np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def crafted_cases(folder: Path) -> dict[str, Path]:
    """Odd but well-formed (or header-lying) files."""
    rng = np.random.default_rng(0)
    frames = (rng.random((50, 48, 64, 3)) * 255).astype(np.uint8)
    speech = (0.1 * np.sin(np.arange(32_000) / 5)).astype(np.float32)
    cases = {
        "1×1 video": one_pixel_video(folder / "one_pixel.mkv"),
        "2×2 video": write_test_clip(folder / "two_pixels.mp4", np.full((25, 2, 2, 3), 128, np.uint8)),
        "8 kHz audio": write_test_clip(folder / "8k.mp4", frames, audio=speech[:16_000], audio_rate=8000),
        "8-channel audio": write_test_clip(folder / "8ch.mp4", frames, audio=np.tile(speech[None, :], (8, 1))),
        "1000 fps": write_test_clip(folder / "fast.mp4", np.repeat(frames, 4, 0), fps=1000),
        "1 fps": write_test_clip(folder / "slow.mp4", frames[:4], fps=1),
        "zero-length audio": write_test_clip(folder / "noaudio.mp4", frames, audio=np.zeros(0, np.float32)),
        "no frames": folder / "empty_stream.mp4",
    }
    cases["no frames"].write_bytes(DEMO[0].read_bytes()[:2048])
    base = DEMO[0].read_bytes()
    ten_hours = patch_box(patch_box(base, b"mvhd", 16, ">I", 36_000 * 1000), b"mvhd", 12, ">I", 1000)
    (folder / "ten_hours.mp4").write_bytes(ten_hours)
    cases["10-hour duration header"] = folder / "ten_hours.mp4"
    huge = patch_box(patch_box(base, b"tkhd", 76, ">I", 60000 << 16), b"tkhd", 80, ">I", 60000 << 16)
    (folder / "huge.mp4").write_bytes(huge)
    cases["60000×60000 track header"] = folder / "huge.mp4"
    return cases


def _worker(connection, tmp: str) -> None:
    os.environ["TMPDIR"] = tmp
    import tempfile

    tempfile.tempdir = tmp
    from models.analysis import AnalysisOptions, analyze
    from models.errors import AnalysisError
    from models.media import MediaLimits
    from models.settings import Settings

    options = AnalysisOptions(settings=Settings(limits=MediaLimits(max_duration_s=60), face_stride=5), cache=None)
    while True:
        path = connection.recv()
        if path is None:
            return
        try:
            result = analyze(path, PROBES, options)
            connection.send(("analysed", f"{result.media.n_steps} steps, skipped {sorted(result.skipped)}"))
        except AnalysisError as error:
            connection.send(("clear error", str(error)))
        except Exception as error:  # noqa: BLE001 - reported as a failure of the case
            connection.send(("unhandled", f"{type(error).__name__}: {error}"))


class Worker:
    """A restartable analysis process with a per-case time limit."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.context = multiprocessing.get_context("spawn")
        self.start()

    def start(self) -> None:
        self.connection, child = self.context.Pipe()
        self.process = self.context.Process(target=_worker, args=(child, str(self.tmp)), daemon=True)
        self.process.start()

    def run(self, path: Path) -> tuple[str, str, float]:
        started = time.perf_counter()
        self.connection.send(str(path))
        if self.connection.poll(CASE_TIME_LIMIT_S):
            try:
                outcome, detail = self.connection.recv()
            except EOFError:
                outcome, detail = "crashed", f"exit code {self.process.exitcode}"
        else:
            outcome, detail = "hung", f"no answer within {CASE_TIME_LIMIT_S} s"
        if outcome in ("crashed", "hung") or not self.process.is_alive():
            self.process.kill()
            self.process.join()
            outcome = outcome if outcome in ("crashed", "hung") else "crashed"
            self.start()
        return outcome, detail, time.perf_counter() - started

    def stop(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=30)


def test_fuzzed_and_crafted_media(tmp_path, figures):
    cases_dir, worker_tmp = tmp_path / "cases", tmp_path / "worker-tmp"
    cases_dir.mkdir()
    worker_tmp.mkdir()
    rng = np.random.default_rng(2026)
    cases = crafted_cases(cases_dir)
    originals = [p.read_bytes() for p in DEMO]
    for index in range(N_MUTATIONS):
        kind, data = mutate(originals[index % len(originals)], rng)
        path = cases_dir / f"{index:03d}_{kind}.mp4"
        path.write_bytes(data)
        cases[f"mutation {index:03d} ({kind})"] = path
    worker = Worker(worker_tmp)
    outcomes, failures, slowest, details = {}, [], 0.0, {}
    try:
        for name, path in cases.items():
            outcome, detail, seconds = worker.run(path)
            details[name] = (outcome, detail)
            slowest = max(slowest, seconds)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome not in ("analysed", "clear error"):
                failures.append(f"{name}: {outcome}: {detail}")
            elif outcome == "clear error":
                assert path.name in detail, f"{name}: the error does not name the file: {detail}"
    finally:
        worker.stop()
    passed = outcomes.get("analysed", 0) + outcomes.get("clear error", 0)
    figures(f"fuzz: {len(cases)} cases tried, {passed} passed ({outcomes}), slowest {slowest:.1f} s "
          f"(limit {CASE_TIME_LIMIT_S} s)")
    assert not failures, "\n".join(failures)
    # both outcomes occur: neither is everything refused nor is damage waved through
    assert outcomes.get("analysed", 0) > 0 and outcomes.get("clear error", 0) > 0, outcomes
    for tiny in ("1×1 video", "2×2 video"):  # frames that cannot hold a face are refused, not analysed
        assert details[tiny][0] == "clear error" and "too small to hold a face" in details[tiny][1], details[tiny]
    assert details["no frames"][0] == "clear error", details["no frames"]
    assert list(worker_tmp.iterdir()) == []  # nothing left in the worker's temporary folder
