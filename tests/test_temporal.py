"""Temporal explanations: figure objects (not pixels) and localisation metrics."""
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from explain.figures import mel_extent, save_figure, temporal_figure
from explain.temporal import (
    TemporalExplanation,
    explain_scores,
    explain_temporal,
    leading_silence_share,
    localisation_metrics,
    predicted_segments,
    segment_iou,
    speech_onset_step,
    step_labels,
    top_peaks,
)
from explain.truth import read_truth
from models.errors import AnalysisError
from models.media import decode, write_test_clip
from models.probes import ProbeScores, logsumexp, sigmoid
from models.spectrogram import log_mel
from models.timing import SAMPLE_RATE, STEP_RATE
from tests.conftest import gradient_frames


def explanation(logits, modality="audio", truth=None, k=3, probe_id="probe") -> TemporalExplanation:
    logits = np.asarray(logits, float)
    video_score = logsumexp(logits)
    scores = ProbeScores(logits, sigmoid(2 * logits), video_score, float(sigmoid(2 * video_score)))
    return explain_scores(probe_id, modality, scores, truth, k=k)


def artists(figure, gid):
    found = []
    for ax in figure.axes:
        found += [a for a in ax.get_children() if a.get_gid() == gid]
    return found


def span_extent(patch) -> tuple[float, float]:
    xs = patch.get_path().vertices @ patch.get_patch_transform().get_matrix()[:2, :2].T
    xs = xs[:, 0] + patch.get_patch_transform().get_matrix()[0, 2]
    return float(xs.min()), float(xs.max())


def test_spike_at_step_t_is_drawn_at_t_over_25():
    logits = np.full(200, -1.0)
    logits[137] = 4.0
    figure = temporal_figure([explanation(logits)])
    curve = artists(figure, "logit-curve")[0]
    x, y = curve.get_xdata(), curve.get_ydata()
    assert x[np.argmax(y)] == pytest.approx(137 / 25)
    proba = artists(figure, "proba-curve")[0]
    assert proba.get_xdata()[np.argmax(proba.get_ydata())] == pytest.approx(137 / 25)


def test_shaded_spans_match_the_true_segments():
    truth = [(1.0, 2.2), (4.04, 5.0), (6.5, 7.0)]
    figure = temporal_figure([explanation(np.zeros(200), truth=truth)])
    spans = artists(figure, "true-segment")
    assert len(spans) == 2 * len(truth)  # on the score and the proba panel
    extents = sorted({tuple(round(v, 6) for v in span_extent(s)) for s in spans})
    assert extents == [tuple(round(v, 6) for v in seg) for seg in truth]


def test_markers_sit_at_the_top_k_peaks():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=300)
    logits[[20, 150, 280]] += 6
    figure = temporal_figure([explanation(logits, k=3)])
    marker = artists(figure, "peak-marker")[0]
    assert list(np.round(marker.get_xdata() * STEP_RATE).astype(int)) == [20, 150, 280]
    assert np.allclose(marker.get_ydata(), logits[[20, 150, 280]])


def test_top_peaks_are_separated():
    logits = np.zeros(100)
    logits[[10, 11, 12, 60]] = [5, 4.9, 4.8, 3]
    assert top_peaks(logits, k=2, min_gap_steps=5) == [10, 60]
    assert top_peaks(logits, k=3, min_gap_steps=1) == [10, 11, 12]


def test_zoomed_mel_windows_contain_the_peaks():
    audio = np.random.default_rng(1).normal(scale=0.1, size=8 * SAMPLE_RATE).astype(np.float32)
    logits = np.zeros(200)
    logits[[5, 100, 198]] = 3.0
    e = explanation(logits)
    figure = temporal_figure([e], audio=audio)
    zooms = [ax for ax in figure.axes if any(a.get_gid() == "mel-zoom" for a in ax.get_children())]
    assert len(zooms) == 3
    for ax, peak in zip(zooms, e.peaks):
        lo, hi = ax.get_xlim()
        assert lo <= peak / STEP_RATE <= hi and 0 <= lo and hi <= 8.0 + 1e-9
    mel = artists(figure, "mel")[0]
    assert mel.get_array().shape[0] == 128


def test_visual_probes_show_the_frames_at_the_peaks():
    frames = gradient_frames(100)
    logits = np.full(100, -2.0)
    logits[[10, 50]] = [2.0, 1.5]
    figure = temporal_figure([explanation(logits, modality="face", k=2)], frames=frames)
    shown = artists(figure, "peak-frame")
    assert len(shown) == 2
    assert [int(round(s.get_array().mean() / 4)) for s in shown] == [10, 50]
    titles = [ax.get_title() for ax in figure.axes if ax.get_title().startswith("▼")]
    assert titles[0].startswith("▼ 0.40 s: fake") and "real" not in titles[0]


@pytest.mark.parametrize("source_rate", [44100, 16000])
def test_spectrogram_and_curves_share_the_time_axis(tmp_path, source_rate):
    seconds, burst_start = 4.0, 1.52
    t = np.arange(int(seconds * source_rate)) / source_rate
    audio = np.where((t >= burst_start) & (t < burst_start + 0.4), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)
    path = write_test_clip(tmp_path / f"burst{source_rate}.mp4", gradient_frames(100), audio=audio.astype(np.float32),
                           audio_rate=source_rate)
    clip = decode(path)
    onset_step = speech_onset_step(clip.audio)
    assert abs(onset_step / STEP_RATE - burst_start) <= 1 / STEP_RATE
    mel = log_mel(clip.audio)
    left, right, _, _ = mel_extent(mel.shape[1])
    column_times = np.linspace(left, right, mel.shape[1], endpoint=False) + (right - left) / mel.shape[1] / 2
    loud = np.flatnonzero(mel.max(0) > mel.max() - 20)
    assert abs(column_times[loud[0]] - onset_step / STEP_RATE) <= 1 / STEP_RATE
    assert abs(right - seconds) <= 1 / STEP_RATE


def test_localisation_metrics_match_sklearn():
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    perfect, inverted, constant = labels * 2.0 - 1, 1 - labels * 2.0, np.zeros(8)
    for scores, auc in [(perfect, 1.0), (inverted, 0.0), (constant, 0.5)]:
        metrics = localisation_metrics([scores], [labels])
        assert metrics["pooled"]["auc"] == pytest.approx(roc_auc_score(labels, scores)) == pytest.approx(auc)
        assert metrics["pooled"]["ap"] == pytest.approx(average_precision_score(labels, scores))
    second = np.array([1, 1, 0, 0])
    mixed = localisation_metrics([perfect, np.array([0.1, 0.9, 0.5, 0.2])], [labels, second])
    both = np.concatenate([perfect, [0.1, 0.9, 0.5, 0.2]])
    assert mixed["pooled"]["auc"] == pytest.approx(roc_auc_score(np.concatenate([labels, second]), both))
    assert mixed["per_video"]["auc"] == pytest.approx((1.0 + roc_auc_score(second, [0.1, 0.9, 0.5, 0.2])) / 2)
    assert localisation_metrics([constant], [np.zeros(8, int)]) == {"pooled": None, "per_video": None}


def test_segments_labels_and_iou():
    probabilities = np.zeros(100)
    probabilities[10:20] = 0.9  # 0.4 s
    probabilities[50:52] = 0.9  # 0.08 s: shorter than the minimum
    assert predicted_segments(probabilities, 0.5, 0.2) == [(0.4, 0.8)]
    assert predicted_segments(probabilities, 0.5, 0.05) == [(0.4, 0.8), (2.0, 2.08)]
    labels = step_labels([(0.4, 0.8)], 100)
    assert labels.sum() == 10 and labels[10] == 1 and labels[20] == 0
    assert segment_iou([(0.4, 0.8)], [(0.6, 1.0)], 100) == pytest.approx(5 / 15)
    assert segment_iou([], [], 100) is None


def test_leading_silence_share():
    audio = np.zeros(4 * SAMPLE_RATE, np.float32)
    audio[SAMPLE_RATE:] = 0.3 * np.sin(np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE * 2 * np.pi * 200)
    logits = np.zeros(100)
    logits[:10] = 5.0  # the probe fires in the first 0.4 s, before speech at 1 s
    check = leading_silence_share(logits, audio, top_fraction=0.1)
    assert check["speech_onset_s"] == pytest.approx(1.0)
    assert check["share_in_leading_silence"] == 1.0 and check["silence_share_of_clip"] == 0.25


def test_ground_truth_from_av1m_metadata(tmp_path):
    video = tmp_path / "000123.mp4"
    video.write_bytes(b"")
    records = [{"file": "other.mp4", "fake_segments": []},
               {"file": "train/000123.mp4", "original": None, "split": "train", "modify_type": "both_modified",
                "fake_segments": [[1.0, 1.5]], "visual_fake_segments": [[1.0, 1.5]],
                "audio_fake_segments": [[1.2, 1.5]], "video_frames": 100, "audio_frames": 64000}]
    (tmp_path / "train_metadata.json").write_text(json.dumps(records))
    truth = read_truth(video)
    assert truth["modify_type"] == "both_modified" and truth["audio_fake_segments"] == [[1.2, 1.5]]
    (tmp_path / "000123.json").write_text(json.dumps({"fake_segments": [[2.0, 1.0]]}))
    with pytest.raises(AnalysisError, match="0 <= start < end"):
        read_truth(video)


def test_explain_temporal_on_an_analysis(face_clip, tmp_path):
    from models.analysis import AnalysisOptions, analyze

    np.save(tmp_path / "f.npy", np.random.default_rng(2).normal(size=(50, 1024)).astype(np.float32))
    result = analyze(face_clip, ["random@braven-large-v", "random@avhubert-large-a"],
                     AnalysisOptions(features={"braven-large-v": str(tmp_path / "f.npy"),
                                               "avhubert-large-a": str(tmp_path / "f.npy")}, cache=None))
    truth = {"fake_segments": [[0.4, 1.2]], "visual_fake_segments": [[0.4, 1.2]], "audio_fake_segments": []}
    explanations = explain_temporal(result, truth)
    assert [e.probe_id for e in explanations] == ["random@braven-large-v", "random@avhubert-large-a", "fusion"]
    assert explanations[0].truth == [(0.4, 1.2)] and explanations[1].truth == []
    assert explanations[0].metrics["localisation"]["pooled"]["steps"] == 50
    figure = temporal_figure(explanations, audio=result.clip.audio, frames=result.clip.frames)
    paths = save_figure(figure, tmp_path / "temporal")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)
    json.dumps([e.to_dict() for e in explanations])


def test_truth_file_with_two_records_of_the_same_name_is_refused(tmp_path):
    from explain.truth import load_truth_file

    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps([{"file": "a/x.mp4", "fake_segments": []}, {"file": "b/x.mp4", "fake_segments": []}]))
    with pytest.raises(AnalysisError, match="2 records named x.mp4"):
        load_truth_file(meta, "x.mp4")
    meta.write_text(json.dumps({"videos": []}))
    with pytest.raises(AnalysisError, match="not an AV-Deepfake1M record"):
        load_truth_file(meta, "x.mp4")
