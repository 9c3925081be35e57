"""The command line fails early and clearly: arguments, the output folder, the file and the
truth file are checked before anything is decoded, and a bad file before torch loads."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.analysis import analyze
from models.encoders import base
from models.errors import AnalysisError
from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


def test_out_naming_an_existing_file_is_refused_before_anything_loads(tmp_path):
    """A fresh process: one line, exit 2, the user's file untouched, and torch never imported."""
    kept = tmp_path / "notes.txt"
    kept.write_text("mine\n")
    code = ("import sys, cli; code = cli.main(['analyze', %r, '--out', %r]); "
            "print(code, 'torch' in sys.modules)") % (str(DEMO / "real.mp4"), str(kept))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert run.stderr.count("\n") == 1 and "--out names an existing file" in run.stderr and "Traceback" not in run.stderr
    assert kept.read_text() == "mine\n"


def test_bad_file_is_refused_before_torch_loads(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code = ("import sys, cli; code = cli.main(['analyze', %r, '--out', %r]); "
            "print(code, 'torch' in sys.modules)") % (str(empty), str(tmp_path / "out"))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["2", "False"] and "empty.mp4: the file is empty" in run.stderr


def test_truth_file_of_another_video_is_refused(tmp_path):
    truth = tmp_path / "other.json"
    truth.write_text(json.dumps({"file": "someone_else.mp4", "fake_segments": [[0.2, 0.6]]}))
    run = run_cli("analyze", DEMO / "real.mp4", "--truth", truth, "--out", tmp_path / "out")
    assert run.returncode == 2 and "is the ground truth of someone_else.mp4, not of real.mp4" in run.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_missing_feature_file_is_refused_before_decoding(tmp_path):
    run = run_cli("analyze", DEMO / "real.mp4", "--probe", "random@braven-large-v", "--features",
                  f"braven-large-v={tmp_path / 'absent.npy'}", "--out", tmp_path / "out")
    assert run.returncode == 2 and "--features braven-large-v: file not found" in run.stderr


def test_encoders_that_cannot_run_fail_before_decoding(monkeypatch):
    """External features not given, or hub weights that cannot be had offline, are reported
    before the clip is decoded (no 'decode' stage was reached)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for probe_id, message in (("random@braven-large-v", "--features braven-large-v=FILE"),
                              ("random@clip-vit-b16", "cannot load encoder clip-vit-b16")):
        stages = []
        with pytest.raises(AnalysisError, match=message):
            analyze(DEMO / "real.mp4", [probe_id], progress=lambda stage, fraction: stages.append(stage))
        assert "decode" not in stages


def test_bf16_without_bf16_units_is_reported(monkeypatch):
    monkeypatch.setattr(base, "cpu_has_fast_bf16", lambda: False)
    assert "no bf16 matrix units" in base.precision_warning("bf16")
    assert base.precision_warning("fp32") is None and base.precision_warning("auto") is None
    monkeypatch.setattr(base, "cpu_has_fast_bf16", lambda: True)
    assert base.precision_warning("bf16") is None


@pytest.mark.slow
def test_analyze_without_probe_runs_the_default_offline_set(tmp_path, app_home):
    run = run_cli("analyze", DEMO / "visual_fake.mp4", "--out", tmp_path / "out", "--spatial-steps", "1")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["probes"]) == {"demo/audio-selfsplice", "demo/visual-selfblend"}
    assert "every time in the report and the figure" in report["clock"]["time_convention"]
    for explanation in report["temporal"]:  # peaks are step starts, as step_times
        assert all(round(t * 25, 6).is_integer() for t in explanation["peaks_s"])


def test_console_command_is_installed():
    """`pip install -e .` gives the `avxplain` command (the README's test command installs it)."""
    command = shutil.which("avxplain")
    if command is None:
        pytest.skip("the package is not installed here (pip install -e .): no avxplain command on PATH")
    run = subprocess.run([command, "list", "probes"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "demo/visual-selfblend" in run.stdout
