"""Whisper's log-mel features in numpy, as Smart Turn v3 takes them (voice/turn_models.py).

The same computation as pipecat-ai 1.14.0's `pipecat/audio/turn/smart_turn/_whisper_features.py`
(BSD-2-Clause, Daily), itself derived from Hugging Face Transformers' WhisperFeatureExtractor
(Apache-2.0, The HuggingFace Inc. team): 16 kHz audio of exactly 8 s, normalised to zero mean
and unit variance, 25 ms Hann windows every 10 ms, 80 Slaney mel bands, log10 clamped to 8 below
the maximum and scaled. Written here so neither pipecat nor transformers is a dependency.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16000
SECONDS = 8
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
MEL_FLOOR = 1e-10
NORMALISE_EPSILON = 1e-7


def _hertz_to_mel(frequency: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * frequency / 200.0
    log_region = frequency >= 1000.0
    mels[log_region] = 15.0 + np.log(frequency[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    frequency = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    frequency[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    return frequency


def _mel_filterbank() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) triangular filters with Slaney area normalisation."""
    mel_edges = np.linspace(_hertz_to_mel(np.array([0.0]))[0], _hertz_to_mel(np.array([SAMPLE_RATE / 2]))[0],
                            N_MELS + 2)
    filter_hertz = _mel_to_hertz(mel_edges)
    fft_hertz = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    slopes = filter_hertz[np.newaxis, :] - fft_hertz[:, np.newaxis]
    widths = np.diff(filter_hertz)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (filter_hertz[2:N_MELS + 2] - filter_hertz[:N_MELS]))[np.newaxis, :]


_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window
_FILTERS = _mel_filterbank()


def log_mel_features(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32 features of 8 s of 16 kHz float audio (shorter is padded at the end)."""
    length = SAMPLE_RATE * SECONDS
    values = np.asarray(audio, dtype=np.float32)[:length]
    values = np.pad(values, (0, length - values.size))
    values = (values - values.mean()) / np.sqrt(values.var() + NORMALISE_EPSILON)
    padded = np.pad(values.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    windows = sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    power = (np.abs(np.fft.rfft(windows * _WINDOW, axis=-1)) ** 2).T
    log_spec = np.log10(np.maximum(MEL_FLOOR, _FILTERS.T @ power))[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
