"""The numpy mel spectrogram against librosa, whose output the speech encoders were trained on."""
import librosa
import numpy as np
import pytest

from models.spectrogram import log_mel, mel_filters, mel_power
from models.timing import MEL_HOP, MEL_N_FFT, N_MELS, SAMPLE_RATE


@pytest.mark.filterwarnings("ignore:n_fft=400 is too large")  # librosa's note on clips shorter than a window
@pytest.mark.parametrize("n_samples", [1, 399, 400, 401, 16_000, 160_037])
def test_log_mel_equals_librosa(n_samples):
    audio = (0.1 * np.random.default_rng(n_samples).standard_normal(n_samples)).astype(np.float32)
    power = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=MEL_N_FFT, hop_length=MEL_HOP,
                                           n_mels=N_MELS, center=True)
    expected = librosa.power_to_db(power, ref=np.max, top_db=80.0)
    mine = log_mel(audio)
    assert mine.shape == expected.shape
    assert np.abs(mine - expected).max() < 1e-3  # dB
    assert mine.min() >= mine.max() - 80.0


def test_speaker_encoder_mel_power_equals_librosa():
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    expected = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40)
    mine = mel_power(audio, 400, 160, 40)
    assert mine.shape == expected.shape
    np.testing.assert_allclose(mine, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_mel_filters_equal_librosa_and_are_read_only():
    filters = mel_filters(SAMPLE_RATE, MEL_N_FFT, N_MELS)
    np.testing.assert_allclose(filters, librosa.filters.mel(sr=SAMPLE_RATE, n_fft=MEL_N_FFT, n_mels=N_MELS),
                               atol=1e-7)
    with pytest.raises(ValueError):
        filters[0, 0] = 1.0

