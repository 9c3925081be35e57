"""The performance benchmark script runs end to end (short clips, large models left out)
and its invariants hold: fast and naive modes give the same logits, and a probe switch
reuses the first analysis."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_performance import forward_flops
from benchmarks.bench_refusals import REFUSAL_LIMIT_MB, measure

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_performance_benchmark_runs_and_writes_its_checks(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.bench_performance", "--skip-large", "--skip-startup",
                          "--seconds", "2", "--long-seconds", "4", "--repeats", "2", "--rounds", "1",
                          "--heldout-clips", "8", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    checks = {row["check"]: row for row in report["checks"]}
    same_clip = checks["(1) max |logit| fast vs naive, benchmark clip"]
    assert same_clip["pass"] is True and same_clip["value"] <= 1e-4
    end_to_end = checks["(1) end to end, 2 s clip, default scorers + default spatial explanation"]
    assert end_to_end["limit"] == 0.5 and end_to_end["ratio"] == pytest.approx(end_to_end["value"] / 0.5, abs=1e-3)
    assert checks["(6) switching probe (first analysis reused)"]["value"] < 5.0
    for probe_id in ("demo/audio-selfsplice", "demo/visual-selfblend"):  # the bundled encoders run fp32 in both modes
        assert checks[f"(1) max |logit| fast vs naive, demo clips, {probe_id}"]["value"] <= 1e-4
        assert checks[f"(1) held-out video AUC fast - naive, {probe_id}"]["pass"] is True
    assert checks["(1) max |logit| fast vs naive, 8 held-out clips"]["value"] <= 1e-4
    assert set(report["runs"]) == {"(a) fast, first request", "(a) fast", "(a) naive", "(a) fast, face stride 5",
                                   "(a) fast, face tracking", "(a) fast, 4 s clip"}
    for name, run_figures in report["runs"].items():
        assert run_figures["steps"] in (50, 100) and run_figures["peak_rss_mb"] > 100
        assert run_figures["stages"]["decode"] > 0 and run_figures["explain_s"] > 0
        assert run_figures["repeats"] == (1 if "first request" in name or "4 s" in name else 2)
    assert report["cpu"]["cores"] >= 1 and "CPU:" in run.stdout
    assert "target" in run.stdout and "ratio" in run.stdout and "PASS" in run.stdout


def test_forward_flops_counts_the_attention_the_fused_fast_path_hides():
    """A self-attention layer's FLOPs as the benchmark counts them equal the analytic count
    (projections and both attention products); torch's counter alone, with the fused
    fast path on, misses the attention's products, which understated a ViT's share of the
    machine's peak."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch, tokens, width = 2, 10, 32

    class SelfAttention:
        layer = torch.nn.MultiheadAttention(width, 4, batch_first=True).eval()

        def forward(self, x):
            return self.layer(x, x, x, need_weights=False)[0]

    x = torch.randn(batch, tokens, width)
    projections = 2 * batch * tokens * width * (3 * width + width)
    products = 2 * 2 * batch * tokens * tokens * width
    with torch.inference_mode():
        assert forward_flops(lambda: SelfAttention().forward(x)) == projections + products
        assert torch.backends.mha.get_fastpath_enabled()  # restored
        fused = FlopCounterMode(display=False)
        with fused:
            SelfAttention().forward(x)
    assert fused.get_total_flops() < projections + products


def test_refusal_benchmark_refuses_every_bad_input_with_one_line(tmp_path):
    """Each bad input is refused by a fresh CLI process with exit code 2 and one line naming
    the file, before any model library loads (so its peak memory stays small)."""
    rows = measure(runs=1)
    assert [row["input"] for row in rows] == ["empty file", "text file", "PNG renamed .mp4", "audio-only MP4",
                                             "truncated MP4", "1×1 video", "--out names an existing file"]
    for row in rows:
        assert row["message_ok"], row
        assert row["peak_rss_mb"] <= REFUSAL_LIMIT_MB, row  # torch alone would take it past 300 MB


@pytest.mark.slow
def test_verdict_benchmark_runs_and_reports_every_figure(tmp_path):
    out = tmp_path / "verdicts.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.bench_verdicts", "--data", str(tmp_path / "data"),
                          "--out", str(out), "--test-clips", "8", "--sync-clips", "4", "--sequences", "5",
                          "--long-seconds", "4"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["false_fake_any_modality"]) == {"10s", "30s", "60s", "120s", "600s"}
    for rows in report["by_probe"].values():
        assert all(0 <= row["false_fake"] <= 1 for row in rows.values())
    assert {"offset_error_median_s", "false_alarm_unshifted", "judged_clips"} <= set(report["sync"])
    assert report["long_real_clip"]["label"] in ("real", "fake", "uncertain")
    assert "Real clips called fake" in run.stdout


@pytest.mark.slow
def test_generalisation_benchmark_leads_with_real_recordings_and_prints_the_matrix(tmp_path):
    out = tmp_path / "generalisation.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.bench_generalisation", "--quick", "--data",
                          str(tmp_path / "data"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines[1].startswith("## 1. False-fake rate on real recordings")
    for modality in ("audio", "visual"):
        real = report["shipped"][modality]["false_fake_real_recordings"]
        assert real["clips"] >= 2 and all(0 <= real[k] <= 1 for k in ("single", "60s", "600s"))
        rows = report["lofo"][modality]
        assert set(rows) - {"mean"}, modality
        for family, row in rows.items():
            if family not in ("mean", "favoured"):
                for kind in ("binary", "one_class", "combined"):  # all calibrated and judged alike
                    assert 0 <= row[kind]["video_auc"] <= 1, (family, kind)
                    assert 0 <= row[kind]["false_fake_real_recordings"]["single"] <= 1, (family, kind)
                assert f"{modality:8s} {family:11s}" in run.stdout
        assert rows["favoured"] in ("binary", "one_class", "combined")
        assert f"{modality:8s} favoured by the matrix" in run.stdout
