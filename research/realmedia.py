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
from research.generator import ClipPlan, identities, render_clip, update_description
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


def generate_real_media(out: str | Path, seed: int = 505, split: str = "real", variants: int | None = None) -> Path:
    """Write the real-recordings split: each held-out real speaker over a held-out face under
    every bed and compression, the real face video at every size and compression with a
    held-out real speaker under it, and edited versions of it. `variants` keeps only that
    many of each group and no edits (a quick run). Returns the dataset description path."""
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    faces = identities("heldout")
    speakers = [s.id for s in sources("speech", "test")]
    records = []
    speech_variants = [(s, b, c) for s in speakers for b in SPEECH_BEDS for c in SPEECH_CRFS][:variants]
    for index, (speaker, bed, crf) in enumerate(speech_variants):
        rng = np.random.default_rng([seed, index])
        face = faces[int(rng.integers(len(faces)))]
        plan = ClipPlan("real", face, face, speaker, speaker, None, speech_source=speaker, crf=crf, bed=bed)
        frames, audio, _ = render_clip(plan, rng, seed)
        records.append(_write(out, split, len(records), frames, audio, crf, Fraction(25),
                              {"identity": face.name, "voice": speaker, "speech_source": speaker, "bed": bed,
                               "video_source": None}))
    for video in sources("face_video", "test"):
        frames, rate = face_video_frames(video.id)
        for size, crf in [(s, c) for s in VIDEO_SIZES for c in VIDEO_CRFS][:variants]:
            speaker = speakers[len(records) % len(speakers)]
            audio = np.resize(load_audio(speaker), int(len(frames) / rate * SAMPLE_RATE))
            resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])
            records.append(_write(out, split, len(records), resized, audio, crf, rate,
                                  {"identity": video.person, "voice": speaker, "speech_source": speaker, "bed": None,
                                   "video_source": video.id}))
        if variants is None:
            records += _edited_variants(out, split, len(records), frames, rate, faces, speakers, seed)
    (out / f"{split}_metadata.json").write_text(json.dumps(records, indent=1))
    return update_description(out, split)


def _edited_variants(out: Path, split: str, first: int, frames: np.ndarray, rate: Fraction, faces: list,
                     speakers: list[str], seed: int) -> list[dict]:
    """The real face video in 1080p (pillar-boxed), at a variable frame rate, and hard-cut to
    another real clip: edits a real video goes through, none of them a manipulation."""
    rng = np.random.default_rng([seed, first])
    audio = np.resize(load_audio(speakers[0]), int(len(frames) / rate * SAMPLE_RATE))
    scaled = np.stack([cv2.resize(f, (1320, 1080), interpolation=cv2.INTER_CUBIC) for f in frames])
    full_hd = np.pad(scaled, ((0, 0), (0, 0), (300, 300), (0, 0)))
    times = np.cumsum(np.r_[0, rng.uniform(0.6, 1.4, len(frames) - 1)]) / float(rate)
    face = faces[int(rng.integers(len(faces)))]
    other, other_audio, _ = render_clip(ClipPlan("real", face, face, speakers[1], speakers[1], None,
                                                 speech_source=speakers[1], frame_size=(352, 288)), rng, seed)
    half_s = len(frames) / float(rate) / 2  # the first half of the face video, resampled to 25 fps
    on_25 = (np.arange(int(half_s * 25)) * float(rate) / 25).astype(int)
    cut_frames = np.concatenate([np.stack([cv2.resize(frames[i], (352, 288)) for i in on_25]),
                                 other[: len(other) // 2]])
    cut_audio = np.concatenate([audio[: int(len(on_25) / 25 * SAMPLE_RATE)],
                                other_audio[: len(other) // 2 * SAMPLE_RATE // 25]])
    made = []
    for index, (variant, clip, sound, fps, extra) in enumerate((
            ("1080p", full_hd, audio, rate, {}),
            ("vfr", frames, np.resize(audio, int(times[-1] * SAMPLE_RATE) + SAMPLE_RATE // 25), 25, {"frame_times": times}),
            ("hard-cut", cut_frames, cut_audio, 25, {}))):
        name = f"{split}/{first + index:04d}.mp4"
        write_test_clip(out / name, clip, fps=fps, audio=sound, crf=23, **extra)
        made.append(_record(name, split, clip, sound, 23, {"identity": "carphone-man", "voice": speakers[0],
                                                          "speech_source": speakers[0], "bed": None,
                                                          "video_source": "carphone", "variant": variant}))
    return made


def _write(out: Path, split: str, index: int, frames: np.ndarray, audio: np.ndarray, crf: int, rate: Fraction,
           extra: dict) -> dict:
    name = f"{split}/{index:04d}.mp4"
    write_test_clip(out / name, frames, fps=rate, audio=audio, crf=crf)
    return _record(name, split, frames, audio, crf, extra)


def _record(name: str, split: str, frames: np.ndarray, audio: np.ndarray, crf: int, extra: dict) -> dict:
    return {"file": name, "original": None, "split": split, "modify_type": "real", "family": None,
            "fake_segments": [], "visual_fake_segments": [], "audio_fake_segments": [],
            "video_frames": len(frames), "audio_frames": len(audio), "frame_size": [frames.shape[2], frames.shape[1]],
            "crf": crf, **extra}
