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

from models.faces import MESH_EYE_OUTER, shared_tracker
from models.media import write_test_clip
from models.timing import SAMPLE_RATE, SAMPLES_PER_STEP, STEP_RATE
from research.families import AUDIO_FAMILIES, VISUAL_FAMILIES, AudioContext, VisualContext
from research.sources import load_audio, sources
from research.synthetic import speech_like_audio

FRAME_SIZE = (320, 256)
KINDS = ("real", "audio_modified", "real", "visual_modified", "real", "both_modified", "real", "desync")
VOICES = ("en-us", "en-us+f3", "en-gb", "en-us+m3", "en-gb-scotland", "en-us+f4", "en-gb-x-rp", "en-us+m7")
HELDOUT_VOICES = ("en-gb-x-gbclan+f2", "en-us+m5", "en-gb-x-gbcwmd")
STAND_IN_SECONDS_PER_WORD = 0.4  # espeak-ng's pace at 140–175 words a minute, for the speech stand-in without it
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
    mouth, eye_distance = _bank_mouth(tracker.mesh_points(sprite), again)
    return Face(name, sprite, mouth, 0.5 * eye_distance, tuple(float(v) for v in again.box))


# the mesh's 40 lip-contour points and outer eye corners: the bank's mouth as first built
BANK_LIP_POINTS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                   78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)


def _bank_mouth(mesh: np.ndarray | None, found) -> tuple[tuple[float, float], float]:
    """Mouth centre and outer-eye-corner distance of a bank face, defined as when the bank
    was first built (the mean of the mesh's lip contours), so its clips stay byte-identical
    whatever the tracker's mouth region becomes; the detector's keypoints without a mesh."""
    if mesh is None:
        return (float(found.mouth[0]), float(found.mouth[1])), found.eye_distance
    centre = mesh[list(BANK_LIP_POINTS)].mean(axis=0)
    return (float(centre[0]), float(centre[1])), float(np.linalg.norm(mesh[MESH_EYE_OUTER[1]] - mesh[MESH_EYE_OUTER[0]]))


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
    """Mono 16 kHz speech from espeak-ng, or without it a speech-like stand-in as long as
    espeak-ng would speak the words (about 0.4 s a word at 140–175 words a minute), so the
    planned segments (up to 2.6 s in) lie inside the clip either way."""
    if shutil.which("espeak-ng") is None:
        return speech_like_audio(STAND_IN_SECONDS_PER_WORD * len(text.split()), seed=seed)

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
    """Everything one clip is made of, drawn before rendering."""

    kind: str
    face: Face
    donor: Face
    voice: str
    other_voice: str
    segment: tuple[float, float] | None
    family: str | None = None  # the manipulation family; None: "feathered" / "voice" as first built
    speech_source: str | None = None  # a real recording (research.sources) instead of espeak speech
    other_sources: tuple[str, ...] = ()  # real recordings a splice may take its piece from
    frame_size: tuple[int, int] = FRAME_SIZE
    crf: int | None = None  # x264 quality; None: the encoder's default
    bed: str | None = None  # "noise" or a music source under the whole clip

    @property
    def visual_family(self) -> str:
        return self.family if self.family in VISUAL_FAMILIES else "feathered"

    @property
    def audio_family(self) -> str:
        return self.family if self.family in AUDIO_FAMILIES else "voice"


def base_speech(plan: ClipPlan, rng: np.random.Generator, seed: int, words_range: tuple[int, int]) -> np.ndarray:
    """The clip's real speech: a recording that a package ships, or espeak-ng saying some words."""
    if plan.speech_source is not None:
        return load_audio(plan.speech_source)
    words = list(rng.choice(WORDS, size=int(rng.integers(*words_range))))
    return speech(" ".join(words), plan.voice, int(rng.integers(140, 175)), int(rng.integers(35, 70)), seed)


def manipulate_audio(plan: ClipPlan, audio: np.ndarray, rng: np.random.Generator, seed: int) -> np.ndarray:
    """The audio with the plan's segment replaced by the plan's audio family."""
    start, end = (int(v * SAMPLE_RATE) for v in plan.segment)

    def another_voice() -> np.ndarray:
        return speech(" ".join(rng.choice(WORDS, size=8)), plan.other_voice, int(rng.integers(140, 175)),
                      int(rng.integers(35, 70)), seed + 1)

    def another_recording() -> np.ndarray:
        if not plan.other_sources:
            return another_voice()
        recording = load_audio(str(rng.choice(list(plan.other_sources))))
        offset = int(rng.integers(0, max(1, len(recording) - (end - start))))
        return recording[offset:]

    context = AudioContext(rng, another_voice, another_recording)
    return AUDIO_FAMILIES[plan.audio_family](audio, start, end, context)


def under_bed(audio: np.ndarray, bed: str | None, rng: np.random.Generator) -> np.ndarray:
    """Speech over a quiet noise floor or a music bed 15–25 dB below it: real variants, not manipulations."""
    if bed is None:
        return audio
    level = np.sqrt((audio ** 2).mean() + 1e-9) * 10 ** (-float(rng.uniform(15, 25)) / 20)
    if bed == "noise":
        under = rng.standard_normal(len(audio)).astype(np.float32)
    else:
        music = load_audio(bed)
        under = np.resize(music, len(audio))
    return (audio + level * under / (np.sqrt((under ** 2).mean()) + 1e-9)).astype(np.float32)


def render_clip(plan: ClipPlan, rng: np.random.Generator, seed: int,
                words_range: tuple[int, int] = (7, 10)) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames, audio and per-step manipulated boxes (normalised) of one planned clip, whose
    espeak speech has `words_range` words (lower bound included, upper excluded; about 3 s by default)."""
    audio = base_speech(plan, rng, seed, words_range)
    lead = int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(int(0.3 * SAMPLE_RATE), np.float32)])
    n_steps = len(audio) // SAMPLES_PER_STEP
    audio = audio[: n_steps * SAMPLES_PER_STEP]
    audio = under_bed(audio, plan.bed, rng)
    mouth_audio = audio
    if plan.segment is not None:
        start, end = (int(v * SAMPLE_RATE) for v in plan.segment)
        if plan.kind in ("audio_modified", "both_modified"):
            audio = manipulate_audio(plan, audio, rng, seed)
            mouth_audio = audio
        elif plan.kind == "desync":
            shift = int(rng.integers(4, 9)) * SAMPLES_PER_STEP * int(rng.choice([-1, 1]))
            mouth_audio = audio.copy()
            mouth_audio[start:end] = np.roll(audio, shift)[start:end]
    openings = mouth_openings(mouth_audio, n_steps)
    width, height = plan.frame_size
    top, bottom = rng.integers(30, 220, 3), rng.integers(30, 220, 3)
    background = np.linspace(top, bottom, height)[:, None, :].repeat(width, 1).astype(np.uint8)
    side0 = rng.uniform(0.75, 1.0) * min(width, height)
    phase, speed = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 0.6, 3)
    gain, offset = rng.uniform(0.8, 1.15), rng.uniform(-20, 20, 3)
    colour_shift = rng.uniform(-35, 35, 3)
    other_openings = mouth_openings(np.roll(mouth_audio, len(mouth_audio) // 2), n_steps)
    head_mask = head_outline(plan.face, plan.face.sprite.shape[0])
    frames, boxes = [], {}
    for step in range(n_steps):
        t = step / STEP_RATE
        sprite = animate_mouth(plan.face.sprite, plan.face, openings[step])
        box = None
        if plan.segment is not None and plan.kind in ("visual_modified", "both_modified") \
                and plan.segment[0] <= (step + 0.5) / STEP_RATE < plan.segment[1]:
            if plan.visual_family == "feathered":
                sprite, box = swap_mouth(sprite, plan.face, plan.donor, rng, colour_shift)
            else:
                context = VisualContext(plan.face, plan.donor, colour_shift, other_openings, step, rng, animate_mouth)
                sprite, box = VISUAL_FAMILIES[plan.visual_family](sprite, context)
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
    """The first benchmark's plan: kinds in the fixed KINDS cycle, one feathered mouth swap or re-voicing."""
    kind = KINDS[index % len(KINDS)]
    face, donor, voice, other = _cast(rng, faces, voices)
    return ClipPlan(kind, face, donor, voice, other, _segment(rng, kind == "real"))


def _cast(rng: np.random.Generator, faces: list[Face], voices: tuple[str, ...]) -> tuple[Face, Face, str, str]:
    """A face, a different donor face, a voice and a different voice."""
    face_index = int(rng.integers(len(faces)))
    donor_index = (face_index + 1 + int(rng.integers(len(faces) - 1))) % len(faces) if len(faces) > 1 else face_index
    voice = str(rng.choice(voices))
    other = str(rng.choice([v for v in voices if v != voice] or list(voices)))
    return faces[face_index], faces[donor_index], voice, other


def _segment(rng: np.random.Generator, real: bool) -> tuple[float, float] | None:
    """The manipulated segment (0.6–1.0 s starting 0.8–1.6 s in), None for a real clip (which
    draws its start all the same, so the clips after it keep their bytes)."""
    start = round(float(rng.uniform(0.8, 1.6)), 2)
    return None if real else (start, round(start + float(rng.uniform(0.6, 1.0)), 2))


FAMILIES = ("feathered", *VISUAL_FAMILIES, *AUDIO_FAMILIES)
FRAME_SIZES = ((320, 256), (256, 320), (480, 270), (176, 144), (640, 480))  # incl. portrait and ~120 px faces
CRFS = (18, 23, 28, 33)


def family_schedule(families: tuple[str, ...], per_family: int) -> list[str]:
    """Each family `per_family` times, in rounds, with a real clip after every second fake."""
    fakes = [family for _ in range(per_family) for family in families]
    return [item for index, family in enumerate(fakes) for item in ((family, "real") if index % 2 else (family,))]


def plan_family_clip(family: str, rng: np.random.Generator, faces: list[Face], voices: tuple[str, ...],
                     speech_sources: tuple[str, ...], music: tuple[str, ...]) -> ClipPlan:
    """A clip of one manipulation family ("real" for none), with its real variants drawn:
    real or espeak speech, frame size, compression and a noise or music bed."""
    face, donor, voice, other = _cast(rng, faces, voices)
    segment = _segment(rng, family == "real")
    source = str(rng.choice(speech_sources)) if speech_sources and rng.random() < 0.5 else None
    kind = "real" if family == "real" else "visual_modified" if family in ("feathered", *VISUAL_FAMILIES) \
        else "audio_modified"
    bed = rng.choice([None, None, "noise", *music])
    return ClipPlan(kind, face, donor, voice, other, segment,
                    family=None if kind == "real" else family, speech_source=source,
                    other_sources=tuple(s for s in speech_sources if s != source),
                    frame_size=FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))], crf=int(rng.choice(CRFS)),
                    bed=None if bed is None else str(bed))


def generate(out: str | Path, n: int, seed: int, split: str = "train", faces: str = "train",
             progress=None, words_range: tuple[int, int] = (7, 10)) -> Path:
    """Write `n` clips of split `split` into `out`; returns the dataset description path.
    `words_range` sets how much each clip says (about 3 s by default)."""
    bank = identities(faces)
    voices = HELDOUT_VOICES if faces == "heldout" else VOICES
    plans = ((plan_clip(index, rng, bank, voices), rng) for index, rng in _clip_rngs(seed, n))
    return write_split(out, split, plans, seed, n, progress, words_range)


def generate_families(out: str | Path, per_family: int, seed: int, split: str = "train", pool: str = "train",
                      families: tuple[str, ...] = FAMILIES, progress=None) -> Path:
    """Write a split of every manipulation family (`per_family` clips each) and real clips
    (one per two fakes), from the `pool` ("train" or "heldout") faces, voices and real
    recordings; returns the dataset description path."""
    bank = identities(pool)
    voices = HELDOUT_VOICES if pool == "heldout" else VOICES
    source_split = "test" if pool == "heldout" else "train"
    speech_sources = tuple(s.id for s in sources("speech", source_split))
    music = tuple(s.id for s in sources("music", source_split))
    schedule = family_schedule(families, per_family)
    plans = ((plan_family_clip(family, rng, bank, voices, speech_sources, music), rng)
             for family, (_, rng) in zip(schedule, _clip_rngs(seed, len(schedule))))
    return write_split(out, split, plans, seed, len(schedule), progress)


def _clip_rngs(seed: int, n: int):
    for index in range(n):
        yield index, np.random.default_rng([seed, index])


def write_split(out: str | Path, split: str, plans, seed: int, n: int, progress=None,
                words_range: tuple[int, int] = (7, 10)) -> Path:
    """Render and write the planned clips of one split with their ground truth; `plans`
    yields (plan, the generator that drew it), which goes on to draw the rendering."""
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    records, regions, clicks = [], {}, []
    for index, (plan, rng) in enumerate(plans):
        frames, audio, boxes = render_clip(plan, rng, seed * 100_000 + index, words_range)
        name = f"{split}/{index:04d}.mp4"
        write_test_clip(out / name, frames, audio=audio, crf=plan.crf)
        records.append(_record(name, split, plan, frames, audio))
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
    return update_description(out, split)


def _record(name: str, split: str, plan: ClipPlan, frames: np.ndarray, audio: np.ndarray) -> dict:
    """The clip's AV-Deepfake1M record, with what it was made of."""
    segments = [list(plan.segment)] if plan.segment else []
    # desync keeps every frame and every sample real: only their alignment is fake (fake_segments)
    visual = segments if plan.kind in ("visual_modified", "both_modified") else []
    audio_fake = segments if plan.kind in ("audio_modified", "both_modified") else []
    family = None if plan.kind == "real" else plan.kind if plan.kind == "desync" else \
        "+".join(f for f, on in ((plan.visual_family, visual), (plan.audio_family, audio_fake)) if on)
    return {"file": name, "original": None, "split": split, "modify_type": plan.kind, "family": family,
            "fake_segments": segments, "visual_fake_segments": visual, "audio_fake_segments": audio_fake,
            "video_frames": len(frames), "audio_frames": len(audio), "identity": plan.face.name,
            "donor": plan.donor.name if visual else None,
            "voice": plan.speech_source or plan.voice, "speech_source": plan.speech_source,
            "frame_size": list(plan.frame_size), "crf": plan.crf, "bed": plan.bed}


def _write_exddv(path: Path, clicks: list, split: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "username", "movie_name", "text", "dataset", "manipulation", "click_locations",
                     "difficulty", "split"])
    for index, (name, points) in enumerate(clicks):
        writer.writerow([index, "generator", name, "mouth region re-rendered from another face", "synthetic",
                         "mouth_swap", json.dumps(points), 1, split])
    path.write_text(buffer.getvalue())


def update_description(out: Path, split: str) -> Path:
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
