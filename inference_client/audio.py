"""The one door for audio: any file FFmpeg reads -> what the models take (16 kHz mono float32 in [-1, 1]).

PyAV (whose wheels bundle FFmpeg: wav, flac, mp3, aac/m4a, ogg/opus/vorbis, webm, audio inside video
containers) decodes; channels are averaged in numpy (FFmpeg's own stereo->mono matrix is not a plain
mean); FFmpeg's resampler changes the rate. A file already at the target rate and mono is never
resampled, so its samples come back bit-exact (int PCM scaled by 2^(bits-1), as soundfile reads it):
parity tests compare our outputs with FunASR's and pyannote's on these exact samples.

Used by the api, its worker, the tests and the export scripts' reference runs alike. This module
imports numpy, PyAV and speechlib only, so it also loads in the export environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from speechlib.interfaces import SAMPLE_RATE

__all__ = [
    "AudioDecodeError",
    "AudioInfo",
    "DecodedAudio",
    "decode_audio",
    "decode_to_file",
    "iter_audio",
    "probe_audio",
]

# Planar/packed sample formats -> the scale that maps them to [-1, 1] (unsigned 8-bit is offset too).
_INT_SCALE = {
    "s16": 32768.0,
    "s16p": 32768.0,
    "s32": 2.0**31,
    "s32p": 2.0**31,
    "s64": 2.0**63,
    "s64p": 2.0**63,
}
_FLOAT_FORMATS = {"flt", "fltp", "dbl", "dblp"}


class AudioDecodeError(ValueError):
    """The input is not decodable audio; the message names the problem for the person who sent it."""


@dataclass(frozen=True)
class AudioInfo:
    """What a probe learns without decoding the whole file. ``duration_s`` is the container's claim
    (None when it makes none, e.g. some webm streams); decode to know for sure."""

    format: str  # container, e.g. "wav", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "pcm_s16le", "aac", "opus"
    sample_rate: int
    channels: int
    duration_s: float | None


def _open(source):
    import av

    try:
        return av.open(str(source) if isinstance(source, Path) else source, mode="r")
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        raise AudioDecodeError(f"not a readable audio file: {e}") from e
    except av.error.FFmpegError as e:
        raise AudioDecodeError(f"cannot open the audio: {e}") from e


def _audio_stream(container):
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise AudioDecodeError(f"no audio stream in the file (found: {', '.join(kinds)})")
    return container.streams.audio[0]


def probe_audio(source: str | Path) -> AudioInfo:
    """Container, codec, rate, channels and claimed duration of ``source``; raises
    :class:`AudioDecodeError` for anything that is not a file with an audio stream."""
    with _open(source) as container:
        stream = _audio_stream(container)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # av.time_base: microseconds
        ctx = stream.codec_context
        return AudioInfo(
            format=container.format.name,
            codec=ctx.name,
            sample_rate=int(ctx.sample_rate or 0),
            channels=int(ctx.channels or 0),
            duration_s=duration,
        )


def _to_float_mono(frame) -> np.ndarray:
    """One decoded frame as float32 mono (mean of the channels)."""
    fmt = frame.format.name
    x = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        x = x.reshape(-1, channels).T
    if fmt in _FLOAT_FORMATS:
        x = x.astype(np.float32, copy=False)
    elif fmt in _INT_SCALE:
        x = (x.astype(np.float64) / _INT_SCALE[fmt]).astype(np.float32)
    elif fmt in ("u8", "u8p"):
        x = ((x.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    else:  # pragma: no cover - FFmpeg has no other sample formats today
        raise AudioDecodeError(f"unsupported sample format {fmt}")
    return x.mean(axis=0, dtype=np.float32) if channels > 1 else x[0]


def iter_audio(
    source: str | Path, sample_rate: int = SAMPLE_RATE, block_s: float = 30.0
) -> Iterator[np.ndarray]:
    """Decode ``source`` piece by piece: float32 mono blocks at ``sample_rate`` Hz of about
    ``block_s`` seconds (the last one shorter). Memory stays bounded by one block, whatever the
    file's length. Raises :class:`AudioDecodeError` for undecodable input (also midway, for a file
    that is truncated or corrupt after its header)."""
    import av

    block = max(1, int(block_s * sample_rate))
    pending: list[np.ndarray] = []
    n_pending = 0

    def take(final: bool) -> Iterator[np.ndarray]:
        nonlocal pending, n_pending
        while n_pending >= block or (final and n_pending):
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            out, rest = joined[:block], joined[block:]
            pending, n_pending = ([rest] if rest.size else []), rest.size
            yield np.ascontiguousarray(out, dtype=np.float32)

    with _open(source) as container:
        stream = _audio_stream(container)
        resampler = None
        try:
            for frame in container.decode(stream):
                if frame.sample_rate != sample_rate:
                    if resampler is None:  # keep the channels: they are averaged after, in numpy
                        fmt = "fltp" if len(frame.layout.channels) > 1 else "flt"
                        resampler = av.AudioResampler(format=fmt, layout=frame.layout.name, rate=sample_rate)
                    frames = resampler.resample(frame)
                else:
                    frames = [frame]
                for f in frames:
                    x = _to_float_mono(f)
                    if x.size:
                        pending.append(x)
                        n_pending += x.size
                yield from take(final=False)
            if resampler is not None:
                for f in resampler.resample(None):  # flush the resampler's tail
                    pending.append(_to_float_mono(f))
                    n_pending += pending[-1].size
        except av.error.FFmpegError as e:
            raise AudioDecodeError(f"the audio is corrupt or truncated: {e}") from e
    yield from take(final=True)


def decode_audio(source: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole of ``source`` as float32 mono at ``sample_rate`` Hz, clipped to [-1, 1]. Raises
    :class:`AudioDecodeError` for undecodable input, and for a file with no samples or with NaN/inf
    samples (which the models refuse)."""
    blocks = list(iter_audio(source, sample_rate))
    if not blocks:
        raise AudioDecodeError("the audio has no samples")
    x = np.concatenate(blocks)
    if not np.isfinite(x).all():
        raise AudioDecodeError("the audio holds NaN or infinite samples")
    return np.clip(x, -1.0, 1.0, out=x)


# -- decoded once, on disk --------------------------------------------------------------------------

_PCM_DTYPE = np.dtype("<f4")  # raw little-endian float32, no header


@dataclass(frozen=True)
class DecodedAudio:
    """A recording decoded by :func:`decode_to_file`: raw little-endian float32 mono samples at
    ``sample_rate`` Hz in ``path`` (no header), clipped to [-1, 1], finite. ``source`` is the probe of
    the original file with ``duration_s`` replaced by the decoded duration. Read it in pieces
    (:meth:`read`, :meth:`blocks`): nothing here loads the whole file."""

    path: Path
    sample_rate: int
    num_samples: int
    source: AudioInfo | None = None

    @classmethod
    def open(
        cls, path: str | Path, sample_rate: int = SAMPLE_RATE, source: AudioInfo | None = None
    ) -> DecodedAudio:
        """An existing decoded file (its length from its size)."""
        path = Path(path)
        size = path.stat().st_size
        if size % _PCM_DTYPE.itemsize:
            raise AudioDecodeError(f"{path} is not a whole number of float32 samples ({size} bytes)")
        return cls(path, sample_rate, size // _PCM_DTYPE.itemsize, source)

    @property
    def duration_s(self) -> float:
        """Seconds of audio."""
        return self.num_samples / self.sample_rate

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` (sample indices, clamped to the file) as a new float32 array."""
        stop = self.num_samples if stop is None else min(int(stop), self.num_samples)
        start = max(0, min(int(start), stop))
        if stop <= start:
            return np.zeros(0, np.float32)
        with open(self.path, "rb") as f:
            f.seek(start * _PCM_DTYPE.itemsize)
            x = np.fromfile(f, dtype=_PCM_DTYPE, count=stop - start)
        if x.size != stop - start:
            raise AudioDecodeError(
                f"{self.path} is shorter than {self.num_samples} samples: changed on disk?"
            )
        return x.astype(np.float32, copy=False)

    def blocks(self, block_s: float = 30.0, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Samples ``[start, stop)`` in float32 blocks of ``block_s`` seconds (the last shorter)."""
        stop = self.num_samples if stop is None else min(int(stop), self.num_samples)
        step = max(1, int(block_s * self.sample_rate))
        for a in range(max(0, int(start)), stop, step):
            yield self.read(a, min(a + step, stop))


def decode_to_file(
    source: str | Path,
    destination: str | Path,
    sample_rate: int = SAMPLE_RATE,
    block_s: float = 30.0,
    progress: Callable[[float], object] | None = None,
) -> DecodedAudio:
    """Decode ``source`` once to ``destination``: raw little-endian float32 mono at ``sample_rate`` Hz,
    clipped to [-1, 1] (the samples :func:`decode_audio` returns, bit for bit), written block by block
    (memory: one block of ``block_s`` seconds, whatever the file's length).

    The file appears under its name only when complete (written to ``<destination>.partial``, then
    renamed), so an existing ``destination`` is a whole decode. ``progress`` gets the seconds decoded so
    far after each block. A file with no samples gives an empty :class:`DecodedAudio` (not an error:
    callers decide); undecodable input and NaN/inf samples raise :class:`AudioDecodeError`, before any
    sample is written for a file that is not audio at all."""
    info = probe_audio(source)
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".partial")
    n = 0
    try:
        with open(partial, "wb") as out:
            for block in iter_audio(source, sample_rate, block_s):
                if not np.isfinite(block).all():
                    raise AudioDecodeError("the audio holds NaN or infinite samples")
                np.clip(block, -1.0, 1.0, out=block)
                out.write(block.astype(_PCM_DTYPE, copy=False).tobytes())
                n += block.size
                if progress is not None:
                    progress(n / sample_rate)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return DecodedAudio(destination, sample_rate, n, replace(info, duration_s=n / sample_rate))
