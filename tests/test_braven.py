"""BRAVEn's visual encoder run natively: tiny checkpoints in the published layouts (a bare
state dict, and a fine-tuned VSR model with its CTC head and decoder), written to a temp
folder and read through the same loader as real files; every key mapped; the relative
positional attention against its definition; the released probe from a checkpoint."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders import create_encoder, get_spec
from models.encoders.braven import BRAVEn, BRAVEnConfig, RelPositionAttention, build_model, relative_positions
from models.encoders.checkpoints import read_checkpoint
from models.encoders.external import missing_features
from models.errors import AnalysisError
from tests.builders import native_and_file_routes

TINY = BRAVEnConfig(layers=2, dim=32, ffn_dim=64, heads=4)


def tiny_model(config: BRAVEnConfig = TINY, seed: int = 0) -> BRAVEn:
    """A BRAVEn with non-trivial position biases, layer scales and batch-norm statistics."""
    torch.manual_seed(seed)
    model = BRAVEn(config).eval()
    for name, parameter in model.named_parameters():
        if "pos_bias" in name or "gamma" in name:
            torch.nn.init.uniform_(parameter, -0.3, 0.3)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def write_checkpoint(path: Path, finetuned: bool = False, edit=None, config: BRAVEnConfig = TINY) -> BRAVEn:
    """A tiny BRAVEn saved as the authors publish one: a bare encoder state dict, or a
    fine-tuned model's (encoder under "encoder." beside "ctc." and "decoder.")."""
    model = tiny_model(config)
    prefix = "encoder." if finetuned else ""
    state = {prefix + key: value for key, value in model.state_dict().items()}
    if finetuned:
        state["ctc.ctc_lo.weight"] = torch.zeros(5, config.dim)
        state["decoder.embed.0.weight"] = torch.zeros(5, config.dim)
    if edit:
        edit(state)
    torch.save(state, path)
    return model


@pytest.mark.parametrize("finetuned", [False, True])
def test_a_checkpoint_in_the_published_layout_loads_and_gives_the_same_features(tmp_path, finetuned):
    path = tmp_path / "tiny.pth"
    original = write_checkpoint(path, finetuned)
    loaded = build_model(read_checkpoint(path, "BRAVEn", "BRAVEn checkpoints"), str(path))
    assert BRAVEnConfig.from_state(original.state_dict()) == TINY
    video = torch.randn(1, 1, 12, 88, 88)
    with torch.inference_mode():
        expected, got = original(video), loaded(video)
    assert got.shape == (1, 12, 32) and torch.isfinite(got).all()
    assert torch.allclose(expected, got, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda state: state.pop("encoders.1.feed_forward.w_2.weight"), "missing encoders.1.feed_forward.w_2.weight"),
    (lambda state: state.update({"encoders.0.extra": torch.zeros(1)}), "unexpected encoders.0.extra"),
    (lambda state: state.update({"embed.0.weight": torch.zeros(32, 768)}), "project 768 front-end values per step"),
    (lambda state: state.update({"encoders.1.feed_forward.w_2.weight": torch.zeros(32, 65)}),
     "shapes of encoders.1.feed_forward.w_2.weight"),
    (lambda state: state.pop("frontend.frontend3D.0.weight"), "not a BRAVEn/RAVEn visual encoder"),
    (lambda state: state.update({"note": "trained on 8 GPUs"}), "a state dict of tensors")])
def test_a_missing_extra_or_misshapen_key_is_named(tmp_path, change, message):
    path = tmp_path / "broken.pth"
    write_checkpoint(path, edit=change)
    with pytest.raises(AnalysisError, match=message):
        build_model(read_checkpoint(path, "BRAVEn", "BRAVEn checkpoints"), str(path))


def test_a_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    path = tmp_path / "evil.pth"
    torch.save({"frontend.frontend3D.0.weight": torch.zeros(1), "payload": RunsCode()}, path)
    with pytest.raises(AnalysisError, match="refused: the checkpoint asks to load posix.system"):
        create_encoder("braven-large-v", str(path))
    assert not (tmp_path / "ran").exists()


def test_the_attention_scores_each_key_by_its_content_and_its_relative_position():
    """Transformer-XL attention written out score by score: (q_i + u)·k_j + (q_i + v)·p(i − j)
    over √d_k, p the sinusoid of i − j through linear_pos."""
    torch.manual_seed(1)
    attention = RelPositionAttention(8, 2).eval()
    for parameter in attention.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    steps, dim, heads, head_dim = 5, 8, 2, 4
    x = torch.randn(1, steps, dim)
    table = relative_positions(steps, dim)
    sinusoid = {r: table[steps - 1 - r] for r in range(-(steps - 1), steps)}
    assert torch.allclose(sinusoid[3][0::2], torch.sin(3 * torch.exp(torch.arange(0, dim, 2) * -(math.log(1e4) / dim))))
    q, k, v = (layer(x[0]).view(steps, heads, head_dim) for layer in
               (attention.linear_q, attention.linear_k, attention.linear_v))
    out = torch.zeros(steps, heads, head_dim)
    for h in range(heads):
        for i in range(steps):
            scores = torch.stack([
                (q[i, h] + attention.pos_bias_u[h]) @ k[j, h]
                + (q[i, h] + attention.pos_bias_v[h]) @ attention.linear_pos(sinusoid[i - j]).view(heads, head_dim)[h]
                for j in range(steps)]) / math.sqrt(head_dim)
            out[i, h] = torch.softmax(scores, 0) @ v[:, h]
    expected = attention.linear_out(out.reshape(steps, dim))
    with torch.inference_mode():
        got = attention(x, table)[0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_registry_entries_run_natively_from_a_checkpoint_or_read_the_same_features(tmp_path, face_clip):
    """A tiny entry of the family: from its checkpoint it computes (steps × dim) on a real
    clip's mouth regions; given the same numbers as a feature file, the file route returns
    them unchanged."""
    path = tmp_path / "tiny.pth"
    write_checkpoint(path)
    native_and_file_routes("braven-large-v", "braven", "lips", path, face_clip, tmp_path)
    assert "--weights braven-large-v=CHECKPOINT.pt (see README: BRAVEn checkpoints)" in str(
        missing_features(get_spec("braven-large-v")))


def test_the_released_probe_runs_from_a_checkpoint_as_from_the_same_features(face_clip, app_home, fixtures_dir,
                                                                              tmp_path):
    """ssr-dfd/braven_vsr from a video and a BRAVEn checkpoint (1024 wide, one layer, in the
    fine-tuned layout): given the features it computed as a file instead, the released
    probe's logits are identical."""
    from models.analysis import AnalysisOptions, analyze
    from models.settings import Settings
    from models.zoo import fetch_remote

    fetch_remote("ssr-dfd/braven_vsr", source=fixtures_dir / "ssr-dfd-probes" / "braven_vsr.ckpt")
    checkpoint = tmp_path / "braven.pth"
    write_checkpoint(checkpoint, finetuned=True, config=BRAVEnConfig(layers=1, dim=1024, ffn_dim=64, heads=4))
    native = analyze(face_clip, ["ssr-dfd/braven_vsr"], AnalysisOptions(
        settings=Settings(weights={"braven-large-v": str(checkpoint)}), cache=None))
    features = native.features["braven-large-v"]
    assert features.shape == (native.media.n_steps, 1024)
    np.savez(tmp_path / "braven.npz", visual=features)
    from_file = analyze(face_clip, ["ssr-dfd/braven_vsr"],
                        AnalysisOptions(features={"braven-large-v": str(tmp_path / "braven.npz")}, cache=None))
    logits = native.probes["ssr-dfd/braven_vsr"].scores.logits
    assert np.isfinite(logits).all() and np.array_equal(logits, from_file.probes["ssr-dfd/braven_vsr"].scores.logits)
    assert any("braven.pth" in w and "is not one this app knows" in w for w in native.warnings)
    with pytest.raises(AnalysisError, match="needs its published checkpoint or its features"):
        analyze(face_clip, ["ssr-dfd/braven_vsr"], AnalysisOptions(cache=None))


def test_a_checkpoint_uploaded_in_the_app_serves_that_sessions_probes(face_clip, app_home, fixtures_dir, tmp_path):
    """The app's checkpoint upload: a wrong file is refused with its reason and changes
    nothing; a BRAVEn checkpoint is checked on upload, then the session's analysis of
    ssr-dfd/braven_vsr computes its features from it, as the CLI's --weights does; the
    loaded model is dropped when the session ends."""
    import app
    from models.analysis import AnalysisOptions, analyze
    from models.encoders import _instances
    from models.settings import Settings
    from models.zoo import fetch_remote

    fetch_remote("ssr-dfd/braven_vsr", source=fixtures_dir / "ssr-dfd-probes" / "braven_vsr.ckpt")
    checkpoint = tmp_path / "braven.pth"
    write_checkpoint(checkpoint, config=BRAVEnConfig(layers=1, dim=1024, ffn_dim=64, heads=4))
    (tmp_path / "notes.pth").write_text("not a checkpoint\n")
    session, message = app.use_checkpoint("braven-large-v", str(tmp_path / "notes.pth"), None)
    assert message.startswith("**Not used:**") and "is not a PyTorch checkpoint" in message and not session.weights
    session, message = app.use_checkpoint("braven-large-v", str(checkpoint), session)
    assert "runs from braven.pth" in message and "is not one this app knows" in message
    stages = app.plan_stages(["ssr-dfd/braven_vsr"])
    *_, (to_come, _) = app.analysis_stages(str(face_clip), stages, session, lambda stage, fraction: None)
    features = session.result.features["braven-large-v"]
    core = analyze(face_clip, ["ssr-dfd/braven_vsr"], AnalysisOptions(
        settings=Settings(weights={"braven-large-v": str(checkpoint)}), cache=None))
    assert to_come == "" and np.array_equal(features, core.features["braven-large-v"])
    assert any(key[:2] == ("braven-large-v", str(checkpoint)) for key in _instances)
    app.end_session(session)
    assert not any(key[:2] == ("braven-large-v", str(checkpoint)) for key in _instances)
