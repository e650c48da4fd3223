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
    "MIN_DURATION_S",
    "AudioDecodeError",
    "AudioInfo",
    "DecodedAudio",
    "check_audio",
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


# Shorter than this is refused (by :func:`decode_audio` and :func:`check_audio`): no model can say
# anything about it (one VAD frame is 10 ms, the ASR front end's window 25 ms, a speaker embedding
# wants seconds), and it is far more often a recording that did not start than a meeting.
MIN_DURATION_S = 0.1
# How much of an upload :func:`check_audio` decodes (the rest is only demuxed: counted, not decoded)
CHECK_DECODE_S = 60.0


class AudioDecodeError(ValueError):
    """The input is not decodable audio; the message names the problem for the person who sent it.

    ``code`` says which problem, for the api's answers and failed jobs (docs/bad-input.md):
    ``empty_file``, ``not_audio`` (FFmpeg reads no container in it), ``no_audio_stream``,
    ``corrupt_audio`` (its packets do not decode), ``no_samples``, ``too_short`` (under
    :data:`MIN_DURATION_S`), ``non_finite_samples`` (NaN or infinite samples)."""

    def __init__(self, message: str, code: str = "not_audio"):
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # pickled with its code (raised in a child process: api.media)
        return type(self), (str(self), self.code)


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
        if os.path.getsize(source) == 0:
            raise AudioDecodeError("the file is empty (0 bytes)", "empty_file")
    except OSError:
        pass  # av.open names the problem
    try:
        return av.open(str(source) if isinstance(source, Path) else source, mode="r")
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        raise AudioDecodeError(f"not a readable audio file: {_reason(e)}", "not_audio") from e
    except av.error.FFmpegError as e:
        if isinstance(e, OSError):  # a missing or unreadable file: the server's problem, not the audio's
            raise
        raise AudioDecodeError(f"cannot open the audio: {_reason(e)}", "not_audio") from e


def _reason(e: Exception) -> str:
    """FFmpeg's message without the file's path (a server-side temporary name, no use to a client)."""
    return getattr(e, "strerror", None) or str(e)


def _audio_stream(container):
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise AudioDecodeError(f"no audio stream in the file (found: {', '.join(kinds)})", "no_audio_stream")
    return container.streams.audio[0]


def _check_finite(x: np.ndarray, offset_s: float, rate: int) -> None:
    """Refuse NaN/inf samples in mono ``x`` (which starts ``offset_s`` into the audio), saying how
    many and where the first is. Refused rather than replaced: a float file with a NaN is broken
    upstream (a mixer or a converter), and silence or clipping in their place would hide that; the
    models would turn them into NaN features or garbage."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise AudioDecodeError(
            f"the audio holds {int(bad.sum())} NaN or infinite samples (the first at "
            f"{offset_s + first / rate:.3f} s)",
            "non_finite_samples",
        )


def _too_short(seconds: float) -> AudioDecodeError:
    return AudioDecodeError(
        f"the audio is {seconds * 1000:.0f} ms long; at least {MIN_DURATION_S * 1000:.0f} ms is needed",
        "too_short",
    )


def probe_audio(source: str | Path) -> AudioInfo:
    """Container, codec, rate, channels and claimed duration of ``source``; raises
    :class:`AudioDecodeError` for anything that is not a file with an audio stream."""
    with _open(source) as container:
        return _describe(container, _audio_stream(container))


def _describe(container, stream, duration: float | None = None) -> AudioInfo:
    if duration is None:
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


def check_audio(source: str | Path, decode_s: float = CHECK_DECODE_S) -> AudioInfo:
    """What an upload gets before it is kept: :func:`probe_audio`, plus a duration measured on what
    is in the file, not taken from its header (a header may lie, or a browser's webm may claim none).

    Every packet of the audio stream is demuxed (read and counted, not decoded: 0.3-1.0 s for an
    hour of 16 kHz WAV, 1.6-2.3 s for an hour of 44.1 kHz mp3 on 2 busy cores, docs/bad-input.md)
    and the first ``decode_s`` seconds are
    decoded at the file's own rate (no resampling). A file that ends within them is measured by its
    decoded samples (exact); a longer one by its packets' timestamps (last end minus first start).
    Decoding what is left (hours, for a meeting) is the transcription job's.

    Raises :class:`AudioDecodeError` (``.code`` names the case) for an empty file, what FFmpeg
    cannot read, no audio stream, no packets or nothing decodable, NaN/inf samples in the decoded
    part, and audio under :data:`MIN_DURATION_S`. ``duration_s`` of the result is the measurement."""
    with _open(source) as container:
        stream = _audio_stream(container)
        packets = _Packets(container, stream)
        rate = 0
        decoding = True
        for packet in packets:
            if not decoding:
                continue
            offset = packets.decoded
            for frame in packets.decode(packet)[0]:
                rate = frame.sample_rate or rate
                if frame.format.name in _FLOAT_FORMATS:  # (integer PCM is always finite)
                    _check_finite(_to_float_mono(frame), offset / rate, rate)
                offset += frame.samples
            decoding = not rate or packets.decoded < decode_s * rate
        if not packets.count:
            raise AudioDecodeError("the audio has no samples", "no_samples")
        packets.check_decoded()
        if not packets.decoded:
            raise AudioDecodeError("no audio decodes from the file", "corrupt_audio")
        if decoding:  # decoded to the end: the samples are the length
            duration = packets.decoded / rate + packets.filled_s
        elif packets.first is not None and stream.time_base is not None:
            duration = float((packets.last - packets.first) * stream.time_base)
        else:  # no timestamps to measure with: the header's claim is all there is
            duration = _describe(container, stream).duration_s
        if duration is not None and duration < MIN_DURATION_S:
            raise _too_short(duration)
        return _describe(container, stream, duration)


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
        raise AudioDecodeError(f"unsupported sample format {fmt}", "corrupt_audio")
    return x.mean(axis=0, dtype=np.float32) if channels > 1 else x[0]


class _Packets:
    """The audio stream's packets, demuxed one by one, with what a caller needs to measure and
    decode them. A packet that does not decode is skipped, as the ffmpeg command line does (a cut
    file's last packet is partial; a glitch mid-file loses one packet, not the meeting); its time
    comes back as a gap before the next decoded frame, so what follows keeps its place in time. A
    read error ends the stream where it happens (what was read is what there is)."""

    def __init__(self, container, stream):
        self.container, self.stream = container, stream
        self.count = 0  # packets with data
        self.failed = 0
        self.first = self.last = None  # earliest start and latest end, in stream.time_base
        self.decoded = 0  # frames' samples, at the file's own rate
        self.filled_s = 0.0  # seconds of skipped packets given back as gaps
        self._gap = 0.0
        self._error: Exception | None = None

    def __iter__(self):
        import av

        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as e:  # a truncated or damaged container: stop here
                if isinstance(e, OSError) and not isinstance(e, EOFError):
                    raise  # reading the file failed (the disk, not the audio): never a silent end
                self._error = e
                return
            if packet.size:  # (the last packet is empty: it flushes the decoder)
                self.count += 1
                if packet.pts is not None:
                    end = packet.pts + (packet.duration or 0)
                    self.first = packet.pts if self.first is None else min(self.first, packet.pts)
                    self.last = end if self.last is None else max(self.last, end)
            yield packet

    def decode(self, packet) -> tuple[list, float]:
        """The packet's frames, and the seconds of skipped packets just before them."""
        import av

        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:
            if isinstance(e, OSError):
                raise
            self.failed += 1
            self._error = e
            if packet.duration and self.stream.time_base is not None:
                self._gap += float(packet.duration * self.stream.time_base)
            return [], 0.0
        gap = 0.0
        if frames:
            gap, self._gap = self._gap, 0.0  # a gap at the very end is dropped: nothing follows it
            self.decoded += sum(f.samples for f in frames)
            self.filled_s += gap
        return frames, gap

    def check_decoded(self) -> None:
        """Packets that all failed to decode: corrupt (no packets at all is for the caller)."""
        if self.count and not self.decoded and (self.failed or self._error is not None):
            reason = f": {_reason(self._error)}" if self._error is not None else ""
            raise AudioDecodeError(
                f"none of the audio's {self.count} packets decodes (corrupt or truncated){reason}",
                "corrupt_audio",
            )


def iter_audio(
    source: str | Path, sample_rate: int = SAMPLE_RATE, block_s: float = 30.0
) -> Iterator[np.ndarray]:
    """Decode ``source`` piece by piece: float32 mono blocks at ``sample_rate`` Hz of about
    ``block_s`` seconds (the last one shorter). Memory stays bounded by one block, whatever the
    file's length. Raises :class:`AudioDecodeError` for what is not audio, and for a file none of
    whose packets decodes. A file cut short gives what is there, whatever its header claims;
    packets that do not decode mid-file are skipped and their time filled with silence (see
    :class:`_Packets`)."""
    import av

    block = max(1, int(block_s * sample_rate))
    pending: list[np.ndarray] = []
    n_pending = 0

    def add(x: np.ndarray) -> None:
        nonlocal n_pending
        if x.size:
            pending.append(x)
            n_pending += x.size

    def take(final: bool) -> Iterator[np.ndarray]:
        nonlocal pending, n_pending
        while n_pending >= block or (final and n_pending):
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            out, rest = joined[:block], joined[block:]
            pending, n_pending = ([rest] if rest.size else []), rest.size
            yield np.ascontiguousarray(out, dtype=np.float32)

    with _open(source) as container:
        packets = _Packets(container, _audio_stream(container))
        resampler = None
        for packet in packets:
            decoded, gap = packets.decode(packet)
            if gap:
                add(np.zeros(round(gap * sample_rate), np.float32))
            for frame in decoded:
                if frame.sample_rate != sample_rate:
                    if resampler is None:  # keep the channels: they are averaged after, in numpy
                        fmt = "fltp" if len(frame.layout.channels) > 1 else "flt"
                        resampler = av.AudioResampler(format=fmt, layout=frame.layout.name, rate=sample_rate)
                    frames = resampler.resample(frame)
                else:
                    frames = [frame]
                for f in frames:
                    add(_to_float_mono(f))
            yield from take(final=False)
        packets.check_decoded()
        if resampler is not None:
            for f in resampler.resample(None):  # flush the resampler's tail
                add(_to_float_mono(f))
    yield from take(final=True)


def decode_audio(source: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole of ``source`` as float32 mono at ``sample_rate`` Hz, clipped to [-1, 1]. Raises
    :class:`AudioDecodeError` for undecodable input, and for a file with no samples, under
    :data:`MIN_DURATION_S`, or with NaN/inf samples (which the models refuse)."""
    blocks = list(iter_audio(source, sample_rate))
    if not blocks:
        raise AudioDecodeError("the audio has no samples", "no_samples")
    x = np.concatenate(blocks)
    _check_finite(x, 0.0, sample_rate)
    if x.size < MIN_DURATION_S * sample_rate:
        raise _too_short(x.size / sample_rate)
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
            raise AudioDecodeError(
                f"{path} is not a whole number of float32 samples ({size} bytes)", "corrupt_audio"
            )
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
                f"{self.path} is shorter than {self.num_samples} samples: changed on disk?", "corrupt_audio"
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
                _check_finite(block, n / sample_rate, sample_rate)
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
