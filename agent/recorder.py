"""One participant's audio as Ogg/Opus recording chunks, uploaded to the api while the meeting runs
(docs/interfaces.md "Recording chunks and finalize").

:class:`TrackRecorder` takes the track's 16 kHz mono float32 samples (LiveKit streams deliver
silence continuously, so the sample count *is* the track's time) and cuts them at fixed points of the
participant's timeline: chunk ``seq`` holds session time ``[O + seq*C, O + (seq+1)*C)``, where ``O``
is where the participant's chunk 0 starts and ``C`` the chunk length of their track. For a new
participant ``O`` is this track's ``offset_s`` and every chunk carries it (``?offset=``: the api
reads it from the first chunk it stores, whichever that is). For a participant the api already has
(a rejoin, or a restarted agent), ``O`` and ``C`` come from ``GET .../recording`` and the numbering
continues from this track's session time: the time between the tracks stays a gap (silence in
the mix), never renumbered; seqs the api already stores are not sent again (their samples from this
track are dropped: the stored chunk holds that time).

Work happens off ``push()``: a task cuts and encodes (PyAV's libopus in an Ogg container, in a
thread), another uploads in seq order with retries. A chunk's bytes are kept until the api stored
them, and a retry sends the very same bytes (Ogg streams carry a random serial number: re-encoding
would be a 409 ``chunk_conflict``). Memory is bounded: at most ``max_pending_chunks`` encoded chunks
wait (past it the oldest but the one being sent is dropped: ``RECORDING_CHUNKS{result="failed"}``), and while the
participant's place on the timeline is still unknown (the api unreachable at the start) at most
``max_raw_seconds`` of samples (past it the oldest are dropped: ``DROPPED_SECONDS``; their time
becomes silence, the rest keeps its place).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agent import metrics
from agent.api_client import AgentApiClient, ApiClosedError, ApiRejectedError, ApiUnavailableError
from inference_client.audio import MIN_DURATION_S, SAMPLE_RATE

log = logging.getLogger("agent.recorder")

BIT_RATE = 32_000  # Opus, 16 kHz mono speech
OPUS_FRAME = 320  # 20 ms at 16 kHz: libopus' default frame


def encode_ogg_opus(samples: np.ndarray, bit_rate: int = BIT_RATE, rate: int = SAMPLE_RATE) -> bytes:
    """Mono float32 samples -> the bytes of one Ogg/Opus file (its decoded length is ``samples.size``:
    the Ogg granule positions trim the encoder's padding)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = bit_rate
        x = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@dataclass
class ChunkStats:
    """What a recorder did (tests and the benchmark read it)."""

    encoded: int = 0
    stored: int = 0
    failed: int = 0
    bytes_encoded: int = 0
    seconds_encoded: float = 0.0
    encode_cpu_s: float = 0.0  # thread CPU time spent encoding
    stored_seqs: list[int] = field(default_factory=list)


class TrackRecorder:
    """Records one participant's track (module docstring). ``chunk_seconds`` is the api's
    RECORDING_CHUNK_SECONDS (``get_recording()["chunk_seconds"]``), ``offset_s`` this track's first
    sample in session time. ``recording``: a fresh ``get_recording()`` answer, if the caller has one
    (else the recorder asks the api itself before it cuts the first chunk)."""

    def __init__(
        self,
        api: AgentApiClient,
        participant: str,
        *,
        chunk_seconds: float,
        offset_s: float,
        recording: dict | None = None,
        bit_rate: int = BIT_RATE,
        max_pending_chunks: int = 60,
        max_raw_seconds: float = 300.0,
        retry_pause_s: float = 1.0,
        close_timeout: float = 30.0,
    ):
        if chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be > 0")
        self.api = api
        self.participant = participant
        self.offset_s = float(offset_s)
        self.bit_rate = bit_rate
        self.max_pending_chunks = max(1, int(max_pending_chunks))
        self.max_raw_samples = max(1, int(max_raw_seconds * SAMPLE_RATE))
        self.retry_pause_s = retry_pause_s
        self.close_timeout = close_timeout
        self.stats = ChunkStats()
        self.samples_received = 0
        # the track on the api's timeline: set by _resolve()
        self.chunk_seconds = float(chunk_seconds)
        self.track_offset_s: float | None = None  # O: where the participant's chunk 0 starts
        self._send_offset: float | None = None  # ?offset= on every chunk of a new participant
        self._skip: set[int] = set()  # seqs the api stores already (from an earlier track)
        self._shift = 0  # this track's sample 0 as a sample position on the participant's timeline
        self._chunk = 0  # samples per chunk
        # raw samples waiting to be cut: (track sample index, samples)
        self._raw: deque[tuple[int, np.ndarray]] = deque()
        self._raw_samples = 0
        self._raw_event = asyncio.Event()
        # the chunk being filled
        self._seq: int | None = None
        self._buf: np.ndarray | None = None
        self._filled = 0  # highest written position + 1 within the chunk
        # encoded chunks not yet stored, by seq
        self._pending: dict[int, bytes] = {}
        self._uploading: int | None = None  # the seq being sent (never dropped for room)
        self._pending_event = asyncio.Event()
        self._closing = False
        self._recording = recording
        self._cutter: asyncio.Task | None = None
        self._uploader: asyncio.Task | None = None

    # ------------------------------------------------------------------ input
    async def push(self, samples: np.ndarray) -> None:
        """16 kHz mono float32 samples of the track, in order. Returns at once (no network)."""
        if self._closing:
            log.warning("recording of %s: audio pushed after aclose() is not recorded", self.participant)
            return
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not x.size:
            return
        self._raw.append((self.samples_received, x.copy()))
        self.samples_received += x.size
        self._raw_samples += x.size
        while self._raw_samples > self.max_raw_samples and len(self._raw) > 1:
            _, old = self._raw.popleft()
            self._raw_samples -= old.size
            metrics.DROPPED_SECONDS.inc(old.size / SAMPLE_RATE)
            log.warning(
                "recording of %s: %.2f s of audio dropped (backlog full)", self.participant, old.size / 16e3
            )
        self._raw_event.set()
        self._ensure_tasks()

    def _ensure_tasks(self) -> None:
        if self._cutter is None:
            self._cutter = asyncio.create_task(self._cut_loop(), name=f"recorder-cut-{self.participant}")
            self._uploader = asyncio.create_task(self._upload_loop(), name=f"recorder-up-{self.participant}")

    # ------------------------------------------------------------------ timeline
    async def _resolve(self) -> None:
        """Where this track goes on the participant's timeline (module docstring)."""
        recording = self._recording
        while recording is None:
            try:
                recording = await self.api.get_recording()
            except ApiUnavailableError as e:
                log.warning("recording of %s waits for the api: %s", self.participant, e)
                await asyncio.sleep(self.retry_pause_s)
            except ApiRejectedError as e:  # cannot list: record as a new participant
                log.error(
                    "recording of %s: the api refused its listing (%s): starting at seq 0",
                    self.participant,
                    e,
                )
                recording = {"participants": []}
        track = next(
            (p for p in recording.get("participants", []) if p["participant"] == self.participant), None
        )
        if track is None:
            self.track_offset_s = self.offset_s
            self._send_offset = self.offset_s
            self._shift = 0
        else:
            self.chunk_seconds = float(track["chunk_seconds"])
            self.track_offset_s = float(track["offset_seconds"])
            self._skip = set(track.get("seqs", []))
            self._shift = round((self.offset_s - self.track_offset_s) * SAMPLE_RATE)
            log.info(
                "recording of %s resumes: track offset %.3f s, this track at %.3f s, seq %d next",
                self.participant,
                self.track_offset_s,
                self.offset_s,
                max(0, self._shift) // round(self.chunk_seconds * SAMPLE_RATE),
            )
        self._chunk = round(self.chunk_seconds * SAMPLE_RATE)

    def first_seq(self) -> int | None:
        """The seq of this track's first sample (None before the timeline is known)."""
        if self.track_offset_s is None:
            return None
        return max(0, self._shift) // self._chunk

    # ------------------------------------------------------------------ cutting + encoding
    async def _cut_loop(self) -> None:
        try:
            await self._resolve()
            while True:
                while self._raw:
                    start, x = self._raw.popleft()
                    self._raw_samples -= x.size
                    await self._place(start + self._shift, x)
                if self._closing:
                    await self._finish_chunk(final=True)
                    return
                self._raw_event.clear()
                await self._raw_event.wait()
        finally:
            self._pending_event.set()  # the uploader sees the end

    async def _place(self, pos: int, x: np.ndarray) -> None:
        """Write samples that start at timeline position ``pos`` into their chunks."""
        if pos < 0:  # before the participant's chunk 0 (a clock oddity): nowhere to put it
            x, pos = x[-pos:], 0
        while x.size:
            seq, at = divmod(pos, self._chunk)
            if seq != self._seq:
                await self._finish_chunk(final=False)
                self._seq, self._buf, self._filled = seq, np.zeros(self._chunk, np.float32), 0
            n = min(x.size, self._chunk - at)
            assert self._buf is not None
            self._buf[at : at + n] = x[:n]
            self._filled = max(self._filled, at + n)
            x, pos = x[n:], pos + n
            if self._filled == self._chunk and at + n == self._chunk:
                await self._finish_chunk(final=False)

    async def _finish_chunk(self, *, final: bool) -> None:
        """Encode the chunk being filled (whole, or up to its last sample at the end of the track)."""
        seq, buf, filled = self._seq, self._buf, self._filled
        self._seq, self._buf, self._filled = None, None, 0
        if seq is None or buf is None:
            return
        if seq in self._skip:
            log.info(
                "recording of %s: chunk %d is stored already; this track's part of it is dropped",
                self.participant,
                seq,
            )
            return
        samples = buf if filled == self._chunk else buf[:filled]
        if samples.size < MIN_DURATION_S * SAMPLE_RATE:
            return  # the api refuses < 0.1 s: a track that ends just after a boundary
        try:
            data, cpu = await asyncio.to_thread(self._encode, samples)
        except Exception as e:  # (PyAV) lose this chunk, not the track
            log.exception("recording of %s: encoding chunk %d failed", self.participant, seq)
            self._failed(seq, f"encoding failed: {e}")
            return
        self.stats.encoded += 1
        self.stats.bytes_encoded += len(data)
        self.stats.seconds_encoded += samples.size / SAMPLE_RATE
        self.stats.encode_cpu_s += cpu
        self._pending[seq] = data
        while len(self._pending) > self.max_pending_chunks:  # drop the oldest (not the one in flight)
            oldest = min(s for s in self._pending if s != self._uploading)
            del self._pending[oldest]
            self._failed(oldest, "too many chunks wait for the api")
        self._pending_event.set()

    def _encode(self, samples: np.ndarray) -> tuple[bytes, float]:
        t = time.thread_time()
        data = encode_ogg_opus(samples, self.bit_rate)
        return data, time.thread_time() - t

    def _failed(self, seq: int, why: str) -> None:
        self.stats.failed += 1
        metrics.RECORDING_CHUNKS.labels("failed").inc()
        log.error("recording of %s: chunk %d lost: %s", self.participant, seq, why)

    # ------------------------------------------------------------------ upload
    async def _upload_loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing and self._cutter is not None and self._cutter.done():
                    return
                self._pending_event.clear()
                await self._pending_event.wait()
                continue
            seq = min(self._pending)
            data = self._pending[seq]
            self._uploading = seq
            try:
                await self.api.put_chunk(self.participant, seq, data, self._send_offset)
            except ApiUnavailableError as e:
                log.warning("recording of %s: chunk %d waits for the api: %s", self.participant, seq, e)
                await asyncio.sleep(self.retry_pause_s)
                continue
            except ApiClosedError:
                for s in sorted(self._pending):
                    self._failed(s, "the api client is closed")
                self._pending.clear()
                return
            except ApiRejectedError as e:
                del self._pending[seq]
                self._failed(seq, str(e))
                continue
            finally:
                self._uploading = None
            del self._pending[seq]
            self.stats.stored += 1
            self.stats.stored_seqs.append(seq)
            metrics.RECORDING_CHUNKS.labels("stored").inc()

    # ------------------------------------------------------------------ end
    @property
    def pending_chunks(self) -> int:
        return len(self._pending)

    async def aclose(self) -> None:
        """End of the track: encode the last partial chunk (if ≥ 0.1 s) and wait for the uploads
        (at most ``close_timeout`` s; what is unsent then counts as failed)."""
        if self._closing:
            return
        self._closing = True
        if self._cutter is None:
            return  # nothing pushed
        self._raw_event.set()
        self._pending_event.set()
        tasks = [t for t in (self._cutter, self._uploader) if t is not None]
        done, not_done = await asyncio.wait(tasks, timeout=self.close_timeout)
        for t in not_done:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("recording of %s: %r", self.participant, t.exception())
        for seq in sorted(self._pending):
            self._failed(seq, f"not stored within {self.close_timeout:.0f} s of the track's end")
        self._pending.clear()
        if self._raw_samples:
            metrics.DROPPED_SECONDS.inc(self._raw_samples / SAMPLE_RATE)
            self._raw.clear()
            self._raw_samples = 0


__all__ = ["BIT_RATE", "ChunkStats", "TrackRecorder", "encode_ogg_opus"]
