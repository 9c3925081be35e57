"""Face and mouth tracking on the step clock, and the crops the encoders take.

Detection uses the weights bundled inside the mediapipe 0.10.21 wheel (BlazeFace
full-range detector, then the 468-point face mesh run on the enlarged face box), so
nothing is downloaded. By default every step is detected on its own; with `tracking`
the mesh runs on the region where the face was one step before, and the detector only
at the start of every second (KEYFRAME_STEPS), at a shot cut and wherever the mesh loses
the face: about 2.8× faster, but the crops move by a pixel or so, which moved the bundled
visual probe's step logits by up to 0.23 on the demo clips (docs/PERFORMANCE.md). Per
step we keep a face box, the mouth centre, the eye-line angle and scale; they are
smoothed over time, steps without a face are filled by interpolation and reported,
never dropped.

Crop conventions (documented choices):
- face crop: square, centred on the face box, side = 1.3 × the longer box side
  (FSFM's 30 % enlargement), resized to 224 px RGB, axis-aligned.
- mouth ROI: each lip encoder's reference preprocessing crop (`models.landmarks.mouth_square`,
  one per alignment): the 68 iBUG points' similarity onto the mean face gives the rotation
  and scale; a square of 96 mean-face pixels centred on the 20 lip points, 96 px
  grayscale, then centre-cropped to 88 px by the lip encoders (AV-HuBERT, BRAVEn). As in
  the reference, the 68 points are first averaged with ±6 steps' and moved back to the
  step's own mean position (where every detection has them). The 68 points come from the mesh
  (`models.landmarks.MESH_TO_IBUG68`) or, with `landmarks="dlib"`, from dlib's shape
  predictor where it is installed.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from models.landmarks import (
    DEFAULT_ALIGNMENT,
    IBUG_EYE_OUTER,
    LANDMARK_SOURCES,
    MOUTH_ALIGNMENTS,
    ibug_from_mesh,
    mouth_side_from_eyes,
    mouth_square,
    roll_degrees,
    shared_dlib_landmarks,
)
from models.media import StepFrames

FACE_CROP_SIZE = 224
FACE_CROP_ENLARGE = 1.3
MOUTH_ROI_SIZE = 96
MOUTH_ROI_CENTRE = 88
TRACKER_VERSION = 2  # raised whenever a clip's track changes (2: short-range detector where full-range finds none)
MOUTH_ROI_VERSION = 4  # raised whenever the mouth region changes (2: the 68 iBUG points; 3: mean-face scale and
#                        roll; 4: each lip encoder's own alignment)
KEYFRAME_STEPS = 25  # the detector runs at least once a second; the chunks between are tracked
SHOT_CUT_GREY_CHANGE = 40.0  # mean |Δ grey level| (0–255) of 32×18 thumbnails of consecutive steps at a cut
SMOOTHING_STEPS = 5  # centred moving-average window over detected steps
LIP_SMOOTHING_MARGIN = 6  # the lip encoders' preprocessing averages a frame's 68 points with ±6 frames' first
FACE_WORKERS = min(2, len(os.sched_getaffinity(0)))  # a mediapipe graph keeps about one core busy: one per core

# Face-mesh landmark indices (mediapipe canonical 468-point topology).
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MESH_EYE_OUTER = (33, 263)  # the mouth opening is the inner-lip gap in units of these two points' distance


@dataclass
class CropGeometry:
    """A square crop of a frame: centre and side in working-frame pixels, rotation in
    degrees (counter-clockwise), the frame size, and the output size in pixels."""

    centre_x: float
    centre_y: float
    side: float
    angle: float
    frame_width: int
    frame_height: int
    out_size: int

    def crop_to_frame_matrix(self) -> np.ndarray:
        """2×3 affine matrix taking crop pixel coordinates to frame pixel coordinates."""
        scale = self.side / self.out_size
        theta = np.deg2rad(self.angle)
        cos, sin = np.cos(theta) * scale, np.sin(theta) * scale
        half = self.out_size / 2
        # Crop axes are the frame axes rotated by -angle (image y points down).
        return np.array([[cos, sin, self.centre_x - cos * half - sin * half],
                         [-sin, cos, self.centre_y + sin * half - cos * half]])

    def crop_points_to_frame(self, points: np.ndarray) -> np.ndarray:
        """Crop pixel (x, y) points → normalised full-frame coordinates (0..1, origin top-left)."""
        points = np.atleast_2d(np.asarray(points, float))
        frame_xy = points @ self.crop_to_frame_matrix()[:, :2].T + self.crop_to_frame_matrix()[:, 2]
        return frame_xy / np.array([self.frame_width, self.frame_height])

    def extract(self, frame: np.ndarray) -> np.ndarray:
        """Cut this crop out of `frame` (pixels outside the frame are black)."""
        frame_to_crop = cv2.invertAffineTransform(self.crop_to_frame_matrix())
        return cv2.warpAffine(frame, frame_to_crop, (self.out_size, self.out_size), flags=cv2.INTER_AREA
                              if self.side > self.out_size else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@dataclass
class FaceTrack:
    """Per-step face and mouth geometry, in working-frame pixels."""

    face_boxes: np.ndarray  # (T, 4) x0, y0, x1, y1
    mouth_centres: np.ndarray  # (T, 2) x, y
    mouth_squares: dict[str, np.ndarray]  # alignment (MOUTH_ALIGNMENTS) → (T, 2): the square's side (px), roll (°)
    detected: np.ndarray  # (T,) bool: a face was detected at this step
    confidence: np.ndarray  # (T,) detector score, 0 where not detected
    frame_width: int
    frame_height: int
    warnings: list[str] = field(default_factory=list)
    # (T,) inner-lip gap over the eye distance, unsmoothed (lip sync needs its timing); NaN
    # where no face mesh was found, interpolated between
    mouth_openings: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return len(self.detected)

    @property
    def found_fraction(self) -> float:
        return float(self.detected.mean()) if self.n_steps else 0.0

    def missing_spans(self) -> list[tuple[int, int]]:
        """Runs of steps without a detection, as [start, end) step ranges."""
        spans, start = [], None
        for step, found in enumerate(list(self.detected) + [True]):
            if not found and start is None:
                start = step
            elif found and start is not None:
                spans.append((start, step))
                start = None
        return spans

    def face_geometry(self, step: int, out_size: int = FACE_CROP_SIZE) -> CropGeometry:
        x0, y0, x1, y1 = self.face_boxes[step]
        side = FACE_CROP_ENLARGE * max(x1 - x0, y1 - y0)
        return CropGeometry((x0 + x1) / 2, (y0 + y1) / 2, side, 0.0, self.frame_width, self.frame_height, out_size)

    def mouth_geometry(self, step: int, out_size: int = MOUTH_ROI_SIZE,
                       alignment: str = DEFAULT_ALIGNMENT) -> CropGeometry:
        x, y = self.mouth_centres[step]
        side, roll = self.mouth_squares[alignment][step]
        return CropGeometry(x, y, side, roll, self.frame_width, self.frame_height, out_size)

    def face_crops(self, frames: np.ndarray, out_size: int = FACE_CROP_SIZE) -> StepFrames:
        """(T, out, out, 3) uint8 RGB face crops, kept in a temporary file as the frames are
        (a 10-min clip's crops are 2.3 GB); indexes like an array."""
        crops = StepFrames(out_size, out_size)
        for t in range(len(frames)):
            crops.append(self.face_geometry(t, out_size).extract(frames[t]))
        return crops

    def mouth_rois(self, frames: np.ndarray, steps: Sequence[int] | None = None,
                   alignment: str = DEFAULT_ALIGNMENT) -> np.ndarray:
        """(N, 96, 96) uint8 grayscale mouth regions of `steps` (default: every step) as
        `alignment` cuts them; the lip encoders see their centre (`lip_view`)."""
        steps = range(len(frames)) if steps is None else steps
        return np.stack([cv2.cvtColor(self.mouth_geometry(t, alignment=alignment).extract(frames[t]),
                                      cv2.COLOR_RGB2GRAY) for t in steps])

    def to_dict(self) -> dict:
        """Per-step geometry in normalised frame coordinates, for reports."""
        size = np.array([self.frame_width, self.frame_height] * 2, float)
        return {
            "found_fraction": round(self.found_fraction, 4),
            "missing_steps": [list(span) for span in self.missing_spans()],
            "face_boxes": np.round(self.face_boxes / size, 4).tolist(),
            "mouth_centres": np.round(self.mouth_centres / size[:2], 4).tolist(),
            "detected": self.detected.astype(int).tolist(),
            "confidence": np.round(self.confidence, 3).tolist(),
            "mouth_openings": (None if self.mouth_openings is None
                               else [None if np.isnan(v) else round(float(v), 4) for v in self.mouth_openings]),
        }


@dataclass
class _Detection:
    box: np.ndarray  # x0, y0, x1, y1 in pixels
    mouth: np.ndarray
    eye_distance: float  # between the outer eye corners
    mouth_squares: dict[str, tuple[float, float]]  # alignment → the mouth square's side and roll
    score: float
    opening: float = float("nan")  # inner-lip gap / eye distance; NaN without the face mesh
    # where the mesh region sits relative to the mesh box (centre offset in box sides, side ratio):
    # the detector box's place, carried to the next steps so a tracked mesh sees the face as detected
    region_anchor: tuple[float, float, float] | None = None
    ibug: np.ndarray | None = None  # (68, 2) the face's iBUG points; None from the detector's keypoints alone

    def next_region(self) -> np.ndarray:
        """The box to run the mesh on at the next step: this step's mesh box, placed and
        sized as the detector's box was around it."""
        dx, dy, ratio = self.region_anchor
        side = max(self.box[2] - self.box[0], self.box[3] - self.box[1])
        centre_x = (self.box[0] + self.box[2]) / 2 + dx * side
        centre_y = (self.box[1] + self.box[3]) / 2 + dy * side
        half = ratio * side / 2
        return np.array([centre_x - half, centre_y - half, centre_x + half, centre_y + half])


class FaceTracker:
    """Detects one face (the most confident) per frame with mediapipe's bundled models.
    Each frame is detected on its own (no state carries over), so several trackers may
    share a clip's frames and give the same result as one.

    The full-range detector (faces up to ~5 m, small in the frame) runs first; where it
    finds nothing, the short-range one (within ~2 m) gets the frame: large, soft close-ups,
    common in talking-head clips, are what the full-range model misses (it found faces in
    48 % of the frames of the synthetic benchmark, the pair in 100 %). `close_range=False`
    keeps the full-range model alone (the synthetic generator's face bank, so its clips
    stay byte-identical)."""

    def __init__(self, min_confidence: float = 0.5, close_range: bool = True, landmarks: str = "mesh"):
        import mediapipe as mp  # lazy: mediapipe and its TF Lite runtime take ~1 s; only face tracking needs them

        if landmarks not in LANDMARK_SOURCES:
            raise ValueError(f"unknown landmark source {landmarks!r}; one of {LANDMARK_SOURCES}")
        self._dlib = shared_dlib_landmarks() if landmarks == "dlib" else None  # a clear error when dlib is absent

        self._lock = threading.Lock()  # a mediapipe graph is not thread-safe; separate graphs run in parallel

        self._detectors = [mp.solutions.face_detection.FaceDetection(
            model_selection=selection, min_detection_confidence=min_confidence)
            for selection in ((1, 0) if close_range else (1,))]  # 1: full range, 0: short range
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3)

    def close(self) -> None:
        for detector in self._detectors:
            detector.close()
        self._mesh.close()

    def _detections(self, frame: np.ndarray) -> list:
        """The faces of the first detector that finds any (none: [])."""
        with self._lock:
            for detector in self._detectors:
                found = detector.process(frame).detections
                if found:
                    return found
        return []

    def _best_face(self, frame: np.ndarray) -> tuple | None:
        """The most confident detection in one RGB frame and its box in pixels, or None."""
        height, width = frame.shape[:2]
        found = self._detections(frame)
        if not found:
            return None
        best = max(found, key=lambda d: d.score[0])
        rel = best.location_data.relative_bounding_box
        return best, np.array([rel.xmin * width, rel.ymin * height,
                               (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height])

    def mesh_points(self, frame: np.ndarray) -> np.ndarray | None:
        """The 468 mesh points (pixels) of the most confident face in one RGB frame, or None."""
        face = self._best_face(frame)
        return None if face is None else self._mesh_landmarks(frame, face[1])

    def detect(self, frame: np.ndarray) -> _Detection | None:
        """The most confident face in one RGB frame, or None."""
        height, width = frame.shape[:2]
        face = self._best_face(frame)
        if face is None:
            return None
        best, box = face
        landmarks = self._mesh_landmarks(frame, box)
        if landmarks is None:
            return self._from_keypoints(best, box, width, height)
        detection = _from_landmarks(landmarks, self._ibug(frame, landmarks), float(best.score[0]))
        side = max(detection.box[2] - detection.box[0], detection.box[3] - detection.box[1])
        offset = ((box[:2] + box[2:]) - (detection.box[:2] + detection.box[2:])) / 2 / max(side, 1e-6)
        detection.region_anchor = (float(offset[0]), float(offset[1]),
                                   float(max(box[2] - box[0], box[3] - box[1]) / max(side, 1e-6)))
        return detection

    def track(self, frame: np.ndarray, previous: _Detection | None) -> _Detection | None:
        """The face in `frame` following `previous` (the face one step before): the mesh runs
        where that face was; the detector only without a previous mesh face or where the mesh
        loses it."""
        if previous is None or previous.region_anchor is None:
            return self.detect(frame)
        landmarks = self._mesh_landmarks(frame, previous.next_region())
        if landmarks is None:
            return self.detect(frame)
        tracked = _from_landmarks(landmarks, self._ibug(frame, landmarks), previous.score)
        tracked.region_anchor = previous.region_anchor
        return tracked

    def _ibug(self, frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """The 68 iBUG points of the face the mesh found: mapped from the mesh, or dlib's."""
        return ibug_from_mesh(mesh) if self._dlib is None else self._dlib.points_near(frame, mesh)

    def _mesh_landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """468 landmark pixel positions from the mesh run on the face box enlarged ×1.8."""
        geometry = CropGeometry((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.8 * max(box[2] - box[0],
                                box[3] - box[1]), 0.0, frame.shape[1], frame.shape[0], 256)
        crop = geometry.extract(frame)
        with self._lock:
            result = self._mesh.process(crop).multi_face_landmarks
        if not result:
            return None
        points = np.array([(p.x * 256, p.y * 256) for p in result[0].landmark])
        return geometry.crop_points_to_frame(points) * np.array([frame.shape[1], frame.shape[0]])

    @staticmethod
    def _from_keypoints(detection, box: np.ndarray, width: int, height: int) -> _Detection:
        """Mouth and eyes from the detector's six keypoints when the mesh fails."""
        keypoints = np.array([(k.x * width, k.y * height) for k in detection.location_data.relative_keypoints])
        right_eye, left_eye, mouth = keypoints[0], keypoints[1], keypoints[3]
        eye_distance = 1.45 * float(np.linalg.norm(left_eye - right_eye))  # pupils → outer corners
        square = (mouth_side_from_eyes(eye_distance), roll_degrees(right_eye, left_eye))
        return _Detection(box, mouth, eye_distance, dict.fromkeys(MOUTH_ALIGNMENTS, square), float(detection.score[0]))


def _from_landmarks(landmarks: np.ndarray, ibug: np.ndarray, score: float) -> _Detection:
    """Face box and lip gap from the 468 mesh landmarks, mouth and eye line from the face's
    68 iBUG points (pixels): the very square `mouth_square` gives, whose agreement with dlib's
    bench_landmarks measures."""
    squares = {alignment: mouth_square(ibug, alignment) for alignment in MOUTH_ALIGNMENTS}
    x, y = squares[DEFAULT_ALIGNMENT][:2]  # the lip points' mean, whatever the alignment
    eye_distance = float(np.linalg.norm(ibug[IBUG_EYE_OUTER[1]] - ibug[IBUG_EYE_OUTER[0]]))
    mesh_box = np.concatenate([landmarks.min(0), landmarks.max(0)])
    gap = float(np.linalg.norm(landmarks[LOWER_INNER_LIP] - landmarks[UPPER_INNER_LIP]))
    mesh_eyes = float(np.linalg.norm(landmarks[MESH_EYE_OUTER[1]] - landmarks[MESH_EYE_OUTER[0]]))
    sides_and_rolls = {alignment: square[2:] for alignment, square in squares.items()}
    return _Detection(mesh_box, np.array([x, y]), eye_distance, sides_and_rolls, score, gap / max(mesh_eyes, 1e-6),
                      ibug=ibug)


_shared_trackers: dict[tuple[bool, str], list[FaceTracker]] = {}
_shared_trackers_lock = threading.Lock()


def shared_trackers(count: int, close_range: bool = True, landmarks: str = "mesh") -> list[FaceTracker]:
    """`count` trackers kept for the life of the process (building the mediapipe graphs
    costs about a second each)."""
    with _shared_trackers_lock:
        pool = _shared_trackers.setdefault((close_range, landmarks), [])
        while len(pool) < count:
            pool.append(FaceTracker(close_range=close_range, landmarks=landmarks))
        return pool[:count]


def shared_tracker(close_range: bool = True) -> FaceTracker:
    return shared_trackers(1, close_range)[0]


def track_faces(frames: np.ndarray, stride: int = 1, workers: int = FACE_WORKERS, progress=None,
                tracking: bool = False, landmarks: str = "mesh") -> FaceTrack:
    """Find the face at every `stride`-th step, on `workers` trackers at once (the result
    does not depend on how many), smooth, and fill gaps by interpolation. Each sampled step
    is detected on its own; with `tracking` (every step) the steps go in chunks of
    KEYFRAME_STEPS that start with a detection, and the face is followed within a chunk
    (detected again at a shot cut or where the mesh loses it). `landmarks` says where the
    68 points of the mouth region come from (LANDMARK_SOURCES)."""
    n_steps, height, width = frames.shape[:3]
    steps = list(range(0, n_steps, max(1, stride)))
    if steps[-1] != n_steps - 1:
        steps.append(n_steps - 1)
    tracking = tracking and stride == 1
    chunks = [steps[i:i + KEYFRAME_STEPS] for i in range(0, len(steps), KEYFRAME_STEPS)] if tracking \
        else [[step] for step in steps]
    cuts = shot_cuts(frames) if tracking else set()
    trackers = shared_trackers(max(1, min(workers, len(chunks))), landmarks=landmarks)
    done = itertools.count(1)

    def follow(tracker: FaceTracker, share: list[list[int]]) -> dict[int, _Detection]:
        found = {}
        for chunk in share:
            previous = None
            for step in chunk:
                previous = tracker.track(frames[step], None if step in cuts else previous)
                if previous is not None:
                    found[step] = previous
                if progress:
                    progress(next(done) / len(steps))
        return found

    shares = [chunks[index::len(trackers)] for index in range(len(trackers))]
    with ThreadPoolExecutor(len(trackers)) as pool:
        shares_found = list(pool.map(follow, trackers, shares))
    detections = {step: found for share in shares_found for step, found in share.items()}
    return _build_track(detections, n_steps, width, height, stride)


def shot_cuts(frames: np.ndarray) -> set[int]:
    """Steps whose frame differs from the one before as a cut does (tracking restarts there)."""
    thumbnails = np.stack([cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 18), interpolation=cv2.INTER_AREA)
                           for frame in frames]).astype(np.float32)
    change = np.abs(np.diff(thumbnails, axis=0)).mean(axis=(1, 2))
    return {int(step) + 1 for step in np.flatnonzero(change > SHOT_CUT_GREY_CHANGE)}


def _build_track(detections: dict[int, _Detection], n_steps: int, width: int, height: int,
                 stride: int) -> FaceTrack:
    detected = np.zeros(n_steps, bool)
    confidence = np.zeros(n_steps)
    openings = np.full(n_steps, np.nan)
    warnings = []
    if not detections:
        side = 0.6 * min(width, height)
        box = np.array([(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2])
        params = np.tile(np.concatenate([box, [width / 2, height * 0.62], [side * 0.45, 0.0] * len(MOUTH_ALIGNMENTS)]),
                         (n_steps, 1))
        warnings.append("no face found in any step: crops fall back to the frame centre")
    else:
        known = np.array(sorted(detections))
        values = np.array([np.concatenate([found.box, found.mouth, *[found.mouth_squares[a] for a in MOUTH_ALIGNMENTS]])
                           for found in (detections[s] for s in known)])
        values = _smooth(values, SMOOTHING_STEPS // max(1, stride))
        if all(detections[s].ibug is not None for s in known):
            values[:, 4:] = _reference_mouth_columns([detections[s].ibug for s in known],
                                                     LIP_SMOOTHING_MARGIN // max(1, stride))
        params = np.stack([np.interp(np.arange(n_steps), known, values[:, j]) for j in range(values.shape[1])], 1)
        for step, found in detections.items():
            confidence[step] = found.score
        openings = _interpolate_gaps(np.array([detections.get(s).opening if s in detections else np.nan
                                               for s in range(n_steps)]))
        detected = _detected_mask(known, n_steps, stride)
        missing = int((~detected).sum())
        if missing:
            warnings.append(f"no face in {missing} of {n_steps} steps: those steps are interpolated")
    squares = {alignment: params[:, 6 + 2 * index:8 + 2 * index] for index, alignment in enumerate(MOUTH_ALIGNMENTS)}
    return FaceTrack(face_boxes=params[:, :4], mouth_centres=params[:, 4:6], mouth_squares=squares,
                     detected=detected, confidence=confidence, frame_width=width,
                     frame_height=height, warnings=warnings, mouth_openings=openings)


def _reference_mouth_columns(points: list[np.ndarray], margin: int) -> np.ndarray:
    """Per detected step, the mouth centre and every alignment's square (side, roll), from
    the 68 points smoothed as the lip encoders' preprocessing smooths them: averaged with
    ±`margin` steps (fewer near the ends), then moved back so their mean is this step's."""
    stack = np.stack(points)  # (K, 68, 2)
    rows = []
    for index in range(len(stack)):
        reach = min(margin, index, len(stack) - 1 - index)
        smoothed = stack[index - reach:index + reach + 1].mean(0)
        smoothed += stack[index].mean(0) - smoothed.mean(0)
        squares = [mouth_square(smoothed, alignment) for alignment in MOUTH_ALIGNMENTS]
        rows.append([*squares[0][:2], *(value for square in squares for value in square[2:])])
    return np.array(rows)


def lip_view(rois: np.ndarray) -> np.ndarray:
    """The centre MOUTH_ROI_CENTRE px of (N, 96, 96) mouth regions: what the lip encoders see."""
    margin = (MOUTH_ROI_SIZE - MOUTH_ROI_CENTRE) // 2
    return rois[:, margin:margin + MOUTH_ROI_CENTRE, margin:margin + MOUTH_ROI_CENTRE]


def _interpolate_gaps(values: np.ndarray) -> np.ndarray:
    """NaNs filled linearly from their known neighbours (all NaN stays all NaN)."""
    known = ~np.isnan(values)
    if not known.any() or known.all():
        return values
    steps = np.arange(len(values))
    return np.interp(steps, steps[known], values[known])


def _detected_mask(known: np.ndarray, n_steps: int, stride: int) -> np.ndarray:
    """Steps covered by a detection: the detected steps and, with a stride, the steps
    between two consecutive detections that are one stride apart (tracked, not missing)."""
    mask = np.zeros(n_steps, bool)
    mask[known] = True
    for a, b in zip(known[:-1], known[1:]):
        if b - a <= stride:
            mask[a:b] = True
    return mask


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0; near the ends the window shrinks symmetrically,
    so steady motion is not pulled inwards."""
    if len(values) < 3 or window < 2:
        return values
    index = np.arange(len(values))
    half = np.minimum.reduce([np.full(len(values), window // 2), index, len(values) - 1 - index])
    cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, 0)])
    lo, hi = index - half, index + half + 1
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]
