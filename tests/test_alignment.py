"""Alignment of heatmaps with human clicks and with the generator's known regions."""
from __future__ import annotations

import json

import pytest

from explain.alignment import (
    align_clicks,
    alignment_figure,
    click_step,
    mae,
    mae_curve,
    random_point_hit_rate,
    spatial_benchmark,
    summarise,
    write_alignment,
)
from explain.annotations import Click
from models.analysis import AnalysisOptions, analyze

PROBE = "random@random-selfblend-cnn"


def test_mae_definition():
    assert mae((0.5, 0.5), (0.5, 0.5)) == 0
    assert mae((0.2, 0.4), (0.5, 0.5)) == pytest.approx((0.3 + 0.1) / 2)
    assert mae((1.0, 0.0), (0.0, 1.0)) == 1.0


def test_click_step_uses_time_then_frame_index():
    assert click_step(Click("v", 30, 0.1, 0.1, "a", time=0.5), fps=30, n_steps=100) == 12
    assert click_step(Click("v", 30, 0.1, 0.1, "a"), fps=30, n_steps=100) == 25
    assert click_step(Click("v", 9999, 0.1, 0.1, "a"), fps=25, n_steps=100) == 99


def test_align_clicks_on_a_video(face_clip, tmp_path):
    result = analyze(face_clip, [PROBE], AnalysisOptions(cache=None))
    clicks = [Click("face.mp4", f, x, 0.6, annotator) for f, x, annotator in
              [(5, 0.5, "ana"), (20, 0.4, "ana"), (20, 0.45, "bob")]]
    rows, explanation = align_clicks(result, PROBE, clicks)
    assert [r.step for r in rows] == [5, 20, 20]
    for row in rows:
        assert row.mae == pytest.approx(mae(row.peak, row.click))
        assert row.mae_hotspot == pytest.approx(mae(row.hotspot, row.click))
        assert row.mae_frame_centre == pytest.approx(mae((0.5, 0.5), row.click))
        x0, y0, x1, y1 = result.face_track.face_boxes[row.step]
        height, width = result.clip.frames.shape[1:3]
        assert row.face_centre == pytest.approx(((x0 + x1) / 2 / width, (y0 + y1) / 2 / height))
    per_annotator = summarise(rows, "annotator")
    assert per_annotator["ana"]["clicks"] == 2 and per_annotator["bob"]["clicks"] == 1
    curve = mae_curve(rows)
    assert [c["clicks"] for c in curve] == sorted([c["clicks"] for c in curve], reverse=True)
    assert curve[0]["clicks"] == 3
    figure = alignment_figure(result, rows, explanation)
    gids = [line.get_gid() for axis in figure.axes for line in axis.lines]
    assert gids.count("human-click") == 3 and gids.count("heatmap-peak") == 3 and "curve-mae" in gids
    assert gids.count("heatmap-hotspot") == 3 and "curve-mae_hotspot" in gids
    report = json.loads(write_alignment(rows, explanation.sanity, tmp_path).read_text())
    assert report["overall"]["clicks"] == 3 and "sanity" in report


def test_random_points_hit_the_box_area():
    assert random_point_hit_rate([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]]) == pytest.approx(0.25)


@pytest.mark.slow
def test_spatial_benchmark_on_generated_regions(tmp_path):
    from research.generator import generate

    description = generate(tmp_path, 4, seed=5, split="test", faces="heldout")  # clip 3 is a visual fake
    report = spatial_benchmark(description, "test", PROBE, every=4, options=AnalysisOptions(cache=None))
    assert report["videos"] == 1 and report["fake_steps"] > 3
    for key in ("pointing_game", "pointing_game_hotspot", "pointing_game_random_points"):
        assert 0.0 <= report[key] <= 1.0
    assert [stage["blocks"] for stage in report["randomisation_cascade"]] == [1, 2, 4]  # of the CNN's 4 stages
    assert all(len(stage["per_seed"]) == 3 and 0 <= stage["pointing_game"] <= 1
               for stage in report["randomisation_cascade"])
    assert report["mae_hotspot_to_region_centre"] < 0.5
    assert 0 < report["mae_frame_centre"] < 0.5
