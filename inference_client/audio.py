"""Read audio files into what the models take: 16 kHz mono float32 in [-1, 1].

WAV only (PCM 8/16/24/32-bit or IEEE float), via scipy; compressed formats are decoded by the api with
ffmpeg before they reach a client.
"""

from __future__ import annotations

import warnings
from math import gcd
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from speechlib.interfaces import SAMPLE_RATE

_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0**31}


def load_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples of a WAV file (any rate, any channels) mixed down to mono and resampled to
    ``sample_rate`` Hz, as float32 in [-1, 1]."""
    with warnings.catch_warnings():
        # espeak-ng and sox add LIST/fact chunks that scipy skips with a warning; the samples are fine.
        warnings.filterwarnings("ignore", "Chunk .* not understood", wavfile.WavFileWarning)
        rate, data = wavfile.read(str(path))
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128) / 128
    elif data.dtype in _INT_SCALE:  # 24-bit files come back as int32, left-aligned
        x = data.astype(np.float32) / _INT_SCALE[data.dtype]
    elif np.issubdtype(data.dtype, np.floating):
        x = data.astype(np.float32)
    else:
        raise ValueError(f"{path}: unsupported WAV sample type {data.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != sample_rate:
        g = gcd(rate, sample_rate)
        x = resample_poly(x, sample_rate // g, rate // g)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
