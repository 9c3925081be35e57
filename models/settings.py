"""`Settings`: every knob that decides what an analysis computes (decoding, faces,
encoders, precision, stride), immutable, with the one feature-cache key built from it.

Analysis, extraction and the research workflows all key the feature cache through
`Settings.cache_key`, so a setting added here reaches every cache user at once.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Mapping

from models.encoders.base import (
    FACE_MODALITIES,
    FRAME_BATCH,
    MOUTH_MODALITIES,
    STRIDED_FAMILIES,
    EncoderSpec,
    dtype_name,
)
from models.encoders.project import bundled_sha256
from models.errors import AnalysisError
from models.faces import FACE_WORKERS, MOUTH_ROI_VERSION, TRACKER_VERSION
from models.landmarks import LANDMARK_SOURCES
from models.media import MediaLimits

DEFAULT_FRAME_SIDE = MediaLimits().frame_max_side


@dataclass(frozen=True)
class Settings:
    """What one analysis runs with. Fields that change features are part of the cache key;
    `face_workers` and `batch_frames` change only speed (their results are identical)."""

    limits: MediaLimits = field(default_factory=MediaLimits)  # decoding: what is accepted, the working frame size
    face_stride: int = 1  # run face detection every N steps, track in between
    face_tracking: bool = False  # follow the face with the mesh between detections once a second (faster, crops move)
    landmarks: str = "mesh"  # the mouth region's 68 points: the mapped face mesh, or dlib's predictor (installed)
    face_workers: int = FACE_WORKERS  # frames detected at once, one mediapipe graph each (same result; 1: naive)
    stride: int = 1  # run per-frame image encoders every N steps, interpolate in between
    batch_frames: int = FRAME_BATCH  # face crops per forward pass (1 = the naive baseline)
    precision: str = "auto"  # fp32 | bf16 | auto
    weights: Mapping[str, str] | tuple[tuple[str, str], ...] = ()  # encoder id → hub id or local path

    def __post_init__(self) -> None:  # kept as sorted pairs: hashable, picklable (Ray), immutable
        if self.landmarks not in LANDMARK_SOURCES:
            raise AnalysisError(f"unknown landmark source {self.landmarks!r}.", hint=f"One of {LANDMARK_SOURCES}.")
        pairs = self.weights.items() if isinstance(self.weights, Mapping) else self.weights
        object.__setattr__(self, "weights", tuple(sorted((str(k), str(v)) for k, v in pairs)))

    def weights_for(self, encoder_id: str) -> str | None:
        return dict(self.weights).get(encoder_id)

    def cache_key(self, spec: EncoderSpec) -> str:
        """The feature-cache key part for `spec` under these settings: preprocessing version,
        width, numeric precision, face-detection stride; for encoders of face crops the face
        tracker's version and any non-default working frame size; face tracking; for encoders of mouth
        regions the mouth region's version and landmark source; the encoder stride of
        per-frame encoders; and, when they can change, which weights."""
        dtype = dtype_name(self.precision)
        key = f"{spec.preprocessing_version}-d{spec.dim}-{dtype}-faces{self.face_stride}"
        if spec.modality in FACE_MODALITIES or spec.modality in MOUTH_MODALITIES:
            key += f"-tracker{TRACKER_VERSION}" + ("-tracked" if self.face_tracking else "")
            if self.limits.frame_max_side != DEFAULT_FRAME_SIDE:
                key += f"-frame{self.limits.frame_max_side}"
        if spec.modality in MOUTH_MODALITIES:
            key += f"-mouth{MOUTH_ROI_VERSION}" + ("-dlib" if self.landmarks == "dlib" else "")
        if self.stride > 1 and spec.family in STRIDED_FAMILIES:
            key += f"-stride{self.stride}"
        tag = weights_tag(spec, self.weights_for(spec.id))
        return f"{key}-{tag}" if tag else key


def weights_tag(spec: EncoderSpec, weights: str | None) -> str:
    """'' for an entry's fixed weights; a short fingerprint of an override (its name, size and
    modification time when local) or of a project encoder's bundled weights (their SHA-256)."""
    if weights:
        path = os.path.expanduser(weights)
        stamp = f"{weights}|{os.path.getsize(path)}|{os.path.getmtime(path)}" if os.path.isfile(path) else weights
        return "w" + hashlib.sha256(stamp.encode()).hexdigest()[:12]
    if spec.source == "project":
        return "w" + bundled_sha256(spec)[:12]
    return ""
