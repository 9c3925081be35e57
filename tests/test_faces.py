"""Face and mouth tracking on a real photo that a package ships, and crop geometry."""
import json
from pathlib import Path

import numpy as np
import pytest

from models.faces import CropGeometry, shot_cuts, track_faces
from research.synthetic import moving_astronaut

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


@pytest.fixture(scope="module")
def scene():
    return moving_astronaut(100, width=640, height=360, scale=0.6)


@pytest.fixture(scope="module")
def track(scene):
    return track_faces(scene.frames)


def test_face_found_in_nearly_every_step(track):
    assert track.found_fraction >= 0.95


def test_mouth_centre_within_ten_percent_of_face_width(scene, track):
    error = np.linalg.norm(track.mouth_centres - scene.mouth_xy, axis=1) / scene.face_width
    assert np.percentile(error, 95) <= 0.10, error.max()
    assert error.mean() <= 0.06


def test_crops_have_the_encoder_sizes(scene, track):
    faces = track.face_crops(scene.frames[:3])
    mouths = track.mouth_rois(scene.frames[:3])
    assert faces.shape == (3, 224, 224, 3) and faces.dtype == np.uint8
    assert mouths.shape == (3, 96, 96) and mouths.dtype == np.uint8
    # the mouth sits at the centre of its ROI: the lips are darker/redder than the cheeks around
    assert mouths[:, 40:56, 30:66].std() > 10


def test_strided_detection_tracks_in_between(scene):
    strided = track_faces(scene.frames, stride=5)
    full = track_faces(scene.frames)
    assert strided.found_fraction >= 0.95
    drift = np.linalg.norm(strided.mouth_centres - full.mouth_centres, axis=1)
    assert drift.max() < 0.1 * scene.face_width[0]


def test_parallel_trackers_give_the_same_track_as_one(scene):
    """Frames are detected independently, so splitting them over several mediapipe graphs
    (the default) changes nothing."""
    one, several = track_faces(scene.frames, workers=1), track_faces(scene.frames, workers=3)
    for name in ("face_boxes", "mouth_centres", "detected", "confidence"):
        assert np.array_equal(getattr(one, name), getattr(several, name)), name
    assert one.mouth_squares.keys() == several.mouth_squares.keys() == {"avhubert", "braven"}
    assert all(np.array_equal(one.mouth_squares[a], several.mouth_squares[a]) for a in one.mouth_squares)


def test_tracking_follows_the_face_close_to_detection_and_restarts_at_cuts(scene):
    """The mesh follows the face between detections: the same track on any number of
    workers, mouth within 3 % of the face width of per-step detection, the face picked up
    again after a gap, and a hard cut found."""
    full = track_faces(scene.frames)
    one, several = track_faces(scene.frames, workers=1, tracking=True), track_faces(scene.frames, workers=3,
                                                                                    tracking=True)
    assert np.array_equal(one.face_boxes, several.face_boxes) and one.found_fraction == 1.0
    drift = np.linalg.norm(one.mouth_centres - full.mouth_centres, axis=1)
    assert drift.max() < 0.03 * scene.face_width[0]
    frames = scene.frames.copy()
    frames[40:50] = frames[0, 0, 0]  # no face for 10 steps, then the face again
    gapped = track_faces(frames, tracking=True)
    assert (~gapped.detected).sum() == 10 and gapped.detected[50:].all()
    cut = scene.frames.copy()
    cut[60:] = 255 - cut[60:]  # another shot from step 60
    assert shot_cuts(cut) == {60} and shot_cuts(scene.frames) == set()


def test_steps_without_a_face_are_reported_and_interpolated(scene):
    frames = scene.frames.copy()
    frames[40:50] = frames[0, 0, 0]  # blank the frame: no face for 10 steps
    track = track_faces(frames)
    assert (39 < np.flatnonzero(~track.detected)).all() and (~track.detected).sum() == 10
    assert track.missing_spans() == [(40, 50)]
    assert any("no face in 10 of 100 steps" in w for w in track.warnings)
    # interpolated positions lie between the neighbours
    assert track.mouth_centres[39, 0] <= track.mouth_centres[45, 0] <= track.mouth_centres[50, 0]


def test_no_face_at_all_falls_back_to_the_centre():
    frames = np.full((5, 120, 160, 3), 90, np.uint8)
    track = track_faces(frames)
    assert track.found_fraction == 0 and "no face found" in track.warnings[0]
    assert track.face_crops(frames).shape == (5, 224, 224, 3)


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_crop_geometry_round_trip(angle):
    geometry = CropGeometry(centre_x=300, centre_y=150, side=120, angle=angle, frame_width=640,
                            frame_height=360, out_size=96)
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[145:156, 345:356] = 255  # a bright square 50 px right of the crop centre in the frame
    crop = geometry.extract(frame)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    back = geometry.crop_points_to_frame([[xs.mean(), ys.mean()]])[0] * [640, 360]
    assert np.allclose(back, [350, 150], atol=1.5)


def test_track_serialises_normalised(track):
    data = track.to_dict()
    assert len(data["face_boxes"]) == track.n_steps
    assert all(0 <= v <= 1 for box in data["face_boxes"] for v in box)


def test_large_soft_close_up_is_found_by_the_short_range_detector():
    """The visual-fake demo clip's upscaled LFW face fills much of the frame and is soft:
    the full-range detector alone finds it in no frame; with the short-range one behind it,
    every step is detected and the tracked mouth lies inside the manipulated mouth region."""
    from models.faces import shared_tracker
    from models.media import decode

    frames = np.asarray(decode(DEMO / "visual_fake.mp4").frames)
    full_range_only = shared_tracker(close_range=False)
    assert all(full_range_only.detect(frame) is None for frame in frames[::10])
    track = track_faces(frames)
    assert track.found_fraction == 1.0
    regions = json.loads((DEMO / "demo_regions.json").read_text())["visual_fake.mp4"]
    size = np.array([track.frame_width, track.frame_height])
    inside = [np.all((np.array(r["box"][:2]) <= track.mouth_centres[int(step)] / size)
                     & (track.mouth_centres[int(step)] / size <= np.array(r["box"][2:])))
              for step, r in regions.items()]
    assert np.mean(inside) >= 0.9


def test_the_mouth_points_are_smoothed_as_the_lip_encoders_preprocessing_smooths_them():
    """Each step's 68 points averaged with ±6 steps', then moved back to the step's own mean
    position: a face gliding across the frame keeps its mouth centre on the current frame
    (an accelerating glide, which a plain moving average would trail by about 4 px), while
    shape jitter of the lips is averaged away."""
    from models.faces import _reference_mouth_columns
    from models.landmarks import mean_face

    rng = np.random.default_rng(0)
    glide = (np.arange(30) ** 2)[:, None] * [0.3, 0.1]  # speeding up to the right and down
    points = [mean_face() + shift + rng.normal(0, 1.5, (68, 2)) * (np.arange(68)[:, None] >= 48)
              for shift in glide]
    columns = _reference_mouth_columns(points, 6)
    true_centres = mean_face()[48:68].mean(0) + glide
    lag = np.abs(columns[:, :2] - true_centres).max(axis=1)
    raw = np.abs(np.stack([p[48:68].mean(0) for p in points]) - true_centres).max(axis=1)
    assert lag[6:-6].mean() < 0.5 * raw[6:-6].mean() and lag.max() < 1.5  # jitter averaged, no drift behind the glide
    assert columns.shape == (30, 2 + 2 * 2) and np.allclose(columns[:, 2], 96, atol=3)  # mean-face size: side ≈ 96
