"""The real-recordings test set: real speech and real face video that packages ship,
kept out of training and calibration, in the variants a user meets (other sizes,
compression, noise and music beds). Every clip is real in both modalities, so any
"fake" a probe says on it is a false fake.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from models.media import write_test_clip
from models.timing import SAMPLE_RATE
from research.generator import ClipPlan, update_description, identities, render_clip
from research.sources import load_audio, source_path, sources

SPEECH_BEDS = (None, "noise", "cantina")
SPEECH_CRFS = (23, 33)
VIDEO_SIZES = ((176, 144), (352, 288), (704, 576))  # the sequence's own QCIF, CIF and 4CIF
VIDEO_CRFS = (18, 28, 35)


def face_video_frames(source_id: str) -> tuple[np.ndarray, Fraction]:
    """Every frame (RGB) of a real face video source and its frame rate."""
    with av.open(str(source_path(source_id))) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, Fraction(stream.average_rate)


def generate_real_media(out: str | Path, seed: int = 505, split: str = "real") -> Path:
    """Write the real-recordings split: each held-out real speaker over a held-out face under
    every bed and compression, and the real face video at every size and compression with a
    held-out real speaker under it. Returns the dataset description path."""
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    faces = identities("heldout")
    speakers = [s.id for s in sources("speech", "test")]
    records = []
    for index, (speaker, bed, crf) in enumerate((s, b, c) for s in speakers for b in SPEECH_BEDS for c in SPEECH_CRFS):
        rng = np.random.default_rng([seed, index])
        face = faces[int(rng.integers(len(faces)))]
        plan = ClipPlan("real", face, face, speaker, speaker, None, speech_source=speaker, crf=crf, bed=bed)
        frames, audio, _ = render_clip(plan, rng, seed)
        records.append(_write(out, split, len(records), frames, audio, crf, Fraction(25),
                              {"identity": face.name, "voice": speaker, "speech_source": speaker, "bed": bed,
                               "video_source": None}))
    for video in sources("face_video", "test"):
        frames, rate = face_video_frames(video.id)
        for size, crf in ((s, c) for s in VIDEO_SIZES for c in VIDEO_CRFS):
            speaker = speakers[len(records) % len(speakers)]
            audio = np.resize(load_audio(speaker), int(len(frames) / rate * SAMPLE_RATE))
            resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])
            records.append(_write(out, split, len(records), resized, audio, crf, rate,
                                  {"identity": video.person, "voice": speaker, "speech_source": speaker, "bed": None,
                                   "video_source": video.id}))
    (out / f"{split}_metadata.json").write_text(json.dumps(records, indent=1))
    return update_description(out, split)


def _write(out: Path, split: str, index: int, frames: np.ndarray, audio: np.ndarray, crf: int, rate: Fraction,
           extra: dict) -> dict:
    name = f"{split}/{index:04d}.mp4"
    write_test_clip(out / name, frames, fps=rate, audio=audio, crf=crf)
    return {"file": name, "original": None, "split": split, "modify_type": "real", "family": None,
            "fake_segments": [], "visual_fake_segments": [], "audio_fake_segments": [],
            "video_frames": len(frames), "audio_frames": len(audio), "frame_size": [frames.shape[2], frames.shape[1]],
            "crf": crf, **extra}
