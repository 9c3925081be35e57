"""The project's own encoders: pretext transformations, training, saving and loading."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.encoders import create_encoder, get_spec
from models.encoders.project import SpliceNet
from models.errors import AnalysisError
from models.timing import SAMPLE_RATE, STEP_RATE
from research.pretext import (
    PretextConfig,
    initial_network,
    padded_batch,
    pretrain_selfblend,
    pretrain_selfsplice,
    save_project_encoder,
    self_blend,
    self_splice,
    token_labels,
)

TINY_BLEND = {"input_size": 32, "widths": [8, 8, 8, 16]}


def test_self_blend_changes_only_the_masked_region():
    rng = np.random.default_rng(3)
    crop = (np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)
    blended, mask = self_blend(crop, rng)
    assert mask.max() > 0.5 and (mask > 0.01).mean() < 0.5
    changed = np.abs(blended.astype(int) - crop.astype(int)).max(-1) > 2
    assert changed[mask < 1e-4].mean() < 0.001  # outside the ellipse the crop is untouched
    assert changed[mask > 0.5].mean() > 0.5


def test_token_labels_follow_the_mask():
    masks = np.zeros((1, 64, 64), np.float32)
    masks[0, :16, 48:] = 1.0
    labels = token_labels(masks, grid=4)
    assert labels.reshape(4, 4)[0, 3] == 1 and labels.sum() == 1


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng not installed")
def test_self_splice_labels_cover_the_replaced_segment():
    from research.generator import VOICES
    from research.pretext import real_utterances

    utterance = real_utterances(1, seed=4, voices=VOICES)[0]
    audio, labels = self_splice(utterance, np.random.default_rng(1), seed=9)
    assert len(audio) == len(utterance[0]) and len(labels) == len(audio) * STEP_RATE // SAMPLE_RATE
    changed = np.abs(audio - utterance[0]) > 1e-6
    spliced = np.flatnonzero(labels)
    assert 0.4 * STEP_RATE - 1 <= len(spliced) <= 1.2 * STEP_RATE + 1
    assert np.all(np.diff(spliced) == 1)  # one contiguous segment
    first, last = spliced[0] * SAMPLE_RATE // STEP_RATE, (spliced[-1] + 1) * SAMPLE_RATE // STEP_RATE
    assert not changed[: max(0, first - 700)].any() and not changed[last + 700:].any()


def test_padded_batch_masks_padding():
    mels, labels, valid = padded_batch([(np.zeros((128, 40), np.float32), np.ones(10, np.float32)),
                                        (np.zeros((128, 20), np.float32), np.ones(5, np.float32))])
    assert mels.shape == (2, 128, 40) and float(mels[1, 0, 30]) == -1.0
    assert valid.sum() == 15 and labels[1, 5:].sum() == 0


def test_pretrained_vit_saves_and_loads_through_the_registry(register, tmp_path):
    spec = register(replace(get_spec("selfblend-cnn"), id="tiny-blend", arch=TINY_BLEND, dim=16))
    crops = (np.random.default_rng(0).random((12, 224, 224, 3)) * 255).astype(np.uint8)
    network, metrics = pretrain_selfblend(spec, crops, crops, PretextConfig(steps=3, batch_size=4))
    assert 0 <= metrics["val_token_auc"] <= 1
    card_path = save_project_encoder(network, spec, tmp_path, {"metrics": metrics})
    card = json.loads(card_path.read_text())
    assert card["sha256"] and card["arch"] == TINY_BLEND
    encoder = create_encoder("tiny-blend", weights=str(tmp_path / "tiny-blend.safetensors"), precision="fp32")
    with torch.no_grad():
        expected = network.half().float()(encoder.preprocess(crops[:2]))
    assert np.allclose(encoder.forward(encoder.preprocess(crops[:2])).numpy(), expected.numpy(), atol=1e-5)
    # a changed weights file is refused, with the file named
    weights = tmp_path / "tiny-blend.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(AnalysisError, match="do not match the SHA-256"):
        create_encoder("tiny-blend", weights=str(weights))


def test_splice_net_trains_and_encodes_at_25_hz(register, tmp_path, face_clip):
    from models.analysis import AnalysisOptions, extract_features
    from models.settings import Settings

    spec = register(replace(get_spec("selfsplice-gru"), id="tiny-splice", arch={"width": 8, "hidden": 4}, dim=8))
    rng = np.random.default_rng(0)
    utterances = [(rng.normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32), "en-us", 150, 50) for _ in range(2)]
    network, metrics = pretrain_selfsplice(spec, utterances, utterances, PretextConfig(steps=2, batch_size=2,
                                                                                        blended_share=0.0))
    assert metrics["val_token_auc"] is None  # nothing spliced: no AUC, not a NaN
    save_project_encoder(network, spec, tmp_path, {})
    features = extract_features(face_clip, ["tiny-splice"], AnalysisOptions(
        cache=None, settings=Settings(weights={"tiny-splice": str(tmp_path / "tiny-splice.safetensors")})))
    assert features.features["tiny-splice"].shape == (50, 8)
    # continued pretraining starts from the saved weights, not from a fresh initialisation
    continued = PretextConfig(steps=1, batch_size=2, init=str(tmp_path / "tiny-splice.safetensors"), seed=99)
    start = initial_network(SpliceNet(**spec.arch), spec, continued)
    for name, value in network.state_dict().items():
        torch.testing.assert_close(start.state_dict()[name], value.half().float())


def test_missing_project_weights_say_how_to_get_them(register):
    register(replace(get_spec("selfblend-cnn"), id="absent-blend", weights="absent-blend.safetensors"))
    with pytest.raises(AnalysisError, match="pretrain absent-blend"):
        create_encoder("absent-blend")


def test_recorded_utterances_are_real_training_speech_and_splice_like_espeak_ones():
    from research.pretext import recorded_utterances, resynthesised, self_splice

    pieces = recorded_utterances(4, seed=3)
    assert len(pieces) == 4 and all(voice is None for _, voice, _, _ in pieces)
    assert all(2.5 <= len(audio) / SAMPLE_RATE <= 5.9 and np.isfinite(audio).all() for audio, *_ in pieces)
    other = resynthesised(pieces[0], np.random.default_rng(1), 5)
    assert len(other) > 0 and np.isfinite(other).all()
    spliced, labels = self_splice(pieces[0], np.random.default_rng(2), 7, pieces[1:])
    assert spliced.shape == pieces[0][0].shape and 0 < labels.sum() < len(labels)
    assert not np.array_equal(spliced, pieces[0][0])
