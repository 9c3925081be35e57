"""Audio-visual synchrony from mouth motion against the speech envelope, on the step clock.

The mouth opening per step (inner-lip gap over the eye distance, from the face mesh) is
cross-correlated with the audio's log-energy envelope (floored 50 dB below the clip's
loudest step) at lags of up to ±MAX_LAG_STEPS. Both signals lose their slow drifts first
(a 0.5 s moving average is subtracted) and are standardised. The lag of the highest
correlation is the offset: positive when the video lags the audio (a mouth movement
comes after the sound it makes). Where the best correlation stays under MIN_CORRELATION
the lips do not visibly follow the sound (a still or badly tracked mouth; speech's
syllable rhythm then makes side peaks at about ±0.25 s) and the scorer gives no
judgement. Otherwise a clip is flagged as out of sync when the offset is at least
MIN_FLAG_OFFSET_S and its correlation beats the in-sync one by FLAG_MARGIN. The two
thresholds were set on the real clips of the synthetic sync split
(benchmarks/bench_verdicts.py): in-sync clips that follow the sound correlate at
0.55-0.76, those that do not at 0.08-0.17; shifted clips beat lag 0 by 0.49 or more.

A second scorer, `sync/avhubert-agreement` (`estimate_feature_sync`), follows AVH-Align's
unsupervised proxy: AV-HuBERT run on the audio alone and on the lips alone, and the lag at
which the two feature streams agree best. It needs an AV-HuBERT checkpoint (`--weights`)
and gives the same SyncResult; its thresholds are relative to the clip's own lag curve, not
fitted, as no checkpoint can be downloaded here to fit them on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.calibration import noise_scale
from models.faces import FaceTrack
from models.timing import SAMPLES_PER_STEP, STEP_RATE

SYNC_SCORER_ID = "sync/mouth-audio"
AGREEMENT_SCORER_ID = "sync/avhubert-agreement"  # AV-HuBERT's audio-only against its lips-only features
SYNC_SCORERS = (SYNC_SCORER_ID, AGREEMENT_SCORER_ID)
AGREEMENT_PROMINENCE = 3.0  # the agreement peak over the lag curve's median, in robust spreads of the curve
MAX_LAG_STEPS = 15  # ±0.6 s, the paper's synchronisation window
MIN_FLAG_OFFSET_S = 0.08
FLAG_MARGIN = 0.2  # correlation at the best lag minus at lag 0
LOCAL_WINDOW_STEPS = 25  # ±1 s around a step for its local agreement
MIN_STEPS = 2 * MAX_LAG_STEPS + 10  # below this the correlation over lags means little
ENVELOPE_FLOOR = 1e-5  # -50 dB
MIN_CORRELATION = 0.3  # below this at the best lag the lips do not visibly follow the sound: no judgement
DETREND_STEPS = 12  # about 0.5 s


@dataclass
class SyncResult:
    """The clip's audio-visual offset and how sure the correlation is of it."""

    offset_s: float  # positive: the video lags the audio
    best_correlation: float  # at the best lag
    in_sync_correlation: float  # at lag 0
    flagged: bool  # out of sync by at least MIN_FLAG_OFFSET_S with a clear margin
    lag_correlations: np.ndarray  # (2·MAX_LAG_STEPS + 1,) from −MAX to +MAX
    step_agreement: np.ndarray  # (T,) local correlation at lag 0 (±1 s window), -1..1
    reliable: bool  # enough steps and a moving mouth to judge
    scorer: str = SYNC_SCORER_ID

    @property
    def margin(self) -> float:
        return self.best_correlation - self.in_sync_correlation

    def to_dict(self) -> dict:
        return {"scorer": self.scorer, "offset_s": _finite(self.offset_s) if self.reliable else None,
                "best_correlation": _finite(self.best_correlation),
                "in_sync_correlation": _finite(self.in_sync_correlation), "margin": _finite(self.margin),
                "flagged": self.flagged, "reliable": self.reliable,
                "lags_s": [round(lag / STEP_RATE, 3) for lag in range(-MAX_LAG_STEPS, MAX_LAG_STEPS + 1)],
                "lag_correlations": [_finite(v) for v in self.lag_correlations],
                "step_agreement": [_finite(v) for v in self.step_agreement]}


def _finite(value: float) -> float | None:
    """Rounded for the report; None where a correlation is undefined (a flat signal)."""
    return round(float(value), 4) if np.isfinite(value) else None


def speech_envelope(audio: np.ndarray, n_steps: int) -> np.ndarray:
    """(T,) log energy of the audio in each 40 ms step, floored 50 dB below the loudest step
    (so silence, padding and digital zeros do not dominate)."""
    frames = np.zeros(n_steps * SAMPLES_PER_STEP, np.float64)
    usable = min(len(audio), len(frames))
    frames[:usable] = audio[:usable]
    energy = (frames.reshape(n_steps, SAMPLES_PER_STEP) ** 2).mean(1)
    return np.log(np.maximum(energy, energy.max() * ENVELOPE_FLOOR) + 1e-12)


def estimate_sync(audio: np.ndarray, track: FaceTrack) -> SyncResult:
    """The offset between mouth motion and speech for one clip."""
    n_steps = track.n_steps
    openings = track.mouth_openings if track.mouth_openings is not None else np.full(n_steps, np.nan)
    mouth = _detrended(np.nan_to_num(openings, nan=float(np.nanmean(openings)) if np.isfinite(openings).any()
                                     else 0.0))
    sound = _detrended(speech_envelope(audio, n_steps))
    lags = np.arange(-MAX_LAG_STEPS, MAX_LAG_STEPS + 1)
    correlations = np.array([_lagged_correlation(mouth, sound, lag) for lag in lags])
    best = int(np.nanargmax(correlations)) if np.isfinite(correlations).any() else MAX_LAG_STEPS
    reliable = bool(n_steps >= MIN_STEPS and np.isfinite(openings).mean() > 0.5 and np.std(mouth) > 1e-6
                    and np.isfinite(correlations[best]) and correlations[best] >= MIN_CORRELATION)
    offset_steps = lags[best] + _parabolic_peak(correlations, best)
    in_sync = float(correlations[MAX_LAG_STEPS])
    best_value = float(correlations[best])
    offset_s = float(offset_steps / STEP_RATE)
    flagged = bool(reliable and abs(offset_s) >= MIN_FLAG_OFFSET_S and best_value - in_sync >= FLAG_MARGIN)
    return SyncResult(offset_s, best_value, in_sync, flagged, correlations, _local_agreement(mouth, sound),
                      reliable)


def estimate_feature_sync(audio_features: np.ndarray, video_features: np.ndarray) -> SyncResult:
    """The offset between two per-step feature streams of one model, AVH-Align's
    unsupervised proxy: AV-HuBERT run on the audio alone and on the lips alone embeds both
    in one space, and in sync the two agree best at lag 0. Each stream loses its clip mean
    and each step is scaled to unit length; the agreement at a lag is the mean cosine of
    video[t + lag] with audio[t] (positive: the video lags). Not calibrated: the peak must
    stand AGREEMENT_PROMINENCE robust spreads of the lag curve above its median to count, and
    a shifted peak must beat lag 0 by as much to flag the clip."""
    audio, video = _unit_rows(audio_features), _unit_rows(video_features)
    lags = np.arange(-MAX_LAG_STEPS, MAX_LAG_STEPS + 1)
    curve = np.array([_lagged_agreement(audio, video, lag) for lag in lags])
    best = int(np.nanargmax(curve)) if np.isfinite(curve).any() else MAX_LAG_STEPS
    spread = noise_scale(curve[np.isfinite(curve)])
    prominence = AGREEMENT_PROMINENCE * max(spread, 1e-6)
    reliable = bool(len(audio) >= MIN_STEPS and np.isfinite(curve[best])
                    and curve[best] - np.nanmedian(curve) >= prominence)
    offset_s = float((lags[best] + _parabolic_peak(curve, best)) / STEP_RATE)
    in_sync, best_value = float(curve[MAX_LAG_STEPS]), float(curve[best])
    flagged = bool(reliable and abs(offset_s) >= MIN_FLAG_OFFSET_S and best_value - in_sync >= prominence)
    cosines = np.sum(audio * video, axis=1)
    local = np.convolve(np.pad(cosines, LOCAL_WINDOW_STEPS, mode="edge"),
                        np.ones(2 * LOCAL_WINDOW_STEPS + 1) / (2 * LOCAL_WINDOW_STEPS + 1), mode="valid")
    return SyncResult(offset_s, best_value, in_sync, flagged, curve, local, reliable, AGREEMENT_SCORER_ID)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    """(T, D) features minus their clip mean, each row scaled to unit length (zero rows stay zero)."""
    centred = np.asarray(features, np.float64) - np.mean(features, axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


def _lagged_agreement(audio: np.ndarray, video: np.ndarray, lag: int) -> float:
    """Mean cosine of video[t + lag] with audio[t] over the steps both exist."""
    a, v = (audio[:len(audio) - lag], video[lag:]) if lag >= 0 else (audio[-lag:], video[:lag])
    return float(np.mean(np.sum(a * v, axis=1))) if len(a) >= 3 else float("nan")


def _detrended(signal: np.ndarray) -> np.ndarray:
    """The signal minus its moving average over DETREND_STEPS, standardised."""
    width = min(DETREND_STEPS, len(signal))
    padded = np.pad(signal, (width // 2, width - width // 2 - 1), mode="edge")
    fast = signal - np.convolve(padded, np.ones(width) / width, mode="valid")
    spread = fast.std()
    return (fast - fast.mean()) / spread if spread > 0 else fast * 0.0


def _lagged_correlation(mouth: np.ndarray, sound: np.ndarray, lag: int) -> float:
    """Pearson correlation of mouth[t + lag] with sound[t] over the steps both exist."""
    if lag >= 0:
        a, b = mouth[lag:], sound[:len(sound) - lag]
    else:
        a, b = mouth[:lag], sound[-lag:]
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _parabolic_peak(values: np.ndarray, index: int) -> float:
    """Sub-step correction of a peak from its two neighbours (0 at the ends or when flat)."""
    if index <= 0 or index >= len(values) - 1 or not np.isfinite(values[index - 1:index + 2]).all():
        return 0.0
    left, centre, right = values[index - 1], values[index], values[index + 1]
    curvature = left - 2 * centre + right
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def _local_agreement(mouth: np.ndarray, sound: np.ndarray) -> np.ndarray:
    """Per step, the lag-0 correlation over the ±1 s around it."""
    out = np.zeros(len(mouth))
    for step in range(len(mouth)):
        lo, hi = max(0, step - LOCAL_WINDOW_STEPS), min(len(mouth), step + LOCAL_WINDOW_STEPS + 1)
        a, b = mouth[lo:hi], sound[lo:hi]
        out[step] = float(np.corrcoef(a, b)[0, 1]) if hi - lo >= 3 and a.std() > 0 and b.std() > 0 else 0.0
    return out
