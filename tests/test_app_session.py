"""The app's handlers called as the page calls them, in this process: staged results, no
stale state, cancel, repeat requests, annotation against the frame on screen, own points
first, imported points listed. (The browser suite drives the same through Chromium.)"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

import app
from explain.figures import mouth_strip
from models.timing import STEP_RATE

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"
BOTH = ["demo/audio-selfsplice", "demo/visual-selfblend"]


@pytest.fixture()
def annotations_db(tmp_path, monkeypatch):
    monkeypatch.setenv("AVXPLAIN_ANNOTATIONS_DB", str(tmp_path / "clicks.sqlite"))
    monkeypatch.setattr(app, "_STORE", None)
    yield
    app._STORE = None


def pick(x: int, y: int) -> gr.SelectData:
    """A click on an image at pixel (x, y), as the page sends it."""
    return gr.SelectData(None, {"index": [x, y], "value": None})


def answers(video: Path, probes: list[str], session=None) -> list[tuple]:
    """Every answer the page gets for one Analyse press: (session, 7 result components, progress)."""
    return list(app.run_analysis(str(video), session, probes, [], []))


def test_probe_picker_leads_with_the_bundled_set_and_keeps_baselines_apart():
    groups = app.probe_groups()
    defaults = app.default_probes(groups)
    baselines = {pid for _, pid in groups["baselines"]}
    assert set(defaults) == {"demo/audio-selfsplice", "demo/visual-selfblend", "sync/mouth-audio"}
    assert {pid for _, pid in groups["bundled"]} >= set(defaults)
    assert baselines and all(pid.startswith("random@") for pid in baselines) and not baselines & set(defaults)
    assert all(label.startswith("Baseline:") for label, _ in groups["baselines"])
    assert {e["id"] for e in app.api_probes() if e["baseline"]} == baselines
    text = app.banner(app.stand_in_probes(), defaults, ["random@random-selfblend-cnn"])
    demo_part, baseline_part = text.split("\n\n")
    assert "demo/visual-selfblend" in demo_part and "random@" not in demo_part
    assert "random@random-selfblend-cnn" in baseline_part and "left out of the verdict" in baseline_part


def test_results_arrive_stage_by_stage_audio_first():
    """Audio curves and their verdict, then every probe's, then the heatmaps; the progress line
    names what is still to come, and the last says how long it took."""
    views = [a for a in answers(DEMO / "visual_fake.mp4", BOTH) if isinstance(a[1], str) and "verdict-card" in a[1]]
    assert len(views) == 3
    first, second, final = views
    assert "demo/audio-selfsplice" in first[7] and "demo/visual-selfblend" not in first[7]
    assert "Still running" in first[1] and first[4] == []
    assert "demo/visual-selfblend" in second[7] and second[4] == [] and "Still running: heatmaps" in second[1]
    assert len(final[4]) == app.GALLERY_STEPS and "Still running" not in final[1] and "done in" in final[8]
    assert Path(final[3]).name == "temporal.png" and final[3] == second[3]  # the curves are drawn once


@pytest.mark.parametrize("probes, count", [(["demo/audio-selfsplice"], 1), (["demo/visual-selfblend"], 2),
                                            (BOTH, 3), (["demo/audio-selfsplice", "sync/mouth-audio"], 1)])
def test_the_progress_bar_counts_the_stages_the_run_has(probes, count):
    stages = app.plan_stages(probes)
    assert len(stages) == count and stages[-1].to_come == "" and all(s.to_come for s in stages[:-1])
    run = app.Run(None, stages=len(stages))
    at_the_start_of_the_last = app.progress_html(run, "x", None, stages_done=count - 1).split('value="')[1][:4]
    run.fraction = 0.5
    assert float(app.progress_html(run, "x", None, stages_done=count - 1).split('value="')[1][:4]) == \
        pytest.approx(min(0.99, (count - 0.5) / count), abs=0.01)
    assert float(at_the_start_of_the_last) == pytest.approx((count - 1) / count, abs=0.01)


def test_the_step_view_and_the_segment_chips_move_a_cursor_over_the_curves():
    """The time slider, a segment chip and a gallery click draw a cursor on the temporal
    figure at their time, on the panels of the shared time axis only."""
    session = answers(DEMO / "visual_fake.mp4", ["demo/visual-selfblend"])[-1][0]
    axis, curves = session.time_axis, session.curves
    early, _, _ = app.show_step(5, session)
    late, frame, text = app.show_step(80, session)
    changed = lambda image: np.flatnonzero((image != curves).any(axis=(0, 2)))  # noqa: E731 - columns drawn on
    width = curves.shape[1]
    assert changed(early).max() < changed(late).min()
    assert abs(changed(late).mean() / width - (axis.x0 + (axis.x1 - axis.x0) * (80 / 25) / axis.duration_s)) < 0.005
    height, width = session.result.clip.frames[80].shape[:2]
    assert "step 80," in text and frame.shape[1:] == (width, 3) and frame.shape[0] > height  # the mouth strip below
    strip = mouth_strip(session.result.clip.frames, session.result.face_track, 80, width)
    assert np.array_equal(frame[height:], strip)
    step, cursor, _, seek_text = app.seek_segment("1.00", session)
    assert step.value == 25 and "step 25," in seek_text and changed(cursor).size


def test_the_same_request_again_is_served_from_what_is_shown():
    session = answers(DEMO / "audio_fake.mp4", ["demo/audio-selfsplice"])[-1][0]
    shown = session.shown.outputs
    again = answers(DEMO / "audio_fake.mp4", ["demo/audio-selfsplice"], session)
    assert len(again) == 1 and again[0][1:8] == shown and "served from" in again[0][8]
    other = answers(DEMO / "audio_fake.mp4", BOTH, session)  # other probes: analysed, frames and features reused
    assert len(other) > 1 and "demo/visual-selfblend" in other[-1][7]


def test_an_error_replaces_the_results_and_names_the_file(tmp_path):
    session = answers(DEMO / "real.mp4", ["demo/audio-selfsplice"])[-1][0]
    broken = tmp_path / "holiday.mp4"
    broken.write_text("not a video at all\n" * 40)
    final = answers(broken, ["demo/audio-selfsplice"], session)[-1]
    card, segments, figure, gallery, files = final[1:6]
    assert "Could not analyse <b>holiday.mp4</b>" in card and "What to do" in card
    assert figure is None and gallery == [] and files == [] and final[0].result is None


def test_a_new_video_clears_both_tabs_and_stops_the_running_analysis():
    session = answers(DEMO / "visual_fake.mp4", ["demo/visual-selfblend"])[-1][0]
    running = session.start_run("x")
    cleared = app.new_video(str(DEMO / "real.mp4"), session)
    assert running.cancelled.is_set()
    assert cleared[0].result is None and cleared[0].shown is None and cleared[0].gallery == []
    assert cleared[1] == "" and cleared[3] is None and cleared[4] == [] and cleared[5] == []
    assert cleared[11] is None and cleared[13] == []  # the Annotate tab's frame and points table
    of_this_video = cleared[0].start_run(str(DEMO / "real.mp4"))  # started before the change event arrived
    app.new_video(str(DEMO / "real.mp4"), cleared[0])
    assert not of_this_video.cancelled.is_set()


def test_cancel_stops_the_run_and_the_next_one_works():
    run = app.run_analysis(str(DEMO / "both_fake.mp4"), None, BOTH, [], [])
    session = next(run)[0]
    assert "nothing is running" not in app.cancel_analysis(session)
    rest = list(run)
    assert "Analysis cancelled" in rest[-1][1] and "cancelled" in rest[-1][8]
    final = answers(DEMO / "both_fake.mp4", BOTH, session)[-1]
    assert "verdict-card" in final[1] and "done in" in final[8]


def test_a_click_is_stored_on_the_frame_on_screen_not_the_slider(annotations_db):
    """The page may send a click while the slider has moved on; the frame the annotator saw
    (the last one drawn) is the one stored."""
    session, _ = app.load_frames(str(DEMO / "real.mp4"), None)
    image, caption = app.annotation_frame(40, "ana", False, session)
    assert "step 40" in caption and image.shape == session.frames_clip().frames[40].shape
    height, width = image.shape[:2]
    app.record_click("ana", "lips", "2", False, session, pick(width // 4, height // 2))
    click = app.store().list(annotator="ana")[0]
    assert click.time == pytest.approx(40 / STEP_RATE) and click.frame_index == app.frame_of_step(40, 25.0)
    assert (click.x, click.y) == pytest.approx((0.25, 0.5), abs=0.01)


def test_an_annotator_sees_their_own_points_unless_they_ask(annotations_db):
    session, _ = app.load_frames(str(DEMO / "real.mp4"), None)
    for who, step in (("ana", 3), ("bob", 3), ("bob", 5)):
        app.annotation_frame(step, who, False, session)
        app.record_click(who, "", "1", False, session, pick(10, 10))
    assert [row[6] for row in app.clicks_table("ana", False, session)] == ["ana"]
    assert [row[6] for row in app.clicks_table("ana", True, session)] == ["ana", "bob", "bob"]
    own, _ = app.annotation_frame(3, "ana", False, session)
    everyone, _ = app.annotation_frame(3, "ana", True, session)
    assert (everyone != own).any()  # bob's marker appears only when asked


def test_imported_points_are_listed_drawn_and_used(annotations_db, tmp_path):
    session = answers(DEMO / "visual_fake.mp4", ["demo/visual-selfblend"])[-1][0]
    path = tmp_path / "team.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "username", "movie_name", "text", "dataset", "manipulation", "click_locations",
                         "difficulty", "split"])
        writer.writerow([7, "team", "visual_fake.mp4", "mouth edge", "demo", "faceswap",
                         json.dumps({"30": {"x": 0.5, "y": 0.7}, "35": {"x": 0.52, "y": 0.71}}), 2, "test"])
    text, frame, caption, table = app.import_clicks(str(path), False, "team", False, session)
    assert "Imported 2 clicks" in text and [(row[2], row[3]) for row in table] == [(30, 30), (35, 35)]
    drawn, _ = app.annotation_frame(30, "team", False, session)
    assert (drawn != session.frames_clip().frames[30]).any()
    summary, _ = app.alignment_view(session, None)
    assert "on 2 clicks" in summary
