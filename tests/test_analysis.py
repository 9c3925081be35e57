"""analyze(): every encoder family end to end, the report, the feature cache, the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import models.analysis as analysis
from explain.reports import write_report
from models.analysis import AnalysisOptions, analyze
from models.cache import FeatureCache
from models.encoders.base import EncoderSpec
from models.errors import AnalysisError
from models.media import MediaLimits, write_test_clip
from models.settings import Settings
from tests.cli_runner import run_cli
from tests.conftest import gradient_frames
from tests.test_encoders import TINY_AUDIO, TINY_CLIP_CONFIG, TINY_VIDEOMAE, TINY_VIT

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tiny_families(register, tmp_path):
    """A tiny random-init encoder of every in-app family, registered for this test."""
    import open_clip

    config_dir = tmp_path / "clip_configs"
    config_dir.mkdir()
    (config_dir / "tiny-clip-test.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_dir)
    specs = [
        EncoderSpec("tiny-wav2vec2", "wav2vec2", "audio", "random", 64, None, TINY_AUDIO),
        EncoderSpec("tiny-wavlm", "wavlm", "audio", "random", 64, None, TINY_AUDIO),
        EncoderSpec("tiny-hubert", "hubert", "audio", "random", 64, None, TINY_AUDIO),
        EncoderSpec("tiny-clip", "clip", "face", "random", 24, None, {"model_name": "tiny-clip-test"}),
        EncoderSpec("tiny-videomae", "videomae", "face", "random", 32, None, TINY_VIDEOMAE),
        EncoderSpec("tiny-fsfm", "fsfm", "face", "random", 32, None, TINY_VIT),
    ]
    return [register(spec).id for spec in specs]


@pytest.fixture(scope="module")
def ten_second_clip(tmp_path_factory):
    from research.synthetic import moving_astronaut, speech_like_audio

    scene = moving_astronaut(250, width=480, height=270, scale=0.5)
    return write_test_clip(tmp_path_factory.mktemp("ten") / "ten.mp4", scene.frames, audio=speech_like_audio(10.0))


@pytest.mark.slow
def test_every_family_on_a_ten_second_clip_writes_a_valid_report(ten_second_clip, tiny_families, tmp_path):
    probes = [f"random@{e}" for e in tiny_families]
    result = analyze(ten_second_clip, probes, AnalysisOptions(cache=FeatureCache(tmp_path / "cache")))
    assert set(result.probes) == set(probes)
    paths = write_report(result, tmp_path).paths
    report = json.loads(paths["report"].read_text())
    assert paths["temporal_png"].stat().st_size > 10_000 and len(report["temporal"]) == len(probes) + 1
    assert report["clock"]["n_steps"] == 250 and len(report["step_times"]) == 250
    for probe_id in probes:
        entry = report["probes"][probe_id]
        logits = np.array(entry["logits"])
        assert len(logits) == 250 and np.all(np.isfinite(logits))
        assert entry["video_score"] == pytest.approx(np.log(np.exp(logits).sum()), abs=1e-4)
        assert entry["p_fake"] == pytest.approx(1 / (1 + np.exp(-2 * entry["video_score"])), abs=1e-9)
    assert report["fusion"]["p_fake"] == pytest.approx(np.mean([report["probes"][p]["p_fake"] for p in probes]))
    assert report["faces"]["found_fraction"] >= 0.95
    assert report["media"]["sha256"] == result.media.sha256 and report["media"]["has_audio"]
    assert {"decode", "faces", "probes"} <= set(report["timings_s"])


def test_second_probe_reuses_cached_features(face_clip, register, tmp_path, monkeypatch):
    register(EncoderSpec("tiny-wav2vec2", "wav2vec2", "audio", "random", 64, None, TINY_AUDIO))
    options = AnalysisOptions(cache=FeatureCache(tmp_path / "cache"))
    first = analyze(face_clip, ["random@tiny-wav2vec2"], options)
    assert list((tmp_path / "cache").rglob("*.npy"))

    def no_loading(*args, **kwargs):
        raise AssertionError("the encoder was loaded although its features are cached")

    monkeypatch.setattr(analysis, "get_encoder", no_loading)
    second = analyze(face_clip, ["random@tiny-wav2vec2"], options)
    assert np.array_equal(first.features["tiny-wav2vec2"], second.features["tiny-wav2vec2"])
    assert "faces" not in second.timings  # audio-only: no face tracking


def test_switching_probe_reuses_the_previous_analysis(face_clip, monkeypatch):
    """A second analysis of the same video with another probe over the same encoder decodes
    nothing, tracks no faces and encodes nothing; its scores match a fresh analysis."""
    options = AnalysisOptions(cache=None)
    first = analyze(face_clip, ["demo/visual-selfblend"], options)
    fresh = analyze(face_clip, ["random@selfblend-cnn"], options)

    def no_work(*args, **kwargs):
        raise AssertionError("decoded, tracked or loaded although the previous analysis had it")

    for name in ("decode", "track_faces", "get_encoder"):
        monkeypatch.setattr(analysis, name, no_work)
    switched = analyze(face_clip, ["random@selfblend-cnn"], options, previous=first)
    assert "reused selfblend-cnn" in switched.timings
    assert np.array_equal(switched.probes["random@selfblend-cnn"].scores.logits,
                          fresh.probes["random@selfblend-cnn"].scores.logits)


def test_previous_analysis_with_other_settings_or_video_is_not_reused(face_clip, tmp_path):
    first = analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None))
    strided = analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None, settings=Settings(stride=4)), previous=first)
    assert "encoder selfblend-cnn" in strided.timings  # another encoder stride: features recomputed
    other = write_test_clip(tmp_path / "other.mp4", gradient_frames(25))
    defaults = Settings()
    assert not first.reusable_for(other, defaults) and first.reusable_for(face_clip, defaults)
    assert not first.reusable_for(face_clip, Settings(limits=MediaLimits(frame_max_side=320)))  # other frame size


def test_naive_and_fast_frame_batches_give_the_same_features(face_clip):
    fast = analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None))
    naive = analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None, settings=Settings(batch_frames=1, precision="fp32")))
    assert np.allclose(fast.features["selfblend-cnn"], naive.features["selfblend-cnn"], atol=1e-5)


def test_encoder_stride_computes_every_nth_step_and_interpolates(face_clip):
    full = analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None)).features["selfblend-cnn"]
    strided = analyze(face_clip, ["demo/visual-selfblend"],
                      AnalysisOptions(cache=None, settings=Settings(stride=4))).features["selfblend-cnn"]
    n = len(full)
    computed = list(range(0, n, 4)) + ([n - 1] if (n - 1) % 4 else [])
    assert np.allclose(strided[computed], full[computed], atol=1e-5)
    between = 2  # halfway between steps 0 and 4
    assert np.allclose(strided[between], (full[0] + full[4]) / 2, atol=1e-5)


def test_time_limit_stops_an_analysis_with_a_clear_error(face_clip):
    with pytest.raises(AnalysisError, match=r"longer than the limit of 1e-06 s \(stopped at: decode\)"):
        analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None, time_limit_s=1e-6))
    result = analyze(face_clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None, time_limit_s=600))
    assert result.media.n_steps == 50


def test_damaged_cache_entry_is_recomputed(face_clip, register, tmp_path):
    register(EncoderSpec("tiny-hubert", "hubert", "audio", "random", 64, None, TINY_AUDIO))
    options = AnalysisOptions(cache=FeatureCache(tmp_path / "cache"))
    first = analyze(face_clip, ["random@tiny-hubert"], options)
    entry = next((tmp_path / "cache").rglob("*.npy"))
    entry.write_bytes(b"garbage")
    second = analyze(face_clip, ["random@tiny-hubert"], options)
    assert np.allclose(first.features["tiny-hubert"], second.features["tiny-hubert"])


def test_clip_without_audio_skips_audio_probes(tmp_path, register):
    register(EncoderSpec("tiny-wav2vec2", "wav2vec2", "audio", "random", 64, None, TINY_AUDIO))
    silent = write_test_clip(tmp_path / "noaudio.mp4", gradient_frames(25))
    features = np.random.default_rng(0).standard_normal((25, 1024)).astype(np.float32)
    np.save(tmp_path / "lips.npy", features)
    result = analyze(silent, ["random@tiny-wav2vec2", "random@braven-large-v"],
                     AnalysisOptions(features={"braven-large-v": str(tmp_path / "lips.npy")}, cache=None))
    assert result.skipped == {"random@tiny-wav2vec2": "no audio track"}
    assert list(result.probes) == ["random@braven-large-v"]
    assert "no audio track: audio probes are skipped" in result.warnings
    with pytest.raises(AnalysisError, match="none of the chosen probes can run.*no audio track"):
        analyze(silent, ["random@tiny-wav2vec2"], AnalysisOptions(cache=None))


def test_released_probe_on_external_features(face_clip, app_home, fixtures_dir, tmp_path):
    from models.zoo import fetch_remote

    fetch_remote("ssr-dfd/avh_multimodal", source=fixtures_dir / "ssr-dfd-probes" / "avh_multimodal.ckpt")
    features = np.random.default_rng(4).standard_normal((50, 1024)).astype(np.float32)
    np.savez(tmp_path / "avh.npz", multimodal=features)
    result = analyze(face_clip, ["ssr-dfd/avh_multimodal"],
                     AnalysisOptions(features={"avhubert-large-av": str(tmp_path / "avh.npz")}, cache=None))
    state = torch.load(fixtures_dir / "ssr-dfd-probes" / "avh_multimodal.ckpt", weights_only=True)["state_dict"]
    x = torch.nn.functional.normalize(torch.from_numpy(features).double(), dim=-1)
    expected = (x @ state["head.weight"].double().T + state["head.bias"].double())[:, 0].numpy()
    assert np.abs(result.probes["ssr-dfd/avh_multimodal"].scores.logits - expected).max() <= 1e-6
    assert result.face_track is None


def test_no_probe_and_unknown_probe_are_clear_errors(face_clip):
    with pytest.raises(AnalysisError, match="no probe chosen"):
        analyze(face_clip, [])
    with pytest.raises(AnalysisError, match="unknown probe 'nope'"):
        analyze(face_clip, ["nope"])


def test_cli_analyze_with_external_features_and_truth(face_clip, tmp_path):
    np.save(tmp_path / "lips.npy", np.random.default_rng(0).standard_normal((50, 1024)).astype(np.float32))
    (tmp_path / "meta.json").write_text(json.dumps([{"file": "x/face.mp4", "fake_segments": [[0.4, 1.0]],
                                                     "visual_fake_segments": [[0.4, 1.0]],
                                                     "audio_fake_segments": [], "modify_type": "visual_modified"}]))
    run = run_cli("analyze", face_clip, "--probe", "random@braven-large-v", "--features",
                  f"braven-large-v={tmp_path / 'lips.npy'}", "--truth", tmp_path / "meta.json", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["probes"]["random@braven-large-v"]["logits"]) == 50
    assert report["temporal"][0]["true_segments"] == [[0.4, 1.0]]
    assert report["temporal"][0]["metrics"]["localisation"]["pooled"]["steps"] == 50
    assert (tmp_path / "out" / "temporal.png").exists() and (tmp_path / "out" / "temporal.svg").exists()
    assert "P(fake)" in run.stdout


@pytest.mark.slow
def test_cli_analyze_random_clip_encoder(face_clip, tmp_path):
    run = run_cli("analyze", face_clip, "--probe", "random@random-clip-vit-b16", "--out", tmp_path / "out",
                  "--face-stride", "2")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["probes"]["random@random-clip-vit-b16"]["offline_encoder"] is True
    assert report["faces"]["found_fraction"] >= 0.95


@pytest.mark.parametrize("args,message", [
    (["analyze", "missing.mp4", "--probe", "random@random-clip-vit-b16", "--out", "x"], "missing.mp4: file not found"),
    (["analyze", "{clip}", "--probe", "nope", "--out", "x"], "unknown probe 'nope'"),
    (["analyze", "{clip}", "--probe", "random@nope", "--out", "x"], "unknown encoder 'nope'"),
    (["analyze", "{clip}", "--probe", "random@braven-large-v", "--features", "oops", "--out", "x"],
     "--features takes ENCODER=PATH"),
    (["probes", "fetch", "ssr-dfd/wav2vec2", "--from", "nothing.ckpt"], "nothing.ckpt: probe file not found"),
])
def test_cli_errors_are_one_line(face_clip, args, message):
    run = run_cli(*[a.replace("{clip}", str(face_clip)) for a in args])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert message in run.stderr


def test_cli_lists(app_home):
    encoders = json.loads(run_cli("list", "encoders", "--json").stdout)
    assert {"wav2vec2-xls-r-2b", "random-clip-vit-l14", "fsfm-vit-b16", "videomae-large"} <= {e["id"] for e in encoders}
    probes = run_cli("list", "probes").stdout
    assert "ssr-dfd/wav2vec2" in probes and "not downloaded" in probes


def test_report_measures_every_explanation_and_draws_audio_and_modality_figures(face_clip, tmp_path):
    probes = ["demo/audio-selfsplice", "demo/visual-selfblend"]
    result = analyze(face_clip, probes, AnalysisOptions(cache=None))
    written = write_report(result, tmp_path, spatial_steps=2)
    measures = json.loads(written.paths["report"].read_text())["explanation_measures"]
    faithfulness = measures["faithfulness"]
    assert set(faithfulness["temporal"]) == set(probes) and list(faithfulness["spatial"]) == [probes[1]]
    for summary in [*faithfulness["temporal"].values(), *faithfulness["spatial"].values()]:
        assert set(summary) == {"deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                                "faithfulness"}
        assert all(np.isfinite(v) for v in summary.values()) and -2 <= summary["faithfulness"] <= 2
    assert [a["probe"] for a in measures["audio_attribution"]] == [probes[0]]
    ablation = measures["modality_ablation"]
    assert set(ablation["contributions"]) == {"audio", "visual"}
    assert len(ablation["fused"]) == len(ablation["times"]) == result.clip.n_steps
    for name in ("audio_attribution_demo_audio-selfsplice", "modality"):
        assert written.paths[name].stat().st_size > 5_000, name
