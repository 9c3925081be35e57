"""Scenes built from real photos that packages ship, with known geometry: the ground truth
for face-tracking tests and the benchmark clips."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data

from models.timing import SAMPLE_RATE

# Hand-annotated on scikit-image's astronaut (512×512): mouth centre and face width in pixels.
ASTRONAUT_MOUTH = (224.0, 145.0)
ASTRONAUT_FACE_WIDTH = 95.0


@dataclass
class MovingFace:
    frames: np.ndarray  # (T, H, W, 3) uint8
    mouth_xy: np.ndarray  # (T, 2) true mouth centre in frame pixels
    face_width: np.ndarray  # (T,) true face width in frame pixels


def moving_astronaut(n_steps: int, width: int = 640, height: int = 360, scale: float = 0.6,
                     seed: int = 0) -> MovingFace:
    """The astronaut portrait gliding left to right (and gently bobbing) over a plain
    background, so the face's true position is known at every step."""
    photo = data.astronaut()
    side = int(round(512 * scale))
    photo = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    background = np.full((height, width, 3), rng.integers(60, 200, 3), np.uint8)
    span = max(0, width - side)
    frames, mouths = [], []
    for step in range(n_steps):
        phase = step / max(1, n_steps - 1)
        x0 = int(round(span * phase))
        y0 = int(round((height - side) / 2 + 10 * np.sin(2 * np.pi * phase * 2)))
        frame = background.copy()
        top, bottom = max(0, y0), min(height, y0 + side)
        frame[top:bottom, x0:x0 + side] = photo[top - y0:bottom - y0]
        frames.append(frame)
        mouths.append((x0 + ASTRONAUT_MOUTH[0] * scale, y0 + ASTRONAUT_MOUTH[1] * scale))
    return MovingFace(np.stack(frames), np.array(mouths), np.full(n_steps, ASTRONAUT_FACE_WIDTH * scale))


def speech_like_audio(duration_s: float, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A syllable-rate (4 Hz) amplitude-modulated harmonic tone with noise: stands in for
    speech where only timing and loudness matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * rate)) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.3 * envelope * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
