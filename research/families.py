"""Manipulation families of the synthetic benchmark: each one the artefact of a kind of
deepfake tool, applied to one known segment (audio) or to the frames of one segment
inside a known region (visual). Leave-one-family-out evaluation trains on all families
but one and tests on the one left out.

Visual families work on the face sprite of one step and return it with the manipulated
box (sprite pixels); audio families return the whole waveform with the segment replaced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import librosa
import numpy as np
from scipy.signal import lfilter

from models.timing import SAMPLE_RATE

CROSSFADE = 160  # samples (10 ms) at each end of a spliced segment


# -- visual ------------------------------------------------------------------------------------

@dataclass
class VisualContext:
    """What a visual family needs besides the sprite: the face, a donor face, per-clip
    constants drawn once, and the other utterance's mouth openings (lip-sync)."""

    face: "object"  # research.generator.Face
    donor: "object"
    colour_shift: np.ndarray
    other_openings: np.ndarray
    step: int
    rng: np.random.Generator
    animate: Callable  # animate_mouth(sprite, face, opening)


def mouth_ellipse(face, scale: float = 1.0) -> tuple[tuple[int, int], tuple[int, int], tuple[float, ...]]:
    """Centre, axes and box (sprite pixels) of the mouth region the mouth families replace."""
    mx, my, w = face.mouth[0], face.mouth[1], face.mouth_width
    half_w, half_h = 1.0 * w * scale, 0.75 * w * scale
    cy = my + 0.15 * w
    return (int(mx), int(cy)), (int(half_w), int(half_h)), (mx - half_w, cy - half_h, mx + half_w, cy + half_h)


def feathered_mask(shape: tuple[int, int], centre, axes, feather: float) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, feather))[..., None]


def _blend(sprite: np.ndarray, other: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.clip(sprite.astype(np.float32) * (1 - mask) + other.astype(np.float32) * mask, 0, 255).astype(np.uint8)


def _donor_aligned(face, donor, size: tuple[int, int]) -> np.ndarray:
    """The donor sprite moved so its mouth lies on the face's mouth, scaled by mouth width."""
    scale = face.mouth_width / donor.mouth_width
    matrix = np.array([[scale, 0, face.mouth[0] - scale * donor.mouth[0]],
                       [0, scale, face.mouth[1] - scale * donor.mouth[1]]])
    return cv2.warpAffine(donor.sprite, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def poisson_mouth(sprite: np.ndarray, ctx: VisualContext) -> tuple[np.ndarray, tuple]:
    """Another face's mouth pasted by Poisson (seamless) cloning: colours match at the seam,
    texture and shape do not."""
    size = sprite.shape[1], sprite.shape[0]
    moved = _donor_aligned(ctx.face, ctx.donor, size)
    centre, axes, box = mouth_ellipse(ctx.face)
    mask = np.zeros(sprite.shape[:2], np.uint8)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)
    ys, xs = np.nonzero(mask)
    mid = (int((xs.min() + xs.max() + 1) / 2), int((ys.min() + ys.max() + 1) / 2))
    return cv2.seamlessClone(moved, sprite, mask, mid, cv2.NORMAL_CLONE), box


def face_swap(sprite: np.ndarray, ctx: VisualContext) -> tuple[np.ndarray, tuple]:
    """The whole inner face replaced by the donor's, aligned on the face boxes, warped by a
    smooth random field (landmark fitting), colour-transferred and feathered."""
    size = sprite.shape[1], sprite.shape[0]
    fx0, fy0, fx1, fy1 = ctx.face.face_box
    dx0, dy0, dx1, dy1 = ctx.donor.face_box
    scale = (fx1 - fx0) / max(1.0, dx1 - dx0)
    matrix = np.array([[scale, 0, (fx0 + fx1) / 2 - scale * (dx0 + dx1) / 2],
                       [0, scale, (fy0 + fy1) / 2 - scale * (dy0 + dy1) / 2]])
    moved = cv2.warpAffine(ctx.donor.sprite, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = _smooth_warp(moved, ctx.colour_shift)
    centre = (int((fx0 + fx1) / 2), int((fy0 + fy1) / 2 + 0.05 * (fy1 - fy0)))
    axes = (int(0.42 * (fx1 - fx0)), int(0.5 * (fy1 - fy0)))
    mask = feathered_mask(sprite.shape[:2], centre, axes, 0.08 * (fx1 - fx0))
    moved = _colour_transfer(moved, sprite, mask[..., 0] > 0.5)
    box = (centre[0] - axes[0], centre[1] - axes[1], centre[0] + axes[0], centre[1] + axes[1])
    return _blend(sprite, moved, mask), box


def _smooth_warp(image: np.ndarray, seed_values: np.ndarray) -> np.ndarray:
    """A low-frequency displacement (a few pixels), fixed per clip through its colour-shift draw."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b, c = (seed_values / 35.0).astype(np.float32)
    dx = 2.0 * a * np.sin(2 * np.pi * ys / h + b)
    dy = 2.0 * c * np.sin(2 * np.pi * xs / w + a)
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _colour_transfer(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Match the source's per-channel mean and spread inside `region` to the target's (in Lab)."""
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    dst = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    s, d = src[region], dst[region]
    out = (src - s.mean(0)) / (s.std(0) + 1e-3) * d.std(0) + d.mean(0)
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def lip_sync(sprite: np.ndarray, ctx: VisualContext) -> tuple[np.ndarray, tuple]:
    """The same identity's lower face re-rendered (at half resolution) to another utterance's
    mouth movements, blended back: what lip-sync generators leave."""
    face = ctx.face
    other = ctx.animate(face.sprite, face, float(ctx.other_openings[ctx.step]))
    size = sprite.shape[1], sprite.shape[0]
    low = cv2.resize(other, (size[0] // 2, size[1] // 2), interpolation=cv2.INTER_AREA)
    other = cv2.resize(low, size, interpolation=cv2.INTER_LINEAR)
    centre, axes, box = mouth_ellipse(face, scale=1.15)
    return _blend(sprite, other, feathered_mask(sprite.shape[:2], centre, axes, 0.1 * face.mouth_width)), box


def colour_mismatch(sprite: np.ndarray, ctx: VisualContext) -> tuple[np.ndarray, tuple]:
    """The mouth region alone colour- and brightness-shifted (a blend whose colour was not matched)."""
    centre, axes, box = mouth_ellipse(ctx.face)
    shifted = sprite.astype(np.float32) + 0.8 * ctx.colour_shift
    return _blend(sprite, shifted, feathered_mask(sprite.shape[:2], centre, axes, 0.12 * ctx.face.mouth_width)), box


def sharpness_mismatch(sprite: np.ndarray, ctx: VisualContext) -> tuple[np.ndarray, tuple]:
    """The mouth region blurred or over-sharpened against the rest of the face (chosen per
    clip by the sign of the colour-shift draw)."""
    centre, axes, box = mouth_ellipse(ctx.face)
    blurred = cv2.GaussianBlur(sprite, (0, 0), 2.0)
    if ctx.colour_shift[0] >= 0:
        other = blurred
    else:
        other = np.clip(sprite.astype(np.float32) * 2.2 - blurred.astype(np.float32) * 1.2, 0, 255)
    return _blend(sprite, other, feathered_mask(sprite.shape[:2], centre, axes, 0.12 * ctx.face.mouth_width)), box


# -- audio -------------------------------------------------------------------------------------

@dataclass
class AudioContext:
    """What an audio family may draw on: another voice saying something else, another real
    recording, and a seed."""

    rng: np.random.Generator
    other_voice: Callable[[], np.ndarray]
    other_recording: Callable[[], np.ndarray]


def splice(audio: np.ndarray, start: int, end: int, piece: np.ndarray) -> np.ndarray:
    """`audio` with [start, end) replaced by `piece` (padded or cut to fit), cross-faded over 10 ms at both ends."""
    piece = np.pad(piece, (0, max(0, end - start - len(piece))))[: end - start].astype(np.float32)
    fade = min(CROSSFADE, (end - start) // 2)
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    out = audio.copy()
    piece = piece.copy()
    piece[:fade] = piece[:fade] * ramp + audio[start:start + fade] * (1 - ramp)
    piece[len(piece) - fade:] = piece[len(piece) - fade:] * ramp[::-1] + audio[end - fade:end] * ramp
    out[start:end] = piece
    return out


def _with_context(audio: np.ndarray, start: int, end: int, margin: int = 4000) -> tuple[np.ndarray, int]:
    """The segment with up to `margin` samples of context each side (effects need it), and where the segment starts in it."""
    lo = max(0, start - margin)
    return audio[lo:min(len(audio), end + margin)], start - lo


def _transform_segment(audio: np.ndarray, start: int, end: int, effect: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    padded, offset = _with_context(audio, start, end)
    changed = effect(padded)
    return splice(audio, start, end, changed[offset:offset + end - start])


def other_voice(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """The segment re-voiced: another voice says other words (voice conversion / TTS insert)."""
    return splice(audio, start, end, ctx.other_voice())


def pitch_shift(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """The segment's pitch moved 2–5 semitones up or down (formants move with it)."""
    semitones = float(ctx.rng.uniform(2, 5) * ctx.rng.choice([-1, 1]))
    return _transform_segment(audio, start, end,
                              lambda x: librosa.effects.pitch_shift(x, sr=SAMPLE_RATE, n_steps=semitones))


def formant_shift(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """The segment's spectral envelope stretched along frequency by 0.8–0.9 or 1.12–1.25
    (cepstral envelope), pitch kept: another vocal tract, the same melody."""
    factor = float(ctx.rng.choice([ctx.rng.uniform(0.8, 0.9), ctx.rng.uniform(1.12, 1.25)]))
    return _transform_segment(audio, start, end, lambda x: _warp_envelope(x, factor))


def _warp_envelope(signal: np.ndarray, factor: float, lifter: int = 30) -> np.ndarray:
    spectrum = librosa.stft(signal, n_fft=512, hop_length=128)
    log_mag = np.log(np.abs(spectrum) + 1e-6)
    cepstrum = np.fft.irfft(log_mag, axis=0)
    cepstrum[lifter:-lifter] = 0
    envelope = np.fft.rfft(cepstrum, axis=0).real[: log_mag.shape[0]]
    bins = np.arange(envelope.shape[0], dtype=np.float32)
    warped = np.stack([np.interp(bins / factor, bins, column) for column in envelope.T], 1)
    changed = spectrum * np.exp(warped - envelope)
    return librosa.istft(changed, hop_length=128, length=len(signal)).astype(np.float32)


def griffin_lim(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """The segment re-synthesised from its 80-band mel spectrogram by Griffin-Lim (a vocoder's phase artefacts)."""
    def effect(x: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=x, sr=SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=80)
        return librosa.feature.inverse.mel_to_audio(mel, sr=SAMPLE_RATE, n_fft=1024, hop_length=256, n_iter=24,
                                                    length=len(x)).astype(np.float32)
    return _transform_segment(audio, start, end, effect)


def lpc_vocoder(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """The segment re-synthesised by a source-filter (LPC) vocoder: order-16 filters per
    25 ms frame driven by a pulse train at the tracked pitch, or noise when unvoiced."""
    return _transform_segment(audio, start, end, _lpc_resynthesis)


def _lpc_resynthesis(signal: np.ndarray, frame: int = 400, hop: int = 200, order: int = 16) -> np.ndarray:
    f0 = librosa.yin(signal, fmin=70, fmax=400, sr=SAMPLE_RATE, frame_length=1024, hop_length=hop)
    rng = np.random.default_rng(0)
    window = np.hanning(frame).astype(np.float32)
    out = np.zeros(len(signal) + frame, np.float32)
    phase = 0.0
    for index, begin in enumerate(range(0, max(1, len(signal) - frame), hop)):
        chunk = signal[begin:begin + frame] * window
        energy = float(np.sqrt((chunk ** 2).mean()))
        if energy < 1e-4:
            continue
        coeffs = librosa.lpc(chunk.astype(np.float64) + 1e-9 * rng.standard_normal(frame), order=order)
        pitch = float(f0[min(index, len(f0) - 1)])
        voiced = 70 < pitch < 390 and librosa.zero_crossings(chunk).mean() < 0.15
        if voiced:
            excitation = np.zeros(frame, np.float32)
            period = SAMPLE_RATE / pitch
            positions = np.arange(phase, frame, period)
            excitation[positions.astype(int)] = 1.0
            phase = float(positions[-1] + period - hop) if len(positions) else phase - hop
        else:
            excitation = rng.standard_normal(frame).astype(np.float32)
        synth = lfilter([1.0], coeffs, excitation).astype(np.float32) * window
        out[begin:begin + frame] += synth * energy / (float(np.sqrt((synth ** 2).mean())) + 1e-9)
    return out[: len(signal)]


def room_tone_splice(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """A piece of another real recording spliced in, carrying another room: its own noise
    floor and a short reverberation tail that the rest of the clip lacks."""
    piece = ctx.other_recording()
    piece = piece[: end - start] if len(piece) >= end - start else np.pad(piece, (0, end - start - len(piece)))
    decay = float(ctx.rng.uniform(0.05, 0.2))
    taps = np.arange(int(decay * SAMPLE_RATE))
    impulse = ctx.rng.standard_normal(len(taps)) * np.exp(-6.9 * taps / len(taps))
    impulse[0] = 1.0
    wet = np.convolve(piece, impulse / np.abs(impulse).sum() * 4)[: len(piece)]
    level = np.sqrt((audio ** 2).mean() + 1e-9) * float(ctx.rng.uniform(0.05, 0.15))
    wet = wet / (np.abs(wet).max() + 1e-9) * np.abs(audio).max() + level * ctx.rng.standard_normal(len(wet))
    return splice(audio, start, end, wet.astype(np.float32))


def time_stretch(audio: np.ndarray, start: int, end: int, ctx: AudioContext) -> np.ndarray:
    """The speech from the segment on played 10–30 % faster or slower (phase vocoder), cut to the segment."""
    rate = float(ctx.rng.choice([ctx.rng.uniform(0.7, 0.9), ctx.rng.uniform(1.1, 1.3)]))
    stretched = librosa.effects.time_stretch(audio[start:], rate=rate)
    return splice(audio, start, end, stretched)


VISUAL_FAMILIES: dict[str, Callable] = {
    "poisson": poisson_mouth, "faceswap": face_swap, "lipsync": lip_sync, "colour": colour_mismatch,
    "sharpness": sharpness_mismatch,
}  # the original feathered low-resolution mouth swap is research.generator.swap_mouth ("feathered")
AUDIO_FAMILIES: dict[str, Callable] = {
    "voice": other_voice, "pitch": pitch_shift, "formant": formant_shift, "griffinlim": griffin_lim,
    "lpc": lpc_vocoder, "roomtone": room_tone_splice, "stretch": time_stretch,
}
