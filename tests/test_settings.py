"""One settings object, one feature-cache key: analysis and extraction agree on it."""
from __future__ import annotations

import pickle

import pytest

from models.analysis import AnalysisOptions, analyze
from models.cache import FeatureCache
from models.encoders import get_spec
from models.media import MediaLimits
from models.settings import Settings
from research.datasets import Record
from research.extract import extract_dataset


def test_encoder_stride_is_part_of_the_key_of_per_frame_encoders_only():
    frame, audio = get_spec("random-clip-vit-b16"), get_spec("random-wav2vec2-xls-r-300m")
    assert Settings(precision="fp32", stride=5).cache_key(frame) != Settings(precision="fp32").cache_key(frame)
    assert Settings(precision="fp32", stride=5).cache_key(audio) == Settings(precision="fp32").cache_key(audio)


def test_working_frame_size_is_part_of_the_key_of_face_encoders_only():
    face, audio = get_spec("selfblend-cnn"), get_spec("selfsplice-gru")
    small = Settings(precision="fp32", limits=MediaLimits(frame_max_side=320))
    assert small.cache_key(face) != Settings(precision="fp32").cache_key(face)
    assert small.cache_key(audio) == Settings(precision="fp32").cache_key(audio)


def test_face_tracking_is_part_of_the_key_of_face_encoders_only():
    face, audio = get_spec("selfblend-cnn"), get_spec("selfsplice-gru")
    tracked = Settings(precision="fp32", face_tracking=True)
    assert tracked.cache_key(face) != Settings(precision="fp32").cache_key(face)
    assert tracked.cache_key(audio) == Settings(precision="fp32").cache_key(audio)


def test_key_follows_the_weights(tmp_path):
    spec = get_spec("selfsplice-gru")
    bundled = Settings(precision="fp32").cache_key(spec)
    other = tmp_path / "w.safetensors"
    other.write_bytes(b"x")
    assert Settings(precision="fp32", weights={spec.id: str(other)}).cache_key(spec) != bundled
    assert Settings(precision="fp32").cache_key(get_spec("random-selfsplice-gru")) == "3-d128-float32-faces1"


def test_settings_are_immutable_hashable_and_picklable():
    settings = Settings(weights={"b": "2", "a": "1"})
    with pytest.raises(AttributeError):
        settings.stride = 2
    assert settings == Settings(weights={"a": "1", "b": "2"}) and hash(settings) == hash(Settings(weights={"a": "1", "b": "2"}))
    assert pickle.loads(pickle.dumps(settings)) == settings  # extraction jobs cross process boundaries (Ray)
    assert settings.weights_for("a") == "1" and settings.weights_for("c") is None


@pytest.mark.slow
def test_extraction_fills_the_entries_analysis_reads(face_clip, tmp_path):
    """Features cached by dataset extraction are found by an analysis with the same settings."""
    cache = FeatureCache(tmp_path / "cache")
    settings = Settings(precision="fp32")
    report = extract_dataset([Record(path=str(face_clip), label=0, dataset="t", split="train", relative="c.mp4")],
                             ["selfsplice-gru"], cache, settings)
    assert report.failed == {}
    result = analyze(face_clip, ["demo/audio-selfsplice"], AnalysisOptions(settings=settings, cache=cache))
    assert "cache selfsplice-gru" in result.timings and "encoder selfsplice-gru" not in result.timings
