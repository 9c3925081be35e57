"""Deterministic synthetic talking-face clips with known local manipulations: the offline
demo and the ground truth for temporal and spatial tests.

Faces are real photos that packages ship (scikit-image's astronaut, matplotlib's Grace
Hopper, scikit-image's LFW subset upscaled); speech comes from espeak-ng when installed
(several voices), else from a harmonic speech-like synthesiser. The mouth opens with the
audio envelope by warping the lower face. Manipulations on one known segment, as in
AV-Deepfake1M: `audio_modified` (the segment re-voiced by another voice),
`visual_modified` (the mouth region re-rendered from another face at low resolution,
colour-mismatched, JPEG-compressed, blended with a feathered seam, flickering),
`both_modified`, and `desync` (the mouth moves with audio shifted by 4–8 steps).

Writes `SPLIT/NNNN.mp4`, `SPLIT_metadata.json` (AV-Deepfake1M records),
`SPLIT_regions.json` (per-frame manipulated box and centre, normalised), `SPLIT_exddv.csv`
(ExDDV click points at region centres) and updates `dataset.json`.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import librosa
import matplotlib.cbook
import numpy as np
import soundfile as sf
from skimage import data

from models.faces import shared_tracker
from models.media import write_test_clip
from models.timing import SAMPLE_RATE, SAMPLES_PER_STEP, STEP_RATE
from research.synthetic import speech_like_audio

FRAME_SIZE = (320, 256)
KINDS = ("real", "audio_modified", "real", "visual_modified", "real", "both_modified", "real", "desync")
VOICES = ("en-us", "en-us+f3", "en-gb", "en-us+m3", "en-gb-scotland", "en-us+f4", "en-gb-x-rp", "en-us+m7")
HELDOUT_VOICES = ("en-gb-x-gbclan+f2", "en-us+m5", "en-gb-x-gbcwmd")
ENGLISH_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd")
WORDS = ("the quick brown fox jumps over a lazy dog while seven bright planets rise above the quiet harbour "
         "and old sailors count their silver coins beside the long wooden pier before the evening storm arrives "
         "people often remember simple stories better than complicated numbers so we tell them again").split()


@dataclass
class Face:
    """A portrait cut around one face, with its mouth geometry in sprite pixels."""

    name: str
    sprite: np.ndarray  # (S, S, 3) uint8
    mouth: tuple[float, float]
    mouth_width: float
    face_box: tuple[float, float, float, float]


def _cut(image: np.ndarray, name: str, size: int = 192) -> Face | None:
    """The portrait around the face in `image`, with its geometry, or None without a face."""
    tracker = shared_tracker(close_range=False)  # the bank as first built: the clips stay byte-identical
    found = tracker.detect(image)
    if found is None:
        return None
    x0, y0, x1, y1 = found.box
    side = 1.9 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * side
    matrix = np.array([[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]])
    sprite = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    again = tracker.detect(sprite)
    if again is None:
        return None
    return Face(name, sprite, (float(again.mouth[0]), float(again.mouth[1])), 0.5 * again.eye_distance,
                tuple(float(v) for v in again.box))


@lru_cache(maxsize=1)
def face_bank() -> tuple[Face, ...]:
    """Every usable portrait, in a fixed order."""
    photos = [("astronaut", data.astronaut())]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(("grace_hopper", cv2.cvtColor(cv2.imdecode(np.frombuffer(handle.read(), np.uint8),
                                                                 cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)))
    for index, small in enumerate(data.lfw_subset()[:100]):
        gray = (np.clip(small, 0, 1) * 255).astype(np.uint8)
        big = cv2.resize(gray, (200, 200), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(big, 100, 100, 100, 100, cv2.BORDER_REPLICATE)
        photos.append((f"lfw{index:03d}", cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB)))
    return tuple(face for name, image in photos if (face := _cut(image, name)) is not None)


def identities(group: str) -> list[Face]:
    """'train' or 'heldout' faces: a fixed, disjoint partition of the bank (every fifth
    face, Grace Hopper among them, is held out)."""
    bank = face_bank()
    held = [f for i, f in enumerate(bank) if i % 5 == 1]
    return held if group == "heldout" else [f for i, f in enumerate(bank) if i % 5 != 1]


@lru_cache(maxsize=1)
def pretraining_voices() -> tuple[str, ...]:
    """Every English espeak-ng accent with every installed voice variant, except the held-out
    accents and variants: the wide voice pool the audio encoder's pretext trains on, so it
    learns what a change of voice sounds like rather than the 8 voices of the training clips."""
    if shutil.which("espeak-ng") is None:
        return VOICES
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, timeout=60).stdout
    variants = sorted({line.split()[4].split("/")[-1] for line in listing.splitlines()[1:] if len(line.split()) > 4})
    held_bases = {v.split("+")[0] for v in HELDOUT_VOICES} - {v.split("+")[0] for v in VOICES}
    held_variants = {v.split("+")[1] for v in HELDOUT_VOICES if "+" in v}
    return tuple(f"{base}+{variant}" if variant else base for base in ENGLISH_BASES if base not in held_bases
                 for variant in ["", *variants] if variant not in held_variants)


def speech(text: str, voice: str, speed: int, pitch: int, seed: int) -> np.ndarray:
    """Mono 16 kHz speech from espeak-ng, or a speech-like stand-in without it."""
    if shutil.which("espeak-ng") is None:
        return speech_like_audio(1.0 + 0.08 * len(text.split()), seed=seed)

    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", wav.name, text],
                       check=True, capture_output=True, timeout=60)
        audio, rate = sf.read(wav.name, dtype="float32")

    return librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE).astype(np.float32)


def mouth_openings(audio: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-step mouth opening in [0, 1] from the audio RMS envelope."""
    frames = np.pad(audio, (0, max(0, n_steps * SAMPLES_PER_STEP - len(audio))))[: n_steps * SAMPLES_PER_STEP]
    rms = np.sqrt((frames.reshape(n_steps, SAMPLES_PER_STEP) ** 2).mean(1))
    rms = np.convolve(rms, np.ones(3) / 3, mode="same")
    return np.clip(rms / (np.percentile(rms, 95) + 1e-6), 0, 1)


def animate_mouth(sprite: np.ndarray, face: Face, opening: float) -> np.ndarray:
    """Open the mouth: pull the lower face down and darken the mouth cavity."""
    mx, my = face.mouth
    width = face.mouth_width
    ys, xs = np.mgrid[0:sprite.shape[0], 0:sprite.shape[1]].astype(np.float32)
    weight = np.exp(-(((xs - mx) / (1.1 * width)) ** 2 + ((ys - my - 0.4 * width) / (0.9 * width)) ** 2))
    drop = opening * 0.22 * width * weight * (ys > my - 0.1 * width)
    out = cv2.remap(sprite, xs, ys - drop.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if opening > 0.05:
        cavity = np.zeros(sprite.shape[:2], np.float32)
        cv2.ellipse(cavity, (int(mx), int(my + 0.05 * width)), (int(0.38 * width), max(1, int(0.2 * width * opening))),
                    0, 0, 360, 1.0, -1)
        cavity = cv2.GaussianBlur(cavity, (5, 5), 0)[..., None]
        out = (out * (1 - 0.85 * cavity) + np.array([60, 20, 25]) * 0.85 * cavity).astype(np.uint8)
    return out


def swap_mouth(sprite: np.ndarray, face: Face, donor: Face, rng: np.random.Generator,
               colour_shift: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The artefacts face-swap pipelines leave, on the mouth region: the donor's mouth
    aligned by mouth centre and width, re-rendered at 1/3 resolution, colour-shifted,
    JPEG-compressed and blended through a feathered ellipse (seam); returns the sprite
    and the manipulated box (sprite pixels)."""
    scale = face.mouth_width / donor.mouth_width
    matrix = np.array([[scale, 0, face.mouth[0] - scale * donor.mouth[0]],
                       [0, scale, face.mouth[1] - scale * donor.mouth[1]]])
    size = sprite.shape[1], sprite.shape[0]
    moved = cv2.warpAffine(donor.sprite, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    low = cv2.resize(moved, (size[0] // 3, size[1] // 3), interpolation=cv2.INTER_AREA)
    moved = cv2.resize(low, size, interpolation=cv2.INTER_LINEAR).astype(np.float32) + colour_shift
    ok, encoded = cv2.imencode(".jpg", np.clip(moved, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 20])
    moved = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32)
    mx, my, w = face.mouth[0], face.mouth[1], face.mouth_width
    half_w, half_h = 1.0 * w, 0.75 * w
    mask = np.zeros(sprite.shape[:2], np.float32)
    cv2.ellipse(mask, (int(mx), int(my + 0.15 * w)), (int(half_w), int(half_h)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.12 * w)[..., None] * rng.uniform(0.8, 1.0)  # flicker
    blended = sprite.astype(np.float32) * (1 - mask) + moved * mask
    box = (mx - half_w, my + 0.15 * w - half_h, mx + half_w, my + 0.15 * w + half_h)
    return np.clip(blended, 0, 255).astype(np.uint8), box


def head_outline(face: Face, size: int) -> np.ndarray:
    """A feathered oval around the head (face box widened for hair and chin), so the
    portrait sits on the background without the photo's edges."""
    x0, y0, x1, y1 = face.face_box
    centre = (int((x0 + x1) / 2), int((y0 + y1) / 2 - 0.08 * (y1 - y0)))
    axes = (int(0.78 * (x1 - x0)), int(0.85 * (y1 - y0)))
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 0.06 * size)


@dataclass
class ClipPlan:
    kind: str
    face: Face
    donor: Face
    voice: str
    other_voice: str
    segment: tuple[float, float] | None


def render_clip(plan: ClipPlan, rng: np.random.Generator, seed: int,
                words_range: tuple[int, int] = (7, 10)) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames, audio and per-step manipulated boxes (normalised) of one planned clip, whose
    speech has `words_range` words (lower bound included, upper excluded; about 3 s by default)."""
    words = list(rng.choice(WORDS, size=int(rng.integers(*words_range))))
    audio = speech(" ".join(words), plan.voice, int(rng.integers(140, 175)), int(rng.integers(35, 70)), seed)
    lead = int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(int(0.3 * SAMPLE_RATE), np.float32)])
    n_steps = len(audio) // SAMPLES_PER_STEP
    audio = audio[: n_steps * SAMPLES_PER_STEP]
    mouth_audio = audio
    if plan.segment is not None:
        start, end = (int(v * SAMPLE_RATE) for v in plan.segment)
        if plan.kind in ("audio_modified", "both_modified"):
            other = speech(" ".join(rng.choice(WORDS, size=8)), plan.other_voice, int(rng.integers(140, 175)),
                           int(rng.integers(35, 70)), seed + 1)
            other = np.pad(other, (0, max(0, end - start - len(other))))[: end - start]
            fade = np.linspace(0, 1, min(160, end - start))
            piece = other.copy()
            piece[: len(fade)] = other[: len(fade)] * fade + audio[start:start + len(fade)] * (1 - fade)
            audio = audio.copy()
            audio[start:end] = piece
            mouth_audio = audio
        elif plan.kind == "desync":
            shift = int(rng.integers(4, 9)) * SAMPLES_PER_STEP * int(rng.choice([-1, 1]))
            mouth_audio = audio.copy()
            mouth_audio[start:end] = np.roll(audio, shift)[start:end]
    openings = mouth_openings(mouth_audio, n_steps)
    width, height = FRAME_SIZE
    top, bottom = rng.integers(30, 220, 3), rng.integers(30, 220, 3)
    background = np.linspace(top, bottom, height)[:, None, :].repeat(width, 1).astype(np.uint8)
    side0 = rng.uniform(0.75, 1.0) * height
    phase, speed = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 0.6, 3)
    gain, offset = rng.uniform(0.8, 1.15), rng.uniform(-20, 20, 3)
    colour_shift = rng.uniform(-35, 35, 3)
    head_mask = head_outline(plan.face, plan.face.sprite.shape[0])
    frames, boxes = [], {}
    for step in range(n_steps):
        t = step / STEP_RATE
        sprite = animate_mouth(plan.face.sprite, plan.face, openings[step])
        box = None
        if plan.segment is not None and plan.kind in ("visual_modified", "both_modified") \
                and plan.segment[0] <= (step + 0.5) / STEP_RATE < plan.segment[1]:
            sprite, box = swap_mouth(sprite, plan.face, plan.donor, rng, colour_shift)
        side = side0 * (1 + 0.05 * np.sin(speed[2] * 2 * np.pi * t + phase[2]))
        cx = width / 2 + 0.18 * width * np.sin(speed[0] * 2 * np.pi * t + phase[0])
        cy = height / 2 + 0.06 * height * np.sin(speed[1] * 2 * np.pi * t + phase[1])
        scale = side / sprite.shape[0]
        matrix = np.array([[scale, 0, cx - side / 2], [0, scale, cy - side / 2]])
        placed = cv2.warpAffine(sprite, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        inside = cv2.warpAffine(head_mask, matrix, (width, height))[..., None]
        frame = background * (1 - inside) + placed * inside
        frames.append(np.clip(frame * gain + offset, 0, 255).astype(np.uint8))
        if box is not None:
            x0, y0 = matrix[:, :2] @ box[:2] + matrix[:, 2]
            x1, y1 = matrix[:, :2] @ box[2:] + matrix[:, 2]
            boxes[step] = [round(float(np.clip(v, 0, 1)), 4) for v in (x0 / width, y0 / height, x1 / width,
                                                                        y1 / height)]
    return np.stack(frames), audio, boxes


def plan_clip(index: int, rng: np.random.Generator, faces: list[Face], voices: tuple[str, ...]) -> ClipPlan:
    kind = KINDS[index % len(KINDS)]
    face_index = int(rng.integers(len(faces)))
    donor_index = (face_index + 1 + int(rng.integers(len(faces) - 1))) % len(faces) if len(faces) > 1 else face_index
    voice = str(rng.choice(voices))
    other = str(rng.choice([v for v in voices if v != voice] or list(voices)))
    start = round(float(rng.uniform(0.8, 1.6)), 2)
    segment = None if kind == "real" else (start, round(start + float(rng.uniform(0.6, 1.0)), 2))
    return ClipPlan(kind, faces[face_index], faces[donor_index], voice, other, segment)


def generate(out: str | Path, n: int, seed: int, split: str = "train", faces: str = "train",
             progress=None, words_range: tuple[int, int] = (7, 10)) -> Path:
    """Write `n` clips of split `split` into `out`; returns the dataset description path.
    `words_range` sets how much each clip says (the default keeps earlier seeds' bytes)."""
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    bank = identities(faces)
    voices = HELDOUT_VOICES if faces == "heldout" else VOICES
    records, regions, clicks = [], {}, []
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        plan = plan_clip(index, rng, bank, voices)
        frames, audio, boxes = render_clip(plan, rng, seed * 100_000 + index, words_range)
        name = f"{split}/{index:04d}.mp4"
        write_test_clip(out / name, frames, audio=audio)
        segments = [list(plan.segment)] if plan.segment else []
        # desync keeps every frame and every sample real: only their alignment is fake (fake_segments)
        visual = segments if plan.kind in ("visual_modified", "both_modified") else []
        records.append({"file": name, "original": None, "split": split, "modify_type": plan.kind,
                        "fake_segments": segments, "visual_fake_segments": visual,
                        "audio_fake_segments": segments if plan.kind in ("audio_modified", "both_modified") else [],
                        "video_frames": len(frames), "audio_frames": len(audio), "identity": plan.face.name,
                        "donor": plan.donor.name if visual and plan.kind != "desync" else None, "voice": plan.voice})
        if boxes:
            regions[name] = {str(step): {"box": box, "centre": [round((box[0] + box[2]) / 2, 4),
                                                               round((box[1] + box[3]) / 2, 4)]}
                             for step, box in boxes.items()}
            chosen = sorted(boxes)[:: max(1, len(boxes) // 3)][:3]
            clicks.append((name, {str(s): {"x": regions[name][str(s)]["centre"][0],
                                           "y": regions[name][str(s)]["centre"][1]} for s in chosen}))
        if progress:
            progress(index + 1, n)
    (out / f"{split}_metadata.json").write_text(json.dumps(records, indent=1))
    (out / f"{split}_regions.json").write_text(json.dumps(regions, indent=1))
    _write_exddv(out / f"{split}_exddv.csv", clicks, split)
    return _update_description(out, split)


def _write_exddv(path: Path, clicks: list, split: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "username", "movie_name", "text", "dataset", "manipulation", "click_locations",
                     "difficulty", "split"])
    for index, (name, points) in enumerate(clicks):
        writer.writerow([index, "generator", name, "mouth region re-rendered from another face", "synthetic",
                         "mouth_swap", json.dumps(points), 1, split])
    path.write_text(buffer.getvalue())


def _update_description(out: Path, split: str) -> Path:
    path = out / "dataset.json"
    description = json.loads(path.read_text()) if path.exists() else {
        "name": f"synthetic-{out.name}", "format": "av1m", "root": ".", "splits": {}}
    description["splits"][split] = f"{split}_metadata.json"
    path.write_text(json.dumps(description, indent=1))
    return path


DEMO_KINDS = {"real": 0, "audio_fake": 1, "visual_fake": 3, "both_fake": 5}  # index in KINDS


def make_demo(out: str | Path, seed: int = 2026) -> list[Path]:
    """The app's four example clips (real, audio fake, visual fake, both) with their
    AV-Deepfake1M records in `demo_metadata.json`, so analyses find their ground truth."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, max(DEMO_KINDS.values()) + 1, seed, split="demo", faces="heldout")
        records = json.loads((Path(tmp) / "demo_metadata.json").read_text())
        regions = json.loads((Path(tmp) / "demo_regions.json").read_text())
        out.mkdir(parents=True, exist_ok=True)
        kept, kept_regions, paths = [], {}, []
        for name, index in DEMO_KINDS.items():
            record = records[index]
            target = out / f"{name}.mp4"
            shutil.copyfile(Path(tmp) / record["file"], target)
            if record["file"] in regions:
                kept_regions[target.name] = regions[record["file"]]
            kept.append({**record, "file": target.name, "split": "demo"})
            paths.append(target)
    (out / "demo_metadata.json").write_text(json.dumps(kept, indent=1))
    (out / "demo_regions.json").write_text(json.dumps(kept_regions, indent=1))
    return paths
