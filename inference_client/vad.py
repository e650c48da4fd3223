"""Voice activity detection through Triton: whole waveforms (``vad``) and live streams (``vad_stream``).

All audio is 16 kHz (:data:`speechlib.interfaces.SAMPLE_RATE`) mono float32 in [-1, 1]; the models
cannot check the rate, so resample before calling (``inference_client.audio.decode_audio`` does).
Times are integer milliseconds from the start of the waveform or stream.

    vad = VADClient(client)
    for seg in await vad.segments(waveform):
        print(seg.start, seg.end)                      # seconds

    async with vad.stream() as stream:                 # one sequence (CORRID) on vad_stream
        for chunk in chunks_of_100_to_200_ms:
            for event in await stream.send(chunk):     # speechlib.vad.SpeechEvent
                ...
        last_events = await stream.close()
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from inference_client.client import TritonClient
from speechlib.interfaces import NO_TIME, SAMPLE_RATE, VAD, VADStream
from speechlib.vad import SpeechEvent

__all__ = ["SpeechEvent", "SpeechSegment", "VADClient", "VADStreamSession", "validate_waveform"]


@dataclass(frozen=True)
class SpeechSegment:
    """One stretch of speech, in integer milliseconds from the start of the waveform."""

    start_ms: int
    end_ms: int

    @property
    def start(self) -> float:
        """Start in seconds."""
        return self.start_ms / 1000

    @property
    def end(self) -> float:
        """End in seconds."""
        return self.end_ms / 1000

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return (self.end_ms - self.start_ms) / 1000

    def samples(self, sample_rate: int = SAMPLE_RATE) -> slice:
        """The segment as a slice into the waveform's samples."""
        return slice(self.start_ms * sample_rate // 1000, self.end_ms * sample_rate // 1000)


def validate_waveform(waveform: np.ndarray, what: str = "waveform") -> np.ndarray:
    """Check that ``waveform`` is 16 kHz mono audio as the models expect; return it as float32.

    Other float dtypes are converted; integer PCM, several channels, NaN/inf and int16-scaled floats
    are refused with the fix in the message. The sample rate cannot be checked here: it must be 16 kHz.
    """
    if not isinstance(waveform, np.ndarray):
        raise TypeError(f"{what} must be a numpy array of float32 samples, got {type(waveform).__name__}")
    if waveform.ndim != 1:
        hint = ""
        if waveform.ndim == 2 and min(waveform.shape) <= 8:
            axis = int(np.argmin(waveform.shape))
            hint = f"; it looks like {waveform.shape[axis]} channels: mix down with x.mean(axis={axis})"
        raise ValueError(f"{what} must be 1-D mono samples, got shape {waveform.shape}{hint}")
    if np.issubdtype(waveform.dtype, np.integer):
        scale = {1: "128", 2: "32768", 4: "2147483648"}.get(waveform.dtype.itemsize, "its full scale")
        raise TypeError(
            f"{what} has integer dtype {waveform.dtype}; expected float32 in [-1, 1]: "
            f"use x.astype(np.float32) / {scale}"
        )
    if not np.issubdtype(waveform.dtype, np.floating):
        raise TypeError(f"{what} must be float32 samples, got dtype {waveform.dtype}")
    x = np.ascontiguousarray(waveform, dtype=np.float32)
    if x.size:
        if not np.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or infinite samples")
        peak = float(np.abs(x).max())
        if peak > 2.0:
            raise ValueError(
                f"{what} peaks at {peak:.1f}; expected samples in [-1, 1] "
                "(int16-scaled audio? divide by 32768)"
            )
    return x


def _check_silence(max_end_silence_ms: int | None) -> None:
    if max_end_silence_ms is not None and (
        int(max_end_silence_ms) != max_end_silence_ms or max_end_silence_ms < 0
    ):
        raise ValueError(
            f"max_end_silence_ms must be a non-negative integer (ms), got {max_end_silence_ms!r}"
        )


class VADClient:
    """fsmn-VAD on Triton. ``client`` is a :class:`TritonClient` (shared, it owns the request window)."""

    def __init__(self, client: TritonClient, model: str = VAD.NAME, stream_model: str = VADStream.NAME):
        self.client = client
        self.model = model
        self.stream_model = stream_model
        self._batched: dict[str, bool] = {}

    async def has_batch_dim(self, model: str) -> bool:
        """Whether ``model`` has ``max_batch_size > 0`` (requests then carry a leading batch dim of 1)."""
        if model not in self._batched:
            config = await self.client.model_config(model)
            self._batched[model] = int(config.get("max_batch_size", 0)) > 0
        return self._batched[model]

    async def segments(
        self, waveform: np.ndarray, max_end_silence_ms: int | None = None
    ) -> list[SpeechSegment]:
        """Speech segments of a whole 16 kHz mono waveform, sorted and non-overlapping.

        ``max_end_silence_ms``: silence that ends a segment (shorter gaps merge); ``None`` keeps the
        model's default (fsmn-VAD: 800 ms).
        """
        x = validate_waveform(waveform)
        _check_silence(max_end_silence_ms)
        if x.size == 0:
            return []
        batched = await self.has_batch_dim(self.model)
        inputs = {VAD.WAVEFORM: x[None] if batched else x}
        if max_end_silence_ms is not None:
            value = np.array([int(max_end_silence_ms)], np.int32)
            inputs[VAD.MAX_END_SILENCE_MS] = value[None] if batched else value
        out = await self.client.infer(self.model, inputs, [VAD.SEGMENTS])
        return [SpeechSegment(int(s), int(e)) for s, e in out[VAD.SEGMENTS].reshape(-1, 2)]

    async def segments_many(
        self, waveforms: Iterable[np.ndarray], max_end_silence_ms: int | None = None
    ) -> list[list[SpeechSegment]]:
        """:meth:`segments` of many waveforms at once, in order; the requests run concurrently
        through the client's window so Triton can batch them."""
        return list(await asyncio.gather(*(self.segments(w, max_end_silence_ms) for w in waveforms)))

    def stream(self, max_end_silence_ms: int | None = None) -> VADStreamSession:
        """A new live stream on ``vad_stream`` (use as ``async with``)."""
        _check_silence(max_end_silence_ms)
        return VADStreamSession(self, max_end_silence_ms)


class VADStreamSession:
    """One live audio stream on the sequence-batched ``vad_stream`` model.

    The stream is one Triton sequence with a random 63-bit correlation id (``sequence_id``, unique
    across processes). The first :meth:`send` carries START, :meth:`close` carries END. Send chunks of
    100-200 ms in order; concurrent :meth:`send` calls are serialised. Triton drops a sequence that is
    idle longer than the model's ``max_sequence_idle_microseconds``.
    """

    def __init__(self, vad: VADClient, max_end_silence_ms: int | None = None):
        self.vad = vad
        self.max_end_silence_ms = max_end_silence_ms
        self.sequence_id = secrets.randbits(63) or 1
        self.samples_sent = 0
        self.started = False
        self.closed = False
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> VADStreamSession:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if self.closed:
            return
        if exc_type is None:
            await self.close()
            return
        try:  # free the sequence slot on Triton; the original error matters more than this one
            await self.close()
        except Exception:
            pass

    async def send(self, chunk: np.ndarray) -> list[SpeechEvent]:
        """Feed the next samples; return the events they decided (often none)."""
        return await self._request(chunk, end=False)

    async def close(self, chunk: np.ndarray | None = None) -> list[SpeechEvent]:
        """End the stream (with an optional last chunk) and return its final events, e.g. the end of
        a segment still open. Idempotent; a stream that never sent anything makes no request."""
        if self.closed:
            return []
        if not self.started and (chunk is None or np.size(chunk) == 0):
            self.closed = True
            return []
        return await self._request(np.zeros(0, np.float32) if chunk is None else chunk, end=True)

    async def _request(self, chunk: np.ndarray, end: bool) -> list[SpeechEvent]:
        x = validate_waveform(chunk, "audio chunk")
        async with self._lock:
            if self.closed:
                raise RuntimeError(f"VAD stream {self.sequence_id} is closed")
            model = self.vad.stream_model
            batched = await self.vad.has_batch_dim(model)
            inputs = {VADStream.AUDIO_CHUNK: x[None] if batched else x}
            start = not self.started
            if start and self.max_end_silence_ms is not None:
                value = np.array([int(self.max_end_silence_ms)], np.int32)
                inputs[VADStream.MAX_END_SILENCE_MS] = value[None] if batched else value
            if end:
                self.closed = True  # even if the request fails: the sequence cannot continue
            # If a START request fails, ``started`` stays False and the next send starts again.
            out = await self.vad.client.infer(
                model,
                inputs,
                [VADStream.EVENTS],
                sequence_id=self.sequence_id,
                sequence_start=start,
                sequence_end=end,
            )
            self.started = True
            self.samples_sent += x.size
        return [
            SpeechEvent(None if s == NO_TIME else int(s), None if e == NO_TIME else int(e))
            for s, e in out[VADStream.EVENTS].reshape(-1, 2)
        ]
