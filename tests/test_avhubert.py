"""AV-HuBERT without fairseq: tiny checkpoints in the published layouts, written to a temp
folder and read through the same loader as real files; every key mapped; a malicious
pickle refused with nothing run; the filter bank against python_speech_features."""
from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders import get_spec
from models.encoders.avhubert import (
    AVHubert,
    AVHubertConfig,
    audio_features,
    build_model,
    load_checkpoint,
    log_filter_bank,
)
from models.encoders.checkpoints import STAND_INS
from models.encoders.external import missing_features
from models.errors import AnalysisError
from models.media import file_sha256
from tests.builders import native_and_file_routes

TINY = AVHubertConfig(layers=2, dim=32, ffn_dim=64, heads=4, conv_pos=4, conv_pos_groups=4)
TINY_CFG = {"encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
            "layer_norm_first": True, "conv_pos": 4, "conv_pos_groups": 4, "audio_feat_dim": 104,
            "modality_fuse": "concat"}


def fairseq_key(key: str) -> str:
    """This module's key → the published layout's (old-style weight norm)."""
    return key.replace("pos_conv.0.parametrizations.weight.original0", "pos_conv.0.weight_g") \
              .replace("pos_conv.0.parametrizations.weight.original1", "pos_conv.0.weight_v")


@pytest.fixture()
def fairseq_modules(monkeypatch):
    """Modules under which the stand-ins pickle as fairseq's own classes."""
    modules: dict[str, types.ModuleType] = {}
    for stand_in in STAND_INS:
        module = modules.setdefault(stand_in.__module__, types.ModuleType(stand_in.__module__))
        setattr(module, stand_in.__qualname__, stand_in)
    for name, module in modules.items():
        parts = name.split(".")
        for depth in range(1, len(parts)):  # pickle imports the parent packages first
            parent = ".".join(parts[:depth])
            if parent not in sys.modules:
                monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, module)
    return {stand_in.__module__ + "." + stand_in.__qualname__: stand_in for stand_in in STAND_INS}


def write_checkpoint(path: Path, stand_ins: dict, finetuned: bool = False, edit=None,
                     config: AVHubertConfig = TINY) -> AVHubert:
    """A tiny AV-HuBERT saved as fairseq saves one: pickled dict with model, cfg, args and
    task_state holding Dictionary objects (and, fine-tuned, the encoder under
    encoder.w2v_model. beside a decoder)."""
    torch.manual_seed(0)
    model = AVHubert(config).eval()
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    prefix = "encoder.w2v_model." if finetuned else ""
    state = {prefix + fairseq_key(k): v for k, v in model.state_dict().items()}
    state[prefix + "mask_emb"] = torch.zeros(config.dim)
    state[prefix + ("final_proj.weight" if not finetuned else "label_embs_concat")] = torch.zeros(4, config.dim)
    if finetuned:
        state["decoder.embed_tokens.weight"] = torch.zeros(10, config.dim)
    if edit:
        edit(state)
    dictionary = stand_ins["fairseq.data.dictionary.Dictionary"]()
    dictionary.__setstate__({"symbols": ["<s>", "<pad>", "</s>", "<unk>", "a"], "count": [1, 1, 1, 1, 5]})
    sizes = {**TINY_CFG, "encoder_layers": config.layers, "encoder_embed_dim": config.dim,
             "encoder_ffn_embed_dim": config.ffn_dim, "encoder_attention_heads": config.heads}
    cfg = {"model": {"w2v_args": {"model": sizes}} if finetuned else sizes, "task": {"modalities": ["video"]}}
    torch.save({"model": state, "cfg": cfg, "args": argparse.Namespace(arch="av_hubert"),
                "task_state": {"dictionaries": [dictionary]}, "optimizer_history": []}, path)
    return model


@pytest.mark.parametrize("finetuned", [False, True])
def test_a_checkpoint_in_the_published_layout_loads_and_gives_the_same_features(tmp_path, fairseq_modules, finetuned):
    path = tmp_path / "tiny.pt"
    original = write_checkpoint(path, fairseq_modules, finetuned)
    loaded = build_model(load_checkpoint(path), str(path))
    audio, video = torch.randn(1, 12, 104), torch.randn(1, 1, 12, 88, 88)
    with torch.inference_mode():
        for inputs in ((audio, video), (audio, None), (None, video)):
            expected, got = original(*inputs), loaded(*inputs)
            assert got.shape == (1, 12, 32) and torch.isfinite(got).all()
            assert torch.allclose(expected, got, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda state: state.pop("encoder.layers.1.fc2.weight"), "missing encoder.layers.1.fc2.weight"),
    (lambda state: state.update({"encoder.extra.weight": torch.zeros(1)}), "unexpected encoder.extra.weight")])
def test_a_missing_or_extra_key_is_named(tmp_path, fairseq_modules, change, message):
    path = tmp_path / "broken.pt"
    write_checkpoint(path, fairseq_modules, edit=change)
    with pytest.raises(AnalysisError, match=message):
        build_model(load_checkpoint(path), str(path))


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.security("a malicious checkpoint (a pickle that would run a command) is refused and nothing runs")
def test_a_checkpoint_listed_by_its_sha256_is_used_without_a_warning(tmp_path, fairseq_modules, monkeypatch):
    from models.encoders import KNOWN_CHECKPOINTS, checkpoint_warning

    checkpoint = tmp_path / "large_vox_iter5.pt"
    write_checkpoint(checkpoint, fairseq_modules)
    assert "not one this app knows" in checkpoint_warning("avhubert-large-av", str(checkpoint))
    monkeypatch.setitem(KNOWN_CHECKPOINTS, "avhubert", {file_sha256(checkpoint): "large_vox_iter5.pt (test)"})
    assert checkpoint_warning("avhubert-large-av", str(checkpoint)) is None
    assert checkpoint_warning("selfblend-cnn", str(checkpoint)) is None  # families not loaded from files: no check


def test_a_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"model": {}, "cfg": {}, "payload": RunsCode(marker)}, path)
    with pytest.raises(AnalysisError, match=r"refused: the checkpoint asks to load posix.system, which is neither"):
        load_checkpoint(path)
    assert not marker.exists()
    garbage = tmp_path / "notes.pt"
    garbage.write_text("not a checkpoint\n")
    with pytest.raises(AnalysisError, match="is not a PyTorch checkpoint"):
        load_checkpoint(garbage)


def test_the_filter_bank_matches_python_speech_features():
    from python_speech_features import logfbank

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16_000 * 2 + 123)).astype(np.float32)
    audio[:400] = 0.0  # a silent start: log of the floor
    ours, reference = log_filter_bank(audio), logfbank(audio, samplerate=16_000)
    assert ours.shape == reference.shape == (200, 26)
    assert np.abs(ours - reference).max() < 1e-4
    stacked = audio_features(audio, 50)
    assert stacked.shape == (50, 104) and np.allclose(stacked.mean(1), 0, atol=1e-5)


def test_registry_entries_run_natively_from_a_checkpoint_or_read_the_same_features(tmp_path, fairseq_modules,
                                                                                   face_clip):
    """A tiny entry of the family: from its checkpoint it computes (steps × dim) on a real
    clip's audio and mouth regions; given the same numbers as a feature file, the file
    route returns them unchanged (the released probes see identical inputs either way)."""
    path = tmp_path / "tiny.pt"
    write_checkpoint(path, fairseq_modules)
    in_bf16 = native_and_file_routes("avhubert-large-av", "avhubert", "audio-visual", path, face_clip, tmp_path)
    # its matrix products' weights cast once
    assert all(p.dtype == torch.bfloat16 for n, p in in_bf16.model.named_parameters() if "proj.weight" in n)
    assert "--weights avhubert-large-av=CHECKPOINT.pt" in str(missing_features(get_spec("avhubert-large-av")))


def test_the_released_probe_runs_from_a_checkpoint_as_from_the_same_features(face_clip, app_home, fixtures_dir,
                                                                              tmp_path, fairseq_modules):
    """ssr-dfd/avh_multimodal from a video and an AV-HuBERT checkpoint (1024 wide, one layer):
    the probe scores what the encoder computed; given those features as a file instead, the
    released probe's logits are identical."""
    from models.analysis import AnalysisOptions, analyze
    from models.settings import Settings
    from models.zoo import fetch_remote

    fetch_remote("ssr-dfd/avh_multimodal", source=fixtures_dir / "ssr-dfd-probes" / "avh_multimodal.ckpt")
    checkpoint = tmp_path / "avhubert.pt"
    write_checkpoint(checkpoint, fairseq_modules, finetuned=True,
                     config=AVHubertConfig(layers=1, dim=1024, ffn_dim=64, heads=4, conv_pos=4, conv_pos_groups=4))
    native = analyze(face_clip, ["ssr-dfd/avh_multimodal"], AnalysisOptions(
        settings=Settings(weights={"avhubert-large-av": str(checkpoint)}), cache=None))
    features = native.features["avhubert-large-av"]
    assert features.shape == (native.media.n_steps, 1024) and native.face_track is not None
    np.savez(tmp_path / "avh.npz", multimodal=features)
    from_file = analyze(face_clip, ["ssr-dfd/avh_multimodal"],
                        AnalysisOptions(features={"avhubert-large-av": str(tmp_path / "avh.npz")}, cache=None))
    logits = native.probes["ssr-dfd/avh_multimodal"].scores.logits
    assert np.isfinite(logits).all() and np.array_equal(logits, from_file.probes["ssr-dfd/avh_multimodal"].scores.logits)
    unknown = [w for w in native.warnings if "avhubert.pt" in w]
    assert len(unknown) == 1 and "is not one this app knows" in unknown[0] and file_sha256(checkpoint)[:16] in unknown[0]
    assert not any("is not one this app knows" in w for w in from_file.warnings)  # a feature file names no checkpoint
    with pytest.raises(AnalysisError, match="needs its published checkpoint or its features"):
        analyze(face_clip, ["ssr-dfd/avh_multimodal"], AnalysisOptions(cache=None))


def streams(shift: int, steps: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Audio-like and lip-like feature streams of one latent (lips `shift` steps late), each
    through one shared projection bent a little per modality, with noise: two modalities
    embedded by one model."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((steps + 40, 8)), axis=0)  # slow drifts removed below, as speech has none
    latent = walk - np.stack([np.convolve(walk[:, j], np.ones(15) / 15, mode="same") for j in range(8)], 1)
    shared = rng.standard_normal((8, 32))  # one embedding space, bent a little per modality
    audio = latent[20:20 + steps] @ (shared + 0.3 * rng.standard_normal((8, 32)))
    lips = latent[20 - shift:20 - shift + steps] @ (shared + 0.3 * rng.standard_normal((8, 32)))
    return audio + 0.5 * rng.standard_normal((steps, 32)), lips + 0.5 * rng.standard_normal((steps, 32))


@pytest.mark.parametrize("shift", [-8, -3, 0, 4, 10])
def test_the_agreement_scorer_recovers_a_known_offset_of_the_lip_stream(shift):
    from models.sync import AGREEMENT_SCORER_ID, MIN_FLAG_OFFSET_S, estimate_feature_sync

    result = estimate_feature_sync(*streams(shift))
    assert result.reliable and result.scorer == AGREEMENT_SCORER_ID
    assert abs(result.offset_s - shift / 25) < 0.02
    assert result.flagged == (abs(shift) / 25 >= MIN_FLAG_OFFSET_S)
    assert result.lag_correlations.shape == (31,) and result.step_agreement.shape == (200,)


def test_the_agreement_scorer_gives_no_judgement_on_unrelated_streams():
    from models.sync import estimate_feature_sync

    audio, _ = streams(0, seed=1)
    _, lips = streams(0, seed=2)
    result = estimate_feature_sync(audio, lips)
    assert not result.reliable and not result.flagged


def test_the_agreement_scorer_runs_the_checkpoints_audio_and_lip_streams(face_clip, app_home, tmp_path,
                                                                         fairseq_modules):
    """sync/avhubert-agreement beside a probe, on a real face clip, from a tiny checkpoint:
    the report carries its lag curve; without a checkpoint it is refused before decoding."""
    from explain.reports import write_report
    from explain.verdict import build_verdict
    from models.analysis import AnalysisOptions, analyze
    from models.settings import Settings
    from models.sync import AGREEMENT_SCORER_ID

    checkpoint = tmp_path / "avhubert.pt"
    write_checkpoint(checkpoint, fairseq_modules)
    options = AnalysisOptions(settings=Settings(weights={"avhubert-base-av": str(checkpoint)}), cache=None)
    result = analyze(face_clip, ["demo/visual-selfblend", AGREEMENT_SCORER_ID], options)
    report = result.to_dict()["agreement"]
    assert report["scorer"] == AGREEMENT_SCORER_ID and len(report["lag_correlations"]) == 31
    assert all(v is None or -1.0 <= v <= 1.0 for v in report["lag_correlations"])
    assert build_verdict(result).modalities["agreement"]["label"] in ("real", "fake", "no judgement")
    written = json.loads((write_report(result, tmp_path / "out", spatial_steps=0).paths["report"]).read_text())
    assert written["agreement"]["scorer"] == AGREEMENT_SCORER_ID and "agreement" in written["verdict"]["modalities"]
    with pytest.raises(AnalysisError, match="needs an AV-HuBERT checkpoint"):
        analyze(face_clip, ["demo/visual-selfblend", AGREEMENT_SCORER_ID], AnalysisOptions(cache=None))
