"""The 68-point iBUG scheme from the face mesh (and from dlib where installed), and the
mouth region the lip encoders see."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.encoders import get_spec
from models.errors import AnalysisError
from models.faces import CropGeometry, FaceTracker, track_faces
from models.landmarks import (
    IBUG_EYE_OUTER,
    MESH_TO_IBUG68,
    MOUTH_ALIGNMENTS,
    ibug_from_mesh,
    mean_face,
    mouth_square,
    square_iou,
)
from models.media import write_test_clip
from models.settings import Settings
from research.sources import source_path
from research.synthetic import moving_astronaut
from tests.cli_runner import run_cli

DLIB_REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "astronaut_dlib68.json").read_text())
HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models")


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo (RGB) and its 468 mesh points."""
    image = cv2.cvtColor(cv2.imread(str(source_path("astronaut"))), cv2.COLOR_BGR2RGB)
    tracker = FaceTracker()
    try:
        return image, tracker.mesh_points(image)
    finally:
        tracker.close()


def test_every_ibug_point_names_a_mesh_point():
    assert len(MESH_TO_IBUG68) == 68 and all(0 <= i < 468 for i in MESH_TO_IBUG68)
    assert len(set(MESH_TO_IBUG68)) == 68  # no two iBUG points collapse onto one mesh point


def test_the_mapped_mesh_lands_on_dlibs_points_and_mouth_region(astronaut):
    _, mesh = astronaut
    reference = np.array(DLIB_REFERENCE["points"])
    mapped = ibug_from_mesh(mesh)
    eye_distance = np.linalg.norm(reference[IBUG_EYE_OUTER[1]] - reference[IBUG_EYE_OUTER[0]])
    errors = np.linalg.norm(mapped - reference, axis=1) / eye_distance
    assert errors.mean() < 0.06 and errors[48:].mean() < 0.04  # docs/bench_landmarks.txt: 0.040 held out
    assert square_iou(mouth_square(mapped), mouth_square(reference)) > 0.85


def test_square_iou_of_shifted_and_rotated_squares():
    square = (50.0, 50.0, 20.0, 0.0)
    assert square_iou(square, square) == pytest.approx(1.0)
    assert square_iou(square, (60.0, 50.0, 20.0, 0.0)) == pytest.approx(200 / 600)  # half overlaps
    assert square_iou(square, (500.0, 50.0, 20.0, 0.0)) == 0.0
    assert 0.7 < square_iou(square, (50.0, 50.0, 20.0, 45.0)) < 0.8  # octagon 331 over 469


def test_the_tracks_mouth_centre_is_the_mean_of_the_mapped_lip_points():
    scene = moving_astronaut(3, width=480, height=320)
    tracker = FaceTracker()
    try:
        mesh = tracker.mesh_points(scene.frames[1])
    finally:
        tracker.close()
    track = track_faces(scene.frames)
    assert np.allclose(track.mouth_centres[1], ibug_from_mesh(mesh)[48:68].mean(axis=0), atol=1.0)  # smoothed


def test_mouth_encoders_key_their_cache_by_the_landmark_source():
    lips, face = get_spec("avhubert-large-v"), get_spec("selfblend-cnn")
    assert Settings().cache_key(lips) != Settings(landmarks="dlib").cache_key(lips)
    assert Settings().cache_key(face) == Settings(landmarks="dlib").cache_key(face)  # face crops do not move
    assert "-mouth" in Settings().cache_key(get_spec("avhubert-large-av"))


def test_an_unknown_landmark_source_is_refused_clearly():
    with pytest.raises(AnalysisError, match="unknown landmark source 'openface'"):
        Settings(landmarks="openface")


@pytest.mark.skipif(HAS_DLIB, reason="dlib is installed here: the refusal of a missing dlib cannot be shown")
def test_asking_for_dlib_without_it_says_how_to_install_it(tmp_path):
    clip = write_test_clip(tmp_path / "clip.mp4", moving_astronaut(25).frames)
    run = run_cli("analyze", clip, "--out", tmp_path / "out", "--landmarks", "dlib")
    assert run.returncode == 2 and "dlib is not installed" in run.stderr and "pip install dlib-bin" in run.stderr
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.skipif(not HAS_DLIB, reason="dlib-bin and face-recognition-models are not installed (optional)")
def test_dlib_in_the_box_the_mesh_gives_it_finds_its_own_points(astronaut):
    from models.landmarks import DlibLandmarks

    image, mesh = astronaut
    points = DlibLandmarks().points_near(image, mesh)
    assert np.abs(points - np.array(DLIB_REFERENCE["points"])).max() < 6.0
    assert np.linalg.norm(points - np.array(DLIB_REFERENCE["points"]), axis=1).mean() < 2.0


def test_the_mouth_strip_shows_what_the_lip_encoders_see_around_a_step():
    from explain.figures import MOUTH_STRIP_LABEL_PX, mouth_strip
    from models.faces import lip_view

    scene = moving_astronaut(12, width=480, height=320)
    track = track_faces(scene.frames)
    strip = mouth_strip(scene.frames, track, 1, width=7 * 64)
    assert strip.shape == (64 + MOUTH_STRIP_LABEL_PX, 7 * 64, 3)
    tiles = strip[MOUTH_STRIP_LABEL_PX:].reshape(64, 7, 64, 3).transpose(1, 0, 2, 3)
    assert tiles[0].max() == 24 and tiles[1].max() == 24  # steps -2 and -1 do not exist: dark
    expected = cv2.resize(lip_view(track.mouth_rois(scene.frames, [3]))[0], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(tiles[5][..., 0], expected)  # step 3, the lip encoders' 88 px view
    assert tuple(tiles[3][0, 32]) == (220, 30, 30)  # step 1 itself is framed in red


def test_a_frame_narrower_than_the_strip_gets_it_scaled_to_its_width():
    from explain.figures import mouth_strip

    scene = moving_astronaut(5, width=480, height=320)
    track = track_faces(scene.frames)
    assert mouth_strip(scene.frames, track, 2, width=40).shape[1:] == (40, 3)


def to_mean_face(points: np.ndarray, alignment: str) -> np.ndarray:
    """The 2 × 3 similarity the family's reference preprocessing fits onto the mean face:
    least squares written out (AV-HuBERT), OpenCV's least median of squares (BRAVEn)."""
    stable = list(MOUTH_ALIGNMENTS[alignment].stable_points)
    source, target = points[stable], mean_face()[stable]
    if alignment == "braven":
        return cv2.estimateAffinePartial2D(source.astype(np.float32), target.astype(np.float32), method=cv2.LMEDS)[0]
    ones, zeros = np.ones(len(stable)), np.zeros(len(stable))
    design = np.concatenate([np.stack([source[:, 0], -source[:, 1], ones, zeros], 1),
                             np.stack([source[:, 1], source[:, 0], zeros, ones], 1)])
    a, b, tx, ty = np.linalg.lstsq(design, np.concatenate([target[:, 0], target[:, 1]]), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


@pytest.mark.parametrize("alignment", ["avhubert", "braven"])
@pytest.mark.parametrize("scale, roll", [(0.6, 0.0), (0.8, 12.0), (1.3, -20.0)])
def test_the_mouth_square_cuts_what_the_reference_preprocessing_cuts(alignment, scale, roll):
    """The reference: the frame warped onto the mean face (256 px) by the family's
    similarity, then the 96 px square around the warped lip points. The square
    `mouth_square` gives, cut from the frame directly, holds the same pixels (up to the
    reference's whole-pixel centre), on a face at three scales and rolls with jittered
    landmarks and an open mouth."""
    rng = np.random.default_rng(int(scale * 10))
    theta = np.radians(-roll)  # image y points down: a counter-clockwise roll turns by -roll
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    face = mean_face().copy()
    face[[56, 57, 58, 65, 66, 67], 1] += 12  # the lower lip dropped: the mouth corners move the BRAVEn fit
    points = (face - 128) @ rotation.T * scale + [320, 200] + rng.normal(0, 0.7, (68, 2))
    frame = cv2.GaussianBlur(rng.integers(0, 256, (400, 640), dtype=np.uint8), (0, 0), 2.5)
    matrix = to_mean_face(points, alignment)
    warped = cv2.warpAffine(frame, matrix, (256, 256), flags=cv2.INTER_LINEAR)
    x, y = matrix[:, :2] @ points[48:68].mean(0) + matrix[:, 2]
    reference = warped[int(round(y)) - 48:int(round(y)) + 48, int(round(x)) - 48:int(round(x)) + 48]
    centre_x, centre_y, side, square_roll = mouth_square(points, alignment)
    assert side == pytest.approx(96 / np.hypot(*matrix[:, 0]), rel=1e-4) and square_roll == pytest.approx(roll, abs=2)
    ours = CropGeometry(centre_x, centre_y, side, square_roll, 640, 400, 96).extract(frame)
    # grey levels: here 0.5-1.5; a one-pixel shift of the reference 1.1-2.4; the earlier eye-distance square 8-9
    assert np.abs(ours.astype(float) - reference).mean() < 2.5
