"""Timing constants of the analysis clock, in one place (as whisper's audio.py).

Every stream is brought to one clock of STEP_RATE steps per second; step t covers
[t / STEP_RATE, (t + 1) / STEP_RATE) seconds.
"""
from __future__ import annotations

import math

STEP_RATE = 25  # analysis steps per second (the SSR-DFD papers' rate)
SAMPLE_RATE = 16_000  # mono audio sample rate fed to every audio encoder
SAMPLES_PER_STEP = SAMPLE_RATE // STEP_RATE  # 640 audio samples per step
SSL_AUDIO_RATE = 50  # wav2vec2 / HuBERT / WavLM output frames per second (hop 320)
N_MELS = 128  # mel bands of the spectrogram figures
MEL_HOP = 160  # 10 ms hop for spectrograms (4 mel frames per step)
MEL_N_FFT = 400  # 25 ms window


def step_centre(step: int) -> float:
    """Centre time in seconds of analysis step `step` (used to pick video frames)."""
    return (step + 0.5) / STEP_RATE


def steps_for_duration(duration_s: float) -> int:
    """Number of steps covering a clip of `duration_s` seconds (a partial last step counts
    when it is at least half a step long); at least one."""
    return max(1, int(math.floor(duration_s * STEP_RATE + 0.5)))
