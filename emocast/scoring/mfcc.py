"""MFCCs as SyncNet was trained on them (the defaults of ``python_speech_features.mfcc``), vectorised with numpy.

Recipe (16 kHz input, values on the int16 scale, not normalised to [-1, 1]):

1. pre-emphasis ``y[0] = x[0], y[n] = x[n] - 0.97 x[n-1]``;
2. frames of 400 samples (25 ms) every 160 samples (10 ms), rectangular window; the last frame is zero-padded,
   ``num_frames = 1 + ceil((len - 400) / 160)`` (1 when the signal is shorter than a frame);
3. power spectrum ``|rfft(frame, 512)|^2 / 512``; frame energy = its sum;
4. 26 triangular mel filters from 0 Hz to ``sr/2`` on FFT bins ``floor(513 * mel2hz(points) / sr)``;
5. ``log`` of the filter energies (exact zeros replaced by float eps), DCT-II (orthonormal), first 13 kept;
6. sinusoidal lifter with L = 22; coefficient 0 replaced by ``log(frame energy)``.

Returns ``(13, num_frames)``, the layout syncnet_python feeds to the audio stream.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dct

SAMPLE_RATE = 16000
WIN_LENGTH = 400
HOP_LENGTH = 160
N_FFT = 512
N_FILTERS = 26
N_CEPSTRA = 13
PREEMPHASIS = 0.97
LIFTER = 22


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int = N_FILTERS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(n_filters, n_fft // 2 + 1)`` triangular filters on integer FFT bins."""
    points = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_filters + 2)
    bins = np.floor((n_fft + 1) * mel_to_hz(points) / sample_rate)
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]
    lo, mid, hi = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((k >= lo) & (k < mid), (k - lo) / (mid - lo), 0.0)
        falling = np.where((k >= mid) & (k < hi), (hi - k) / (hi - mid), 0.0)
    return rising + falling


def frame_signal(signal: np.ndarray, win: int = WIN_LENGTH, hop: int = HOP_LENGTH) -> np.ndarray:
    n = len(signal)
    num = 1 if n <= win else 1 + int(np.ceil((n - win) / hop))
    padded = np.zeros((num - 1) * hop + win, dtype=np.float64)
    padded[:n] = signal
    idx = np.arange(win)[None, :] + hop * np.arange(num)[:, None]
    return padded[idx]


def mfcc(signal, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(13, num_frames)`` MFCCs of a mono signal given on the int16 scale."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("empty audio signal")
    x = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    frames = frame_signal(x)
    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2 / N_FFT
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = power @ mel_filterbank(sample_rate=sample_rate).T
    feat = np.where(feat == 0, eps, feat)
    ceps = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :N_CEPSTRA]
    ceps = ceps * (1.0 + (LIFTER / 2.0) * np.sin(np.pi * np.arange(N_CEPSTRA) / LIFTER))
    ceps[:, 0] = np.log(energy)
    return ceps.T
