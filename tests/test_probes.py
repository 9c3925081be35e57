"""Parity with the released SSR-DFD probes, the probe file format, and the zoo."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders import get_spec, pair_frames
from models.errors import AnalysisError
from models.probes import LinearProbe, fuse, load_probe_file, save_probe
from models.zoo import REMOTE_PROBES, fetch_remote, list_probes, load_probe

RELEASED = {"ssr-dfd/wav2vec2": "wav2vec2.ckpt", "ssr-dfd/avh_multimodal": "avh_multimodal.ckpt",
            "ssr-dfd/braven_vsr": "braven_vsr.ckpt"}


def direct_scores(checkpoint_path, features: np.ndarray):
    """The upstream computation written out with torch, straight from the checkpoint."""
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    x = torch.nn.functional.normalize(torch.from_numpy(features).double(), dim=-1)
    logits = x @ state["head.weight"].double().T + state["head.bias"].double()
    logits = logits[:, 0]
    return logits.numpy(), torch.logsumexp(logits, 0).item()


@pytest.mark.parametrize("probe_id", list(RELEASED))
def test_released_probe_parity(app_home, fixtures_dir, probe_id):
    source = fixtures_dir / "ssr-dfd-probes" / RELEASED[probe_id]
    fetch_remote(probe_id, source=source)
    probe = load_probe(probe_id)
    assert probe.encoder_id == REMOTE_PROBES[probe_id].encoder
    assert probe.dim == get_spec(probe.encoder_id).dim
    features = np.random.default_rng(1).standard_normal((137, probe.dim)).astype(np.float32) * 3
    scores = probe.score(features)
    logits, video_score = direct_scores(source, features)
    assert np.abs(scores.logits - logits).max() <= 1e-6
    assert abs(scores.video_score - video_score) <= 1e-6
    assert abs(scores.p_fake - torch.sigmoid(torch.tensor(2 * video_score)).item()) <= 1e-6
    assert np.allclose(scores.probabilities, 1 / (1 + np.exp(-2 * logits)))


def test_released_probe_cards_map_to_encoders(app_home):
    entries = {e.id: e for e in list_probes()}
    assert entries["ssr-dfd/wav2vec2"].encoder == "wav2vec2-xls-r-2b"
    assert entries["ssr-dfd/avh_multimodal"].encoder == "avhubert-large-av"
    assert entries["ssr-dfd/braven_vsr"].encoder == "braven-large-v"
    assert not entries["ssr-dfd/wav2vec2"].available
    assert entries["ssr-dfd/wav2vec2"].card["licence"] == "CC BY-NC-SA 4.0"


@pytest.mark.security("remote probes: a file whose SHA-256 differs from the zoo entry is refused")
def test_flipped_byte_is_refused(app_home, fixtures_dir, tmp_path):
    damaged = tmp_path / "wav2vec2.ckpt"
    data = bytearray((fixtures_dir / "ssr-dfd-probes" / "wav2vec2.ckpt").read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    with pytest.raises(AnalysisError, match="SHA-256 mismatch"):
        fetch_remote("ssr-dfd/wav2vec2", source=damaged)
    assert not REMOTE_PROBES["ssr-dfd/wav2vec2"].local_path.exists()


@pytest.mark.security("remote probes: a probe changed after download is refused when loaded (SHA-256)")
def test_probe_damaged_after_fetch_is_refused_on_load(app_home, fixtures_dir):
    path = fetch_remote("ssr-dfd/braven_vsr", source=fixtures_dir / "ssr-dfd-probes" / "braven_vsr.ckpt")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AnalysisError, match="SHA-256 mismatch"):
        load_probe("ssr-dfd/braven_vsr")


def test_missing_released_probe_says_how_to_get_it(app_home):
    with pytest.raises(AnalysisError, match="not downloaded yet.*probes fetch ssr-dfd/wav2vec2"):
        load_probe("ssr-dfd/wav2vec2")


def test_download_failure_is_a_clear_error(app_home, monkeypatch):
    import models.zoo as zoo

    monkeypatch.setitem(zoo.REMOTE_PROBES, "ssr-dfd/wav2vec2", zoo.RemoteProbe(
        "ssr-dfd/wav2vec2", "http://127.0.0.1:9/nothing.ckpt", "0" * 64, "wav2vec2-xls-r-2b", "x"))
    with pytest.raises(AnalysisError, match="cannot download"):
        fetch_remote("ssr-dfd/wav2vec2")
    assert not any(app_home.rglob("*.ckpt"))


@pytest.mark.parametrize("length", [1, 2, 7, 50])
def test_50hz_pairing(length):
    x = np.random.default_rng(0).standard_normal((length, 1920)).astype(np.float32)
    paired = pair_frames(x)
    assert paired.shape == (int(np.ceil(length / 2)), 3840)
    assert np.array_equal(paired[0, :1920], x[0])
    if length > 1:
        assert np.array_equal(paired[0, 1920:], x[1])
    if length % 2:
        assert np.array_equal(paired[-1, :1920], x[-1]) and np.array_equal(paired[-1, 1920:], x[-1])


def make_probe(encoder="random-clip-vit-b16", probe_id="user/test"):
    dim = get_spec(encoder).dim
    weight = np.random.default_rng(3).standard_normal(dim).astype(np.float32)
    return LinearProbe(weight=weight, bias=-0.25, card={"id": probe_id, "encoder": encoder, "dim": dim})


def test_safetensors_round_trip(tmp_path):
    probe = make_probe()
    card = save_probe(probe, tmp_path)
    loaded = load_probe_file(card)
    assert np.array_equal(loaded.weight, probe.weight) and loaded.bias == pytest.approx(-0.25)
    saved = json.loads(card.read_text())
    assert saved["pooling"] == "logsumexp" and saved["l2_normalise"] is True


def test_user_probes_join_the_zoo(app_home):
    from models.zoo import user_probe_dir

    save_probe(make_probe(probe_id="user/mine"), user_probe_dir())
    entry = {e.id: e for e in list_probes()}["user/mine"]
    assert entry.source == "user" and entry.available
    assert load_probe("user/mine").encoder_id == "random-clip-vit-b16"


@pytest.mark.security("probe cards and safetensors are validated (JSON, keys, encoder id, dims, weights) with clear errors")
@pytest.mark.parametrize("damage,message", [
    ("card_not_json", "not valid JSON"),
    ("card_missing_key", "must be an object with id, encoder, dim"),
    ("unknown_encoder", "unknown encoder"),
    ("wrong_dim", "card says"),
    ("weights_garbage", "not a valid safetensors"),
    ("weights_missing", "probe file not found"),
])
def test_invalid_probe_files_give_clear_errors(tmp_path, damage, message):
    card = save_probe(make_probe(), tmp_path)
    weights = card.with_suffix(".safetensors")
    data = json.loads(card.read_text())
    if damage == "card_not_json":
        card.write_text("{oops")
    elif damage == "card_missing_key":
        card.write_text(json.dumps({"id": "x"}))
    elif damage == "unknown_encoder":
        card.write_text(json.dumps({**data, "encoder": "nope"}))
    elif damage == "wrong_dim":
        card.write_text(json.dumps({**data, "dim": 7}))
    elif damage == "weights_garbage":
        weights.write_bytes(b"\x00" * 64)
    elif damage == "weights_missing":
        weights.unlink()
    with pytest.raises(AnalysisError, match=message):
        load_probe_file(card)


@pytest.mark.security("checkpoints: a pickle payload in a probe checkpoint is not executed (torch.load weights_only)")
def test_pickle_payloads_are_not_executed(tmp_path, app_home):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    from models.probes import load_lightning_checkpoint

    with pytest.raises(AnalysisError, match="not a readable probe checkpoint"):
        load_lightning_checkpoint(bad, {"id": "x", "encoder": "wav2vec2-xls-r-2b"})
    assert (tmp_path / "victim").exists()


def test_fusion_is_the_mean_probability():
    a, b = make_probe(), make_probe()
    b.weight = -b.weight
    features = np.random.default_rng(0).standard_normal((20, a.dim))
    fused = fuse([a.score(features), b.score(features)])
    assert np.allclose(fused.probabilities, (a.score(features).probabilities + b.score(features).probabilities) / 2)
    assert fused.p_fake == pytest.approx((a.score(features).p_fake + b.score(features).p_fake) / 2)


@pytest.mark.security("no model is loaded with trust_remote_code, and torch.load always has weights_only=True")
def test_no_remote_code_and_no_unrestricted_unpickling():
    import re

    root = Path(__file__).resolve().parents[1]
    sources = [p for folder in ("models", "explain") for p in (root / folder).rglob("*.py")]
    sources += [root / "app.py", root / "cli.py"]
    for path in sources:
        text = path.read_text()
        assert "trust_remote_code=True" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
    assert len(sources) > 20


def with_real_data_model(probe: LinearProbe, head_unit=0.5, model_unit=2.0) -> LinearProbe:
    """`probe` carrying an untrained two-layer next-step model (the runtime treats it as a trained one)."""
    from dataclasses import asdict, replace

    from models.anomaly import NextStepConfig, NextStepPredictor
    from models.probes import RealDataModel

    torch.manual_seed(0)
    config = NextStepConfig(layers=2, heads=2, width=32)
    network = NextStepPredictor(probe.dim, config).eval()
    card = {"kind": "next-step", "dim": probe.dim, "network": asdict(config)}
    return replace(probe, real_model=RealDataModel(network, head_unit, model_unit, card))


def test_a_probe_carrying_a_real_data_model_adds_its_errors_and_round_trips(tmp_path):
    head_only = make_probe()
    probe = with_real_data_model(head_only)
    features = np.random.default_rng(1).standard_normal((40, probe.dim))
    with torch.no_grad():
        errors = probe.real_model.network.score(torch.from_numpy(features).float()).double().numpy()
    expected = head_only.step_logits(features) / 0.5 + errors / 2.0
    assert np.allclose(probe.step_logits(features), expected, atol=1e-5)
    loaded = load_probe_file(save_probe(probe, tmp_path))
    assert loaded.real_model is not None and loaded.real_model.model_unit == 2.0
    assert np.allclose(loaded.step_logits(features), expected, atol=1e-5)
    # differentiable, as the attributions need
    x = torch.from_numpy(features).requires_grad_()
    loaded.torch_logits(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("damage", ["zero_unit", "wrong_kind", "weights_missing"])
def test_a_damaged_real_data_model_is_refused_with_a_clear_error(tmp_path, damage):
    from safetensors.numpy import load_file, save_file

    card = save_probe(with_real_data_model(make_probe()), tmp_path)
    data = json.loads(card.read_text())
    if damage == "zero_unit":
        card.write_text(json.dumps({**data, "real_model": {**data["real_model"], "model_unit": 0}}))
    elif damage == "wrong_kind":
        card.write_text(json.dumps({**data, "real_model": {**data["real_model"], "kind": "av-sync"}}))
    else:
        weights = card.with_suffix(".safetensors")
        save_file({k: v for k, v in load_file(str(weights)).items() if not k.startswith("real.")}, str(weights))
    with pytest.raises(AnalysisError, match="real-data model does not fit its card"):
        load_probe_file(card)


def test_the_real_data_model_scores_long_clips_in_blocks_within_its_trained_positions():
    from models.anomaly import NextStepConfig, NextStepPredictor

    torch.manual_seed(0)
    context = 64  # position embeddings only as far as training windows reach: a long clip must not need more
    network = NextStepPredictor(16, NextStepConfig(layers=1, heads=2, width=16, max_steps=context)).eval()
    features = torch.randn(1000, 16)
    with torch.no_grad():
        scores = network.score(features)
        short = network.score(features[:context])
        block = context // 2
        start = 12 * block  # step 400 lies in the block [384, 416), predicted with [352, 384) as context
        window = network.step_errors(features[start - block: start + block])
    assert scores.shape == (1000,) and torch.isfinite(scores).all()
    assert torch.allclose(short[1:], network.step_errors(features[:context]))  # one pass up to the context
    assert torch.allclose(scores[400], window[block - 1 + 400 - start])
    # training windows: overlapping by half, the last flush with the clip's end, every step covered
    windows = network.windows(features[:150])
    assert [len(w) for w in windows] == [context] * 4 and torch.equal(windows[-1], features[86:150])
