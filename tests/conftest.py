"""Test set-up: no network, an isolated app home, and small clips written with PyAV."""
import os
import tempfile

# Before anything imports huggingface_hub: tests never reach a hub.
_HOME = tempfile.mkdtemp(prefix="avxplain-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_HOME, "hf")
os.environ["AVXPLAIN_HOME"] = os.path.join(_HOME, "app")
os.environ.setdefault("GLOG_minloglevel", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models.media import write_test_clip  # noqa: E402
from research.synthetic import moving_astronaut, speech_like_audio  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture()
def app_home(tmp_path, monkeypatch):
    """A fresh, empty app home (caches, user probes, downloaded probes) per test."""
    home = tmp_path / "home"
    monkeypatch.setenv("AVXPLAIN_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory) -> Path:
    """2 s, 25 fps, 480×270 clip of a moving real face with speech-like mono audio."""
    scene = moving_astronaut(50, width=480, height=270, scale=0.5)
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_test_clip(path, scene.frames, audio=speech_like_audio(2.0))


@pytest.fixture()
def register():
    """register_encoder for one test: the entries are removed afterwards."""
    from models.encoders import register_encoder, unregister_encoder

    added = []

    def add(spec):
        added.append(spec.id)
        return register_encoder(spec)

    yield add
    for encoder_id in added:
        unregister_encoder(encoder_id)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.exists():
        pytest.skip(f"shared fixtures not found at {FIXTURES}: these tests need ../shared beside the checkout")
    return FIXTURES


def gradient_frames(n: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frames whose mean brightness encodes their index (frame k has value 4k), so the
    frame shown at each step can be identified after decoding."""
    values = (np.arange(n) * 4 % 256).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, height, width, 3)).copy()


# -- the reliability and security summary printed at the end of every run -------------------
# Tests report figures through the `figures` fixture; tests marked security("what") are the
# security checks. Both are printed with the test's outcome, without needing `-s`.

_FIGURES: dict[str, list[str]] = {}
_SECURITY: dict[str, str] = {}
_OUTCOMES: dict[str, str] = {}


@pytest.fixture()
def figures(request):
    """Call with one line of measured figures; it is printed in the run's summary."""
    return _FIGURES.setdefault(request.node.nodeid, []).append


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("security")
        if marker is not None:
            _SECURITY[item.nodeid] = marker.args[0]


def pytest_runtest_logreport(report):
    """A test's outcome: its call's, unless a set-up or tear-down failed or it was skipped."""
    if (report.failed or report.skipped or report.when == "call") and _OUTCOMES.get(report.nodeid) != "failed":
        _OUTCOMES[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter):
    def verdict(nodeid: str) -> str:
        return {"passed": "PASS", "failed": "FAIL", "skipped": "SKIPPED"}.get(_OUTCOMES.get(nodeid, ""), "NOT RUN")

    if _FIGURES:
        terminalreporter.section("reliability figures")
        for nodeid, lines in _FIGURES.items():
            for line in lines:
                terminalreporter.write_line(f"{verdict(nodeid):<7} {line}")
    checks: dict[str, list[str]] = {}  # check → the verdicts of its test cases (parametrised tests have several)
    for nodeid, what in _SECURITY.items():
        if nodeid in _OUTCOMES:
            checks.setdefault(what, []).append(verdict(nodeid))
    if checks:
        terminalreporter.section("security checks")
        for what, verdicts in checks.items():
            overall = "FAIL" if "FAIL" in verdicts else "PASS" if set(verdicts) == {"PASS"} else verdicts[0]
            cases = f" ({len(verdicts)} cases)" if len(verdicts) > 1 else ""
            terminalreporter.write_line(f"{overall:<7} {what}{cases}")
