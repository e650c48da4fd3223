"""Acoustic front end of FunASR models: kaldi fbank -> LFR stacking -> CMVN.

Uses kaldi-native-fbank, the fbank FunASR's own runtime (funasr-onnx) uses, so features are
identical to the reference's. All frame indices count 10 ms frames (``FRAME_SHIFT`` samples apart,
``FRAME_LENGTH`` samples long, kaldi ``snip_edges`` framing: frame ``i`` covers samples
``[i*160, i*160+400)``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np

from speechlib.interfaces import SAMPLE_RATE

FRAME_SHIFT = SAMPLE_RATE // 100  # 160 samples = 10 ms
FRAME_LENGTH = SAMPLE_RATE * 25 // 1000  # 400 samples = 25 ms
PCM_SCALE = 32768.0  # FunASR feeds kaldi fbank 16-bit-scaled samples


def num_frames(num_samples: int) -> int:
    """Number of complete 25 ms / 10 ms frames in ``num_samples`` samples (kaldi snip_edges)."""
    if num_samples < FRAME_LENGTH:
        return 0
    return (num_samples - FRAME_LENGTH) // FRAME_SHIFT + 1


@dataclass(frozen=True)
class FrontendConfig:
    """The ``frontend_conf`` block of a FunASR ``config.yaml``."""

    n_mels: int = 80
    frame_length: int = 25  # ms
    frame_shift: int = 10  # ms
    window: str = "hamming"
    dither: float = 0.0
    lfr_m: int = 1
    lfr_n: int = 1

    @classmethod
    def from_dict(cls, conf: dict) -> FrontendConfig:
        known = {k: conf[k] for k in cls.__dataclass_fields__ if k in conf}
        return cls(**known)


def load_cmvn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaldi-nnet ``am.mvn`` (``<AddShift>`` then ``<Rescale>``): returns (shift, scale)."""
    text = Path(path).read_text()
    vectors = []
    for tag in ("<AddShift>", "<Rescale>"):
        start = text.index(tag)
        match = re.search(r"\[([^\]]*)\]", text[start:])
        if match is None:
            raise ValueError(f"{path}: no vector after {tag}")
        vectors.append(np.array(match.group(1).split(), dtype=np.float32))
    return vectors[0], vectors[1]


def fbank_options(conf: FrontendConfig) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.dither = conf.dither
    opts.frame_opts.window_type = conf.window
    opts.frame_opts.frame_shift_ms = float(conf.frame_shift)
    opts.frame_opts.frame_length_ms = float(conf.frame_length)
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = conf.n_mels
    opts.energy_floor = 0.0
    return opts


def frame_decibels(waveform: np.ndarray, first_frame: int = 0) -> np.ndarray:
    """Energy of each 25 ms frame in dB: ``10*log10(sum(x**2) + 1e-6)`` on samples in [-1, 1].

    ``waveform`` must start at sample ``first_frame * FRAME_SHIFT`` of the stream.
    """
    n = num_frames(len(waveform))
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    x = waveform.astype(np.float64)
    sq = np.concatenate(([0.0], np.cumsum(x * x)))
    starts = np.arange(n) * FRAME_SHIFT
    energy = sq[starts + FRAME_LENGTH] - sq[starts]
    return 10.0 * np.log10(np.maximum(energy, 0.0) + 1e-6)


class StreamingFeatures:
    """Incremental fbank -> LFR -> CMVN for one stream; equal to the one-shot result at any chunking.

    ``accept(samples)`` returns the LFR+CMVN feature rows that became final and the energy (dB) of the
    same frames. LFR row ``t`` stacks fbank frames ``t - (m-1)/2 .. t + (m-1)/2`` (clamped to the first
    and last frame, as FunASR pads), so a row needs ``(m-1)/2`` frames of look-ahead or the end of input.
    """

    def __init__(self, conf: FrontendConfig, cmvn: tuple[np.ndarray, np.ndarray] | None):
        if conf.lfr_n != 1:
            raise ValueError("StreamingFeatures supports lfr_n == 1 (the fsmn-VAD front end)")
        self.conf = conf
        self.cmvn = cmvn
        self._fbank = knf.OnlineFbank(fbank_options(conf))
        self._half = (conf.lfr_m - 1) // 2
        self._fbank_rows: list[np.ndarray] = []  # fbank frames not yet fully used by LFR
        self._fbank_base = 0  # stream index of _fbank_rows[0]
        self._fbank_seen = 0  # fbank frames read so far
        self._emitted = 0  # LFR rows emitted so far
        self._tail = np.zeros(0, dtype=np.float32)  # samples of frames not yet complete
        self._tail_base = 0  # stream sample index of _tail[0] (always a frame boundary)
        self._pending_db = np.zeros(0)  # energies of frames whose LFR row is not out yet
        self.finished = False

    def accept(self, samples: np.ndarray, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if self.finished:
            raise RuntimeError("stream already finished")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size:
            self._fbank.accept_waveform(SAMPLE_RATE, (samples * PCM_SCALE).tolist())
        # Energy per frame, on the raw samples (kept in a tail buffer between calls).
        buf = np.concatenate([self._tail, samples])
        n_new = num_frames(len(buf))
        db = frame_decibels(buf) if n_new else np.zeros(0)
        consumed = n_new * FRAME_SHIFT
        self._tail = buf[consumed:]
        self._tail_base += consumed
        if final:
            self._fbank.input_finished()
        ready = self._fbank.num_frames_ready
        while self._fbank_seen < ready:
            self._fbank_rows.append(np.asarray(self._fbank.get_frame(self._fbank_seen), dtype=np.float32))
            self._fbank_seen += 1
        self._pending_db = np.concatenate([self._pending_db, db])
        rows = self._emit(final)
        n = rows.shape[0]
        out_db, self._pending_db = self._pending_db[:n], self._pending_db[n:]
        if final:
            self.finished = True
        return rows, out_db

    def _emit(self, final: bool) -> np.ndarray:
        total = self._fbank_seen
        limit = total if final else total - self._half
        if limit <= self._emitted:
            return np.zeros((0, self.conf.n_mels * self.conf.lfr_m), dtype=np.float32)
        idx = np.arange(self._emitted, limit)[:, None] + np.arange(-self._half, self.conf.lfr_m - self._half)
        idx = np.clip(idx, 0, total - 1) - self._fbank_base
        frames = np.stack(self._fbank_rows)
        rows = frames[idx].reshape(len(idx), -1)
        if self.cmvn is not None:
            shift, scale = self.cmvn
            rows = (rows + shift) * scale
        self._emitted = limit
        # Keep only what later rows still need: frames from (emitted - half) on.
        keep_from = max(self._emitted - self._half, 0) - self._fbank_base
        if keep_from > 0:
            self._fbank_rows = self._fbank_rows[keep_from:]
            self._fbank_base += keep_from
        return rows.astype(np.float32, copy=False)


def lfr_cmvn(
    fbank: np.ndarray, lfr_m: int, lfr_n: int, cmvn: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """One-shot LFR stacking + CMVN of a whole utterance's fbank ``[T, n_mels]`` (FunASR's padding)."""
    T = fbank.shape[0]
    half = (lfr_m - 1) // 2
    t_lfr = math.ceil(T / lfr_n)
    idx = np.arange(t_lfr)[:, None] * lfr_n + np.arange(lfr_m) - half
    rows = fbank[np.clip(idx, 0, T - 1)].reshape(t_lfr, -1)
    if cmvn is not None:
        rows = (rows + cmvn[0]) * cmvn[1]
    return rows.astype(np.float32, copy=False)


def fbank(waveform: np.ndarray, conf: FrontendConfig) -> np.ndarray:
    """One-shot kaldi fbank ``[T, n_mels]`` of a waveform in [-1, 1]."""
    fb = knf.OnlineFbank(fbank_options(conf))
    fb.accept_waveform(SAMPLE_RATE, (np.asarray(waveform, dtype=np.float32) * PCM_SCALE).tolist())
    fb.input_finished()
    n = fb.num_frames_ready
    if n == 0:
        return np.zeros((0, conf.n_mels), dtype=np.float32)
    return np.stack([fb.get_frame(i) for i in range(n)]).astype(np.float32)
