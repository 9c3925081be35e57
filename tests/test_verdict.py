"""Honest verdicts: a length-robust calibrated score, segments, the sync scorer, a sanity
check that can fail, and `uncertain` when the evidence cannot decide."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explain.spatial import explain_spatial
from explain.temporal import predicted_segments
from explain.verdict import build_verdict, clearly_real, headline
from models.analysis import AnalysisOptions, analyze
from models.calibration import Calibration, calibrate, clip_score, contrast, noise_scale
from models.faces import FaceTrack
from models.media import write_test_clip
from models.sync import MAX_LAG_STEPS, SYNC_SCORER_ID, estimate_sync
from models.timing import SAMPLE_RATE, SAMPLES_PER_STEP, STEP_RATE
from models.zoo import load_probe
from research.calibration import CALIBRATION_LENGTHS_S, fit_calibration
from research.evaluation import segment_metrics
from tests.conftest import gradient_frames

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"
BUNDLED = ("demo/audio-selfsplice", "demo/visual-selfblend")


@pytest.fixture(scope="module")
def real_demo():
    return analyze(DEMO / "real.mp4", list(BUNDLED), AnalysisOptions(cache=None))


@pytest.mark.parametrize("probe_id", BUNDLED)
def test_repeating_a_real_clip_ten_times_does_not_make_it_more_fake(real_demo, probe_id):
    probe = load_probe(probe_id)
    features = real_demo.features[probe.encoder_id]
    calibration = Calibration.from_card(probe.card)
    logits = probe.step_logits(features)
    once = calibrate(logits, calibration)
    tiled = calibrate(probe.step_logits(np.tile(features, (10, 1))), calibration)
    assert tiled.p_fake <= once.p_fake + 1e-9 and tiled.p_fake < tiled.calibration.threshold
    # the same strongest run in a clip ten times as long weighs less by the fitted log T term
    assert tiled.clip_score == pytest.approx(once.clip_score, abs=0.3)
    expected = calibration.probability(once.clip_score, 10 * len(logits))
    assert tiled.p_fake == pytest.approx(float(expected), abs=0.05)
    raw_once, raw_tiled = probe.score(features).p_fake, probe.score(np.tile(features, (10, 1))).p_fake
    assert raw_tiled > raw_once  # the paper's score, kept for parity, does grow with length


def test_bundled_probes_carry_a_fitted_calibration():
    for probe_id in BUNDLED:
        calibration = Calibration.from_card(load_probe(probe_id).card)
        assert calibration.fitted and 0.5 <= calibration.threshold < 1.0
        assert calibration.fit_on["lengths_s"] == list(CALIBRATION_LENGTHS_S)


def test_calibration_fit_separates_and_keeps_false_fakes_low():
    rng = np.random.default_rng(0)
    clips = [(rng.normal(-4, 0.5, 75), 0, []) for _ in range(30)]
    for _ in range(15):
        logits = rng.normal(-4, 0.5, 75)
        logits[30:50] += 7  # a planted 0.8 s fake segment
        clips.append((logits, 1, [[1.2, 2.0]]))
    calibration = fit_calibration(clips, {"dataset": "planted"})
    assert calibration.fitted and calibration.scale > 0
    rates = calibration.fit_on["validation_rates"]
    assert all(rate["false_fake"] <= 0.05 for rate in rates.values())
    assert rates["2s"]["detected"] > 0.9 and rates["120s"]["detected"] > 0.5


def test_uncalibrated_cards_use_the_papers_mapping_of_the_length_robust_score():
    logits = np.array([-1.0, 0.5, -2.0])
    calibrated = calibrate(logits, Calibration.from_card({"id": "x"}))
    assert not calibrated.calibration.fitted
    assert calibrated.p_fake == pytest.approx(1 / (1 + np.exp(-2 * clip_score(logits))))


def test_segments_merge_short_gaps_and_drop_short_runs():
    probabilities = np.zeros(100)
    probabilities[10:20] = 0.9
    probabilities[23:30] = 0.9  # a gap of 3 steps (0.12 s): merged
    probabilities[60:62] = 0.9  # 0.08 s: dropped
    assert predicted_segments(probabilities, 0.5, 0.2, 0.2) == [(0.4, 1.2)]
    assert predicted_segments(probabilities, 0.5, 0.2, 0.0) == [(0.4, 0.8), (0.92, 1.2)]


def test_only_baselines_give_an_uncertain_verdict():
    result = analyze(DEMO / "visual_fake.mp4", ["random@random-selfblend-cnn", "random@random-selfsplice-gru"],
                     AnalysisOptions(cache=None))
    verdict = build_verdict(result)
    assert verdict.label == "uncertain" and verdict.p_fake is None
    assert any("only baselines ran" in c for c in verdict.caveats)
    assert all(p.baseline for p in verdict.probes)


def test_verdict_of_the_bundled_set_names_its_caveats(real_demo):
    verdict = build_verdict(real_demo).to_dict()
    assert verdict["label"] in ("real", "fake", "uncertain")
    assert set(verdict["modalities"]) >= {"audio", "visual"}
    assert any("synthetic" in c for c in verdict["caveats"])
    json.dumps(verdict, allow_nan=False)


def test_sanity_check_fails_for_a_random_init_encoder_and_passes_for_the_trained_probe():
    result = analyze(DEMO / "visual_fake.mp4", ["demo/visual-selfblend", "random@random-selfblend-cnn"],
                     AnalysisOptions(cache=None))
    trained = explain_spatial(result, "demo/visual-selfblend", k=3).sanity
    random_init = explain_spatial(result, "random@random-selfblend-cnn", k=3).sanity
    assert trained["explains_model"] is True
    assert random_init["explains_model"] is False and random_init["parameter_randomisation_correlation"] > 0.99


def planted_track(openings: np.ndarray) -> FaceTrack:
    n = len(openings)
    return FaceTrack(face_boxes=np.tile([10.0, 10, 90, 90], (n, 1)), mouth_centres=np.tile([50.0, 70], (n, 1)),
                     mouth_squares={"avhubert": np.tile([34.0, 0.0], (n, 1))}, detected=np.ones(n, bool),
                     confidence=np.ones(n), frame_width=100, frame_height=100, mouth_openings=openings)


@pytest.mark.parametrize("offset_steps", [-15, -8, -3, 0, 3, 8, 15])
def test_sync_scorer_recovers_known_offsets_of_both_signs(offset_steps):
    """Syllable-like bursts; the mouth opens with the loudness, `offset_steps` later (video lags)."""
    rng = np.random.default_rng(7)
    n_steps = 250
    loudness = np.convolve(rng.random(n_steps + 40) > 0.7, np.ones(3) / 3, mode="same")
    audio = (np.repeat(loudness[20:20 + n_steps], SAMPLES_PER_STEP)
             * rng.standard_normal(n_steps * SAMPLES_PER_STEP) * 0.3).astype(np.float32)
    openings = 0.02 + 0.2 * loudness[20 - offset_steps:20 - offset_steps + n_steps] + rng.normal(0, 0.005, n_steps)
    result = estimate_sync(audio, planted_track(openings))
    assert abs(result.offset_s - offset_steps / STEP_RATE) <= 0.08
    assert result.reliable and result.flagged == (abs(offset_steps) / STEP_RATE >= 0.08)
    assert len(result.lag_correlations) == 2 * MAX_LAG_STEPS + 1 and len(result.step_agreement) == n_steps


def test_sync_scorer_is_unreliable_without_mouth_movement():
    audio = np.random.default_rng(0).standard_normal(10 * SAMPLE_RATE).astype(np.float32)
    result = estimate_sync(audio, planted_track(np.full(250, 0.03)))
    assert not result.reliable and not result.flagged


@pytest.mark.slow
def test_default_set_reports_the_sync_offset(tmp_path):
    result = analyze(DEMO / "visual_fake.mp4", [*BUNDLED, SYNC_SCORER_ID], AnalysisOptions(cache=None))
    assert result.sync is not None and abs(result.sync.offset_s) <= MAX_LAG_STEPS / STEP_RATE
    report = result.to_dict()
    assert report["sync"]["scorer"] == SYNC_SCORER_ID and len(report["sync"]["step_agreement"]) == \
        result.media.n_steps
    assert "sync" in build_verdict(result).modalities


def test_segment_metrics_score_exact_partial_and_missed_segments():
    truths = [[(1.0, 2.0)], [(0.0, 1.0)], None]
    exact = [[[0.9, 1.0, 2.0]], [[0.8, 0.0, 1.0]], [[0.1, 3.0, 4.0]]]  # the real video's proposal ranks last
    figures = segment_metrics(exact, truths)
    assert figures["true_segments"] == 2 and figures["ap"]["0.95"] == 1.0 and figures["ar"]["5"] == 1.0
    half = [[[0.9, 1.0, 1.5]], [[0.8, 0.0, 1.0]], []]  # IoU 0.5 for the first
    figures = segment_metrics(half, truths)
    assert figures["ap"]["0.5"] == 1.0 and figures["ap"]["0.75"] == 0.25 and figures["ar"]["5"] == pytest.approx(
        (1.0 + 0.5 + 0.5 + 0.5) / 4)
    assert segment_metrics([[]], [[]]) is None


def test_silent_audio_or_lost_face_gives_no_judgement_and_a_valid_report():
    for audio, openings in ((np.zeros(10 * SAMPLE_RATE, np.float32), np.linspace(0.01, 0.05, 250)),
                            (np.random.default_rng(0).standard_normal(10 * SAMPLE_RATE).astype(np.float32),
                             np.full(250, np.nan))):
        result = estimate_sync(audio, planted_track(openings))
        assert not result.reliable and not result.flagged
        entry = result.to_dict()
        json.dumps(entry, allow_nan=False)
        assert entry["offset_s"] is None


def test_sync_scorer_alone_is_refused_clearly():
    from models.errors import AnalysisError

    with pytest.raises(AnalysisError, match="runs beside probes"):
        analyze(DEMO / "real.mp4", [SYNC_SCORER_ID])


def test_calibration_fits_datasets_without_segments():
    """FakeAVCeleb-like labels: whole videos, no segments; the step mapping uses the video label."""
    rng = np.random.default_rng(1)
    clips = [(rng.normal(-4, 0.5, 75), 0, []) for _ in range(20)] + \
        [(rng.normal(-1, 0.5, 75), 1, []) for _ in range(20)]
    calibration = fit_calibration(clips, {"dataset": "whole-video labels"})
    assert calibration.fitted and calibration.step_scale > 0


def test_a_clip_without_a_face_gets_no_visual_verdict(tmp_path):
    """Out-of-range input decides nothing: with no face in any step the visual modality is
    uncertain whatever its probe scores, and the clip cannot be called real."""
    clip = write_test_clip(tmp_path / "no_face.mp4", gradient_frames(50, 160, 120))
    result = analyze(clip, ["demo/visual-selfblend"], AnalysisOptions(cache=None))
    verdict = build_verdict(result)
    assert verdict.modalities["visual"]["label"] == "uncertain"
    assert "a face was found in only 0 %" in verdict.modalities["visual"]["reason"]
    assert verdict.label == "uncertain" and any(c.startswith("visual: ") for c in verdict.caveats)


def test_the_apps_warm_up_takes_the_default_set_with_the_sync_scorer():
    """The app warms up the probes it ticks by default; the sync scorer is among them and has no encoder."""
    from models.analysis import warm_up
    from models.zoo import DEFAULT_SCORERS

    assert SYNC_SCORER_ID in DEFAULT_SCORERS
    warm_up(list(DEFAULT_SCORERS))  # raised "unknown probe 'sync/mouth-audio'" in the warm-up thread


def test_measured_real_false_fakes_above_target_become_a_caveat():
    from explain.verdict import real_recordings_warning

    card = {"metrics": {"generalisation": {"real_recordings": {"clips": 24, "single": 0.625},
                                           "targets": {"false_fake": 0.05}}}}
    warning = real_recordings_warning("demo/x", card)
    assert warning is not None and "24 real recordings" in warning and "62%" in warning
    card["metrics"]["generalisation"]["real_recordings"]["single"] = 0.04
    assert real_recordings_warning("demo/x", card) is None
    assert real_recordings_warning("demo/x", {}) is None


def test_bundled_probes_carry_their_measured_real_false_fakes_into_the_verdict(real_demo):
    caveats = build_verdict(real_demo).caveats
    for probe in real_demo.probes.values():
        measured = probe.card["metrics"]["generalisation"]["real_recordings"]["single"]
        named = any(c.startswith(f"{probe.probe_id}: on ") and "real recordings" in c for c in caveats)
        assert named == (measured > 0.05), (probe.probe_id, measured)


def test_the_contrast_score_ignores_a_shift_of_the_whole_clip_and_finds_a_bump():
    rng = np.random.default_rng(1)
    logits = rng.normal(-5, 0.3, 250)
    assert clip_score(logits + 3.0, "contrast") == pytest.approx(clip_score(logits, "contrast"))
    bumped = logits.copy()
    bumped[100:120] += 4.0  # 0.8 s standing out
    assert clip_score(bumped, "contrast") > clip_score(logits, "contrast") + 3.0
    assert clip_score(logits + 3.0) > clip_score(logits) + 2.9  # the log-mean-exp takes the shift as evidence


@pytest.mark.parametrize("length", [0, 1, 5, 38, 39, 76, 77, 78, 500])
def test_contrast_is_each_step_against_the_median_of_the_steps_within_its_window(length):
    from models.calibration import CONTRAST_HALF_WINDOW_S, contrast

    logits = np.random.default_rng(length).normal(-5, 1, length)
    half = int(round(CONTRAST_HALF_WINDOW_S * STEP_RATE))
    expected = [logits[t] - np.median(logits[max(0, t - half):t + half + 1]) for t in range(length)]
    assert np.allclose(contrast(logits), expected)


def test_a_cut_between_two_levels_is_no_segment_but_a_one_second_excursion_is():
    cut = np.r_[np.full(200, -6.0), np.full(200, -3.0)]
    assert clip_score(cut, "contrast") == pytest.approx(0.0, abs=1e-9)
    excursion = np.full(400, -6.0)
    excursion[200:225] = -3.0
    assert clip_score(excursion, "contrast") == pytest.approx(3.0)
    short = excursion[:4]  # shorter than a segment: its lowest contrast
    assert clip_score(short, "contrast") == pytest.approx(0.0)


def test_a_clip_above_every_real_validation_level_is_uncertain_not_real(real_demo):
    from dataclasses import replace

    probes = {}
    for pid, probe in real_demo.probes.items():
        calibration = Calibration.from_card(probe.card)
        assert calibration.score == "scaled-contrast" and calibration.level_limit is not None
        level = float(np.median(probe.scores.logits))
        card = {**probe.card, "calibration": {**probe.card["calibration"], "level_limit": level - 1.0}}
        probes[pid] = replace(probe, card=card)
    verdict = build_verdict(replace(real_demo, probes=probes))
    for group in ("audio", "visual"):
        modality = verdict.modalities[group]
        assert modality["label"] == "uncertain", modality
        assert "scores above every real clip the probe was calibrated on" in modality["reason"]
    assert verdict.label == "uncertain"


def test_contrast_calibration_records_its_score_and_the_real_level_limit():
    rng = np.random.default_rng(2)
    reals = [(rng.normal(level, 0.4, 90), 0, []) for level in rng.normal(-5, 0.5, 24)]
    fakes = []
    for level in rng.normal(-5, 0.5, 12):
        logits = rng.normal(level, 0.4, 90)
        logits[40:60] += 5
        fakes.append((logits, 1, [[1.6, 2.4]]))
    calibration = fit_calibration(reals + fakes, {"dataset": "planted"})
    assert calibration.score == "scaled-contrast" and "scaled-contrast" in calibration.method
    assert calibration.noise_floor == pytest.approx(np.median([noise_scale(contrast(c[0])) for c in reals]))
    assert Calibration.from_card({"calibration": calibration.to_card()}) == calibration
    assert calibration.level_limit == pytest.approx(max(float(np.median(c[0])) for c in reals))
    assert calibrate(reals[0][0] + 10.0, calibration).level_out_of_range
    assert not calibrate(reals[0][0] + 10.0, calibration).p_fake >= calibration.threshold  # a shift is no segment
    assert calibrate(fakes[0][0] + 10.0, calibration).p_fake >= calibration.threshold


def test_the_scaled_contrast_judges_a_peak_against_the_clips_own_noise():
    rng = np.random.default_rng(3)
    steady = rng.normal(-5, 0.3, 1500)
    wandering = -5 + 3 * (steady + 5)  # the same clip with three times the step noise
    assert clip_score(wandering, "contrast") > 2.5 * clip_score(steady, "contrast")  # plain: more noise, higher peak
    assert clip_score(wandering, "scaled-contrast") == pytest.approx(clip_score(steady, "scaled-contrast"))
    bumped = wandering.copy()
    bumped[700:720] += 3.0  # 0.8 s standing out by about 3 of the clip's noise units
    assert clip_score(bumped, "scaled-contrast") > clip_score(wandering, "scaled-contrast") + 2.0


def test_the_noise_floor_keeps_tiny_wobbles_of_a_steady_clip_from_becoming_peaks():
    rng = np.random.default_rng(4)
    still = rng.normal(-5, 1e-3, 250)
    still[100:110] += 0.05  # 50 × its own noise, but nothing against real footage's
    assert clip_score(still, "scaled-contrast") > 20
    assert clip_score(still, "scaled-contrast", noise_floor=0.3) < 0.2


@pytest.mark.parametrize("p_fake,threshold,real", [(0.2, 0.9, True), (0.3, 0.9, False), (0.6, 0.9, False),
                                                   (0.15, 0.5, True), (0.3, 0.5, False)])
def test_real_needs_odds_that_favour_real_not_only_a_score_under_a_high_threshold(p_fake, threshold, real):
    assert clearly_real(p_fake, threshold) == real


def test_one_probe_over_its_threshold_and_one_under_it_disagree():
    from explain.verdict import ProbeVerdict, _modality

    calibration = Calibration(scale=1.0, threshold=0.9, fitted=True, score="log-mean-exp")
    over, under = (calibrate(np.full(50, value), calibration) for value in (5.0, 0.0))  # P(fake) 0.99 and 0.5
    verdicts = [ProbeVerdict(name, "visual", scores, False, True) for name, scores in (("a", over), ("b", under))]
    assert _modality(verdicts, None) == {**_modality(verdicts, None), "label": "uncertain",
                                         "reason": "its probes disagree"}
    assert _modality(verdicts[1:], None)["reason"] == "under the threshold, but not clearly real"


def test_a_scaled_contrast_card_without_its_noise_floor_counts_as_uncalibrated():
    card = {"calibration": {"scale": 1.0, "shift": 0.0, "threshold": 0.8, "score": "scaled-contrast"}}
    assert not Calibration.from_card(card).fitted
    assert Calibration.from_card({"calibration": {**card["calibration"], "noise_floor": 0.5}}).fitted


@pytest.mark.parametrize("steps", [1, 5, 37, 38, 250])
def test_rows_of_clips_score_as_each_clip_alone(steps):
    """The deletion curves score hundreds of variants of a clip at once: each row's contrast,
    scaled evidence, strongest run and P(fake) are the ones that clip gets alone, at every
    length (shorter than the contrast window, at its edge, longer)."""
    from models.calibration import step_evidence, strongest_run

    rng = np.random.default_rng(steps)
    rows = rng.normal(size=(6, steps)) * rng.uniform(0.1, 3.0, size=(6, 1))
    rows[2, steps // 3:steps // 3 + 5] += 4.0
    assert np.array_equal(contrast(rows), np.stack([contrast(row) for row in rows]))
    for kind in ("contrast", "scaled-contrast"):
        evidence = step_evidence(rows, kind, 0.3)
        assert np.array_equal(evidence, np.stack([step_evidence(row, kind, 0.3) for row in rows]))
        assert np.array_equal(strongest_run(evidence), [strongest_run(row) for row in evidence])
    assert np.array_equal(noise_scale(rows), [noise_scale(row) for row in rows])
    calibration = Calibration(score="scaled-contrast", scale=1.5, shift=-0.5, noise_floor=0.3)
    expected = [float(calibration.probability(clip_score(row, "scaled-contrast", 0.3), steps)) for row in rows]
    assert np.allclose(calibration.clip_probabilities(rows), expected, rtol=0, atol=1e-15)


def test_the_headline_names_what_decided_a_label_the_shown_probability_does_not_explain():
    """audio_fake.mp4's voice swap shifts the mouth against the sound: the sync scorer calls the
    clip fake while the calibrated probes stay under their thresholds. The score beside the
    label names its modality and the modalities that made the call (it read as contradicting
    the label: "FAKE  P(fake) 0.393 (threshold 0.666)")."""
    result = analyze(DEMO / "audio_fake.mp4", [*BUNDLED, SYNC_SCORER_ID], AnalysisOptions(cache=None))
    verdict = build_verdict(result).to_dict()
    assert verdict["label"] == "fake" and verdict["modalities"]["sync"]["label"] == "fake"
    assert verdict["p_fake"] < verdict["threshold"]  # the shown probability alone would not say fake
    assert verdict["decided_by"] == ["sync"]
    shown = verdict["modalities"][verdict["p_fake_from"]]
    assert (shown["p_fake"], shown["threshold"]) == (verdict["p_fake"], verdict["threshold"])
    assert headline(verdict).endswith("decided by: sync") and f"({verdict['p_fake_from']})" in headline(verdict)


def test_an_uncertain_headline_names_no_decision():
    verdict = {"label": "uncertain", "p_fake": 0.4, "threshold": 0.6, "p_fake_from": "audio",
               "decided_by": ["audio"]}
    assert headline(verdict) == "calibrated P(fake) 0.400 · threshold 0.600 (audio)"
    assert headline({**verdict, "p_fake": None, "label": "fake", "decided_by": ["sync"]}) == "decided by: sync"
