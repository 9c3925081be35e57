"""Which of mediapipe's 468 face-mesh points stands for each of the 68 iBUG points that
dlib's shape predictor finds (the scheme AV-HuBERT's and BRAVEn's mouth crops are defined
on), and how far apart the two end up.

The correspondence is fitted from the data, not copied: on faces where both run, each
iBUG point takes the mesh point with the smallest median distance to it (in units of the
outer-eye-corner distance). It is measured leaving one identity out: fitted on the other
faces, scored on the held-out one's, as mean landmark error in pixels and as the IoU of
the mouth region of interest each set of points gives (`models.landmarks.mouth_square`).

dlib (`dlib-bin`) and its 68-point predictor (`face-recognition-models`, whose model is
licensed for non-commercial use only) are optional: `models.landmarks.predictor_path` says
how to install them when absent.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.faces import FaceTracker
from models.landmarks import IBUG_EYE_OUTER, DlibLandmarks, mouth_square, square_iou

FACE_HEIGHTS_PX = (90, 140, 220)  # each face is measured at these heights (eye to chin ≈ 0.6 of it)
ROLLS_DEG = (-12.0, 0.0, 12.0)  # and at these in-plane rotations


@dataclass
class PairedFace:
    """One face seen by both: mesh points (468, 2) and dlib's iBUG points (68, 2) in its own
    detector's box, and in the box the runtime gives it (`DlibLandmarks.points_near`), in pixels."""

    identity: str
    mesh: np.ndarray
    ibug: np.ndarray
    ibug_near_mesh: np.ndarray

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.ibug[IBUG_EYE_OUTER[1]] - self.ibug[IBUG_EYE_OUTER[0]]))


def paired_faces(images: dict[str, list[np.ndarray]]) -> list[PairedFace]:
    """Both landmark sets on every RGB image of every identity, each image at FACE_HEIGHTS_PX
    face sizes and ROLLS_DEG rotations. dlib's reference box comes from its own HOG detector
    (its predictor was trained on those boxes); images where either finds no face are skipped."""
    import dlib  # lazy: optional (dlib-bin)

    detector, landmarks = dlib.get_frontal_face_detector(), DlibLandmarks()
    tracker = FaceTracker()
    pairs = []
    try:
        for identity, frames in images.items():
            for frame in frames:
                for variant in _variants(frame, tracker):
                    mesh = tracker.mesh_points(variant)
                    gray = cv2.cvtColor(variant, cv2.COLOR_RGB2GRAY)
                    box = None if mesh is None else _same_face(detector(gray, 1), mesh)
                    if box is not None:
                        pairs.append(PairedFace(identity, mesh, landmarks.points(gray, box),
                                                landmarks.points_near(variant, mesh)))
    finally:
        tracker.close()
    return pairs


def _same_face(rectangles, mesh: np.ndarray) -> np.ndarray | None:
    """The box of dlib's detection whose centre lies inside the mesh's bounding box (the
    same face), or None."""
    low, high = mesh.min(axis=0), mesh.max(axis=0)
    for rect in sorted(rectangles, key=lambda r: -r.area()):
        box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float)
        centre = (box[:2] + box[2:]) / 2
        if np.all(centre >= low) and np.all(centre <= high):
            return box
    return None


def _variants(frame: np.ndarray, tracker) -> list[np.ndarray]:
    """The frame scaled so its face is each of FACE_HEIGHTS_PX tall, then rolled by each of
    ROLLS_DEG about the face centre (on a grey canvas, so nothing is cut off and no mirrored
    copy of the face appears)."""
    found = tracker.detect(frame)
    if found is None:
        return []
    height = found.box[3] - found.box[1]
    out = []
    for target in FACE_HEIGHTS_PX:
        scaled = cv2.resize(frame, None, fx=target / height, fy=target / height, interpolation=cv2.INTER_AREA
                            if target < height else cv2.INTER_CUBIC)
        pad = target
        canvas = cv2.copyMakeBorder(scaled, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        centre = ((found.box[0] + found.box[2]) / 2 * target / height + pad,
                  (found.box[1] + found.box[3]) / 2 * target / height + pad)
        for roll in ROLLS_DEG:
            matrix = cv2.getRotationMatrix2D(centre, roll, 1.0)
            out.append(cv2.warpAffine(canvas, matrix, canvas.shape[1::-1], flags=cv2.INTER_LINEAR,
                                      borderValue=(128, 128, 128)))
    return out


def fit_mapping(pairs: list[PairedFace]) -> np.ndarray:
    """(68,) mesh indices: for each iBUG point, the mesh point with the smallest median
    distance to it (in eye distances), the medians of each identity weighing alike (one
    video's many frames would otherwise decide alone)."""
    per_identity = []
    for identity in sorted({p.identity for p in pairs}):
        distances = np.stack([np.linalg.norm(p.mesh[:, None, :] - p.ibug[None, :, :], axis=2) / p.eye_distance
                              for p in pairs if p.identity == identity])  # (faces, 468, 68)
        per_identity.append(np.median(distances, axis=0))
    return np.mean(per_identity, axis=0).argmin(axis=0)


def mapping_errors(mapping: np.ndarray, pairs: list[PairedFace]) -> dict:
    """Mean distance between the mapped mesh points and dlib's (pixels, and eye distances),
    over all 68 points and over the 20 mouth points, and the mean and lowest IoU of the
    mouth squares the two sets give."""
    pixel = np.array([np.linalg.norm(p.mesh[mapping] - p.ibug, axis=1) for p in pairs])  # (faces, 68)
    relative = pixel / np.array([p.eye_distance for p in pairs])[:, None]
    ious = np.array([square_iou(mouth_square(p.mesh[mapping]), mouth_square(p.ibug)) for p in pairs])
    runtime_dlib = np.array([np.linalg.norm(p.ibug_near_mesh - p.ibug, axis=1).mean() for p in pairs])
    rolls = np.array([abs(mouth_square(p.mesh[mapping])[3] - mouth_square(p.ibug)[3]) for p in pairs])
    return {"faces": len(pairs), "mean_error_px": round(float(pixel.mean()), 2),
            "mean_error_eye_distances": round(float(relative.mean()), 4),
            "mouth_error_px": round(float(pixel[:, 48:].mean()), 2),
            "mean_eye_distance_px": round(float(np.mean([p.eye_distance for p in pairs])), 1),
            "mouth_roi_iou_mean": round(float(ious.mean()), 4), "mouth_roi_iou_min": round(float(ious.min()), 4),
            "dlib_in_mesh_box_error_px": round(float(runtime_dlib.mean()), 2),
            "roll_error_deg": round(float(rolls.mean()), 2)}


def leave_one_identity_out(pairs: list[PairedFace]) -> dict[str, dict]:
    """Per identity: the mapping fitted on the other identities' faces, scored on its own."""
    identities = sorted({p.identity for p in pairs})
    out = {}
    for held_out in identities:
        train = [p for p in pairs if p.identity != held_out]
        test = [p for p in pairs if p.identity == held_out]
        out[held_out] = mapping_errors(fit_mapping(train), test)
    return out
