"""The 68-point iBUG landmark scheme (dlib's), which AV-HuBERT's and BRAVEn's mouth crops
are defined on, from mediapipe's 468-point face mesh, and the mouth square both give.

The mouth square is the reference preprocessing's crop: the points' similarity onto the
mean face (`assets/landmarks/mean_face_68.npy`, 256 px), then a 96 px square of the
aligned face centred on the 20 lip points. In the frame that is a square centred on the
lip points, 96 / scale pixels wide, rotated as the similarity rotates. The two lip
encoders' authors fit the similarity differently (`MOUTH_ALIGNMENTS`): AV-HuBERT by least
squares on the nose tip and the four eye corners, BRAVEn by least median of squares on
those, the nose bridge and the mouth corners; their squares overlap by an IoU of about
0.9 on the same face, so each encoder gets its own.

`MESH_TO_IBUG68` names, for each iBUG point, the mesh point that stands for it. It was
fitted, not copied: `research/landmark_mapping.py` picks, for each iBUG point, the mesh
point with the smallest median distance to dlib's on faces both ran on (each identity
weighing alike);
`python -m benchmarks.bench_landmarks` measures it leaving one identity out
(docs/bench_landmarks.txt).
"""
from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from models.errors import AnalysisError

IBUG_EYE_OUTER = (36, 45)  # the subject's right eye's outer corner (image left), the left eye's
IBUG_MOUTH = slice(48, 68)  # outer lip contour 48-59, inner 60-67
MEAN_FACE_FILE = Path(__file__).resolve().parent.parent / "assets" / "landmarks" / "mean_face_68.npy"
MEAN_FACE_SHA256 = "dbf68b2044171e1160716df7c53e8bbfaa0ee8c61fb41171d04cb6092bb81422"
MEAN_FACE_CROP = 96  # the mouth crop's side in mean-face pixels
STABLE_POINTS = (33, 36, 39, 42, 45)  # nose tip and eye corners: what the similarity to the mean face is fitted on


@dataclass(frozen=True)
class MouthAlignment:
    """How a family's reference preprocessing fits the similarity onto the mean face."""

    stable_points: tuple[int, ...]
    robust: bool  # least median of squares (OpenCV's LMEDS) instead of least squares


MOUTH_ALIGNMENTS = {
    "avhubert": MouthAlignment(STABLE_POINTS, robust=False),  # av_hubert's align_mouth.py
    "braven": MouthAlignment((28, 33, 36, 39, 42, 45, 48, 54), robust=True),  # raven's extract_mouths.py
}
DEFAULT_ALIGNMENT = "avhubert"  # the mouth region shown in the app and reports
LANDMARK_SOURCES = ("mesh", "dlib")  # where the 68 points come from: the mapped mesh, or dlib's predictor
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
DLIB_INSTALL = "pip install dlib-bin==20.0.1 face-recognition-models==0.3.0 (its 68-point model: non-commercial use only)"

MESH_TO_IBUG68 = (
    34, 137, 177, 58, 172, 136, 149, 176, 152, 377, 378, 379, 397, 288, 361, 366, 356,  # 0-16: jaw
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # 17-26: brows
    168, 197, 5, 4, 59, 99, 2, 328, 305,  # 27-35: nose
    7, 160, 158, 155, 153, 144, 362, 385, 386, 249, 373, 380,  # 36-47: eyes
    61, 39, 37, 0, 267, 269, 306, 405, 314, 17, 84, 91, 62, 38, 12, 268, 407, 317, 14, 87,  # 48-67: lips
)


def ibug_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points from (468, 2) mesh points."""
    return np.asarray(mesh)[list(MESH_TO_IBUG68)]


@lru_cache(maxsize=1)
def mean_face() -> np.ndarray:
    """(68, 2) the mean face's iBUG points in its 256 px frame, checked against its SHA-256."""
    data = MEAN_FACE_FILE.read_bytes()
    if hashlib.sha256(data).hexdigest() != MEAN_FACE_SHA256:
        raise AnalysisError("the mean face the mouth crops are aligned to does not match its SHA-256.",
                            path=MEAN_FACE_FILE, hint="Restore assets/landmarks from the repository.")
    return np.load(MEAN_FACE_FILE, allow_pickle=False)


def similarity_to(points: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Scale and rotation (degrees, counter-clockwise as `roll_degrees`) of the least-squares
    similarity taking `points` onto `reference` (both (N, 2), image y down; Umeyama's
    closed form in 2-D)."""
    source, target = points - points.mean(0), reference - reference.mean(0)
    along = float((source * target).sum())
    across = float((source[:, 0] * target[:, 1] - source[:, 1] * target[:, 0]).sum())
    return float(np.hypot(along, across) / max(float((source ** 2).sum()), 1e-12)), float(np.degrees(np.arctan2(across, along)))


def mouth_square(ibug: np.ndarray, alignment: str = DEFAULT_ALIGNMENT) -> tuple[float, float, float, float]:
    """The mouth region of interest of 68 iBUG points as a family's reference preprocessing
    cuts it: centre (x, y) at the mean of the lip points, side 96 mean-face pixels at the
    scale of the similarity onto the mean face, and its roll (degrees, counter-clockwise)."""
    fit = MOUTH_ALIGNMENTS[alignment]
    stable = list(fit.stable_points)
    points = np.asarray(ibug, float)
    scale, roll = _robust_similarity(points[stable], mean_face()[stable]) if fit.robust else \
        similarity_to(points[stable], mean_face()[stable])
    centre = points[IBUG_MOUTH].mean(axis=0)
    return float(centre[0]), float(centre[1]), MEAN_FACE_CROP / max(scale, 1e-9), roll


def _robust_similarity(points: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Scale and roll of OpenCV's least-median-of-squares similarity (the least-squares one
    where it finds none)."""
    matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), reference.astype(np.float32),
                                            method=cv2.LMEDS)
    if matrix is None:
        return similarity_to(points, reference)
    return float(np.hypot(matrix[0, 0], matrix[1, 0])), float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def mouth_side_from_eyes(eye_distance: float) -> float:
    """The mouth square's side from the outer-eye-corner distance alone (no landmarks: the
    detector's keypoints), at the mean face's proportion."""
    eyes = mean_face()[list(IBUG_EYE_OUTER)]
    return MEAN_FACE_CROP * eye_distance / float(np.linalg.norm(eyes[1] - eyes[0]))


def roll_degrees(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """Counter-clockwise roll of the eye line (the subject's right eye is on the image left)."""
    dx, dy = left_eye - right_eye
    return float(-np.degrees(np.arctan2(dy, dx)))


def square_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two rotated squares given as `mouth_square` gives them."""
    polygons = [cv2.boxPoints(((x, y), (side, side), -angle)).astype(np.float32) for x, y, side, angle in (a, b)]
    inter, _ = cv2.intersectConvexConvex(*polygons)
    union = a[2] ** 2 + b[2] ** 2 - inter
    return float(inter / union) if union > 0 else 0.0


def predictor_path() -> Path:
    """The 68-point model file of `face-recognition-models`, or a clear error saying how to
    install it and dlib."""
    if importlib.util.find_spec("dlib") is None:
        raise AnalysisError("68-point landmarks from dlib were asked for, but dlib is not installed.",
                            hint=DLIB_INSTALL)
    spec = importlib.util.find_spec("face_recognition_models")
    path = Path(spec.origin).parent / "models" / PREDICTOR_FILE if spec and spec.origin else None
    if path is None or not path.exists():
        raise AnalysisError("68-point landmarks from dlib were asked for, but its landmark model is not installed.",
                            hint=DLIB_INSTALL)
    return path


class DlibLandmarks:
    """dlib's 68-point shape predictor, run in a box; the predictor is loaded once."""

    def __init__(self):
        import dlib  # lazy: optional, and only this landmark source needs it

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(predictor_path()))

    def points(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) pixel points of the face in `box` (x0, y0, x1, y1) of a grey image."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(gray, rect)
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], float)

    def points_near(self, frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """dlib's 68 points of the face the mesh found, in the box its own detector would give
        (about the bounding box of the mapped jaw and brow points)."""
        mapped = ibug_from_mesh(mesh)
        box = np.concatenate([mapped.min(axis=0), mapped.max(axis=0)])
        return self.points(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), box)


_shared_dlib: list[DlibLandmarks] = []
_shared_dlib_lock = threading.Lock()


def shared_dlib_landmarks() -> DlibLandmarks:
    """One dlib predictor for the process (every face tracker reads it; prediction does not
    change it), loaded on first use."""
    with _shared_dlib_lock:
        if not _shared_dlib:
            _shared_dlib.append(DlibLandmarks())
        return _shared_dlib[0]
