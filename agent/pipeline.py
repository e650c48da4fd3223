"""Live transcription of one participant's microphone track: samples in, interim and final segments out.

    pipeline = SpeakerPipeline(triton=client, settings=settings, speaker="alice", speaker_name="Alice",
                               track_sid=track.sid, offset_s=0.0, publishers=[room, api])
    async for samples in track_samples(stream):          # agent.audio_in
        await pipeline.push(samples)                      # never waits for Triton
    await pipeline.aclose()                               # flush: the open utterance's final

How it works (one pipeline per track, one task per pipeline):

* ``push`` appends the samples to the pipeline's own audio buffer. The samples not yet sent to VAD
  are the queue; it holds at most ``AGENT_BUFFER_MAX_SECONDS``: beyond that the oldest unsent audio
  is dropped (``metrics.DROPPED_SECONDS``, a warning) and VAD restarts after the gap.
* The task sends ``AGENT_VAD_CHUNK_MS`` chunks to Triton's ``vad_stream`` on one sequence
  (:class:`inference_client.VADStreamSession`). ``vad_stream`` answers with events only (start/end in
  ms of stream time); the audio between a start and its end, taken from the buffer, is the utterance.
  A sequence that got no audio for ``IDLE_CLOSE_S`` is closed (flushed) and a new one starts with the
  next audio, well within the model's ``max_sequence_idle_microseconds`` (60 s).
* While an utterance is open, an interim ``asr`` request goes out once the previous interim of this
  pipeline has returned and ``AGENT_INTERIM_MIN_SECONDS`` of new audio went through VAD. At the end
  event the utterance's audio goes to ``asr`` for the final. An interim that comes back after its
  utterance ended is dropped, so no interim is ever published after its final.
* An utterance reaching ``AGENT_MAX_UTTERANCE_SECONDS`` is cut at the quietest 10 ms frame of its last
  ``CUT_SEARCH_S``: a final for the part before the cut, and a new segment from exactly that sample.
* Triton away (unreachable, restarted: a restart loses ``vad_stream``'s sequence state): finals are
  retried (tenacity) until they succeed, the audio stays queued, and VAD is re-run on a new sequence
  from the last safe point: the start of the open utterance (which keeps its segment id), else the
  end of the last utterance or ``RESTART_MARGIN_S`` before the last audio VAD had seen, whichever is
  later. Utterances already ended are never found twice; none is lost.
* Finals are published in order; every publish goes to each publisher, and a publisher's exception
  is logged, never fatal. A final with no text (noise) is not published, unless an interim with text
  was shown for it: then the empty final replaces that interim.
* Segment ids are ``<track sid>-<start in session ms>``; interims and the final of an utterance share
  it. Times are ``offset_s`` + sample index / 16 kHz; words come from the ASR tokens
  (``speechlib.transcript.words_from_tokens``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from agent import metrics
from agent.config import AgentSettings
from agent.segments import LiveSegment, TranscriptPublisher
from inference_client import TritonClient
from inference_client.asr import ASRClient, Transcript
from inference_client.errors import InferenceError, InvalidRequestError
from inference_client.vad import SpeechEvent, VADClient, VADStreamSession, validate_waveform
from speechlib.ctc import confidence_of
from speechlib.interfaces import ASR, SAMPLE_RATE, VADStream
from speechlib.transcript import words_from_tokens

__all__ = ["SegmentTiming", "SpeakerPipeline"]

log = logging.getLogger("agent.pipeline")

FRAME = SAMPLE_RATE // 100  # 10 ms: VAD's frame; every cut and restart point is on this grid
MIN_ASR_SAMPLES = SAMPLE_RATE * 25 // 1000  # asr refuses less than 25 ms
CUT_SEARCH_S = 2.0  # a monologue is cut at the quietest frame of its last 2 s before the limit
RESTART_MARGIN_S = 2.0  # VAD decides a start <= ~0.5 s after it: re-run from 2 s before, to be safe
IDLE_CLOSE_S = 20.0  # no audio for this long: close the VAD sequence (Triton drops it after 60 s idle)
DRAIN_TIMEOUT_S = 120.0  # aclose() waits this long for Triton to come back for the last finals
_SEGMENT_ID_BAD = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass(frozen=True)
class SegmentTiming:
    """When one published segment's steps happened (``clock()`` values), for the benchmark and tests."""

    segment_id: str
    is_final: bool
    audio_start_s: float  # session time of the segment
    audio_end_s: float
    audio_pushed_at: float  # when the sample at audio_end_s was pushed (end of speech / newest audio)
    vad_decided_at: float | None  # when vad_stream returned the end event (finals; a cut: when cut)
    asr_sent_at: float
    asr_done_at: float
    published_at: float


class _Samples:
    """The pipeline's audio: contiguous samples ``[base, end)`` by absolute sample index (0 = the
    track's first sample), kept as blocks; the front is discarded as it stops being needed."""

    BLOCK = SAMPLE_RATE  # small pushes (10 ms frames) are merged into blocks of about 1 s

    def __init__(self) -> None:
        self.base = 0
        self.end = 0
        self._blocks: deque[np.ndarray] = deque()
        self._tail: list[np.ndarray] = []
        self._tail_size = 0

    def append(self, x: np.ndarray) -> None:
        self._tail.append(x)
        self._tail_size += x.size
        self.end += x.size
        if self._tail_size >= self.BLOCK:
            self._seal()

    def _seal(self) -> None:
        if self._tail:
            self._blocks.append(np.concatenate(self._tail) if len(self._tail) > 1 else self._tail[0])
            self._tail, self._tail_size = [], 0

    def get(self, a: int, b: int) -> np.ndarray:
        """A copy of samples ``[a, b)``."""
        if not self.base <= a <= b <= self.end:
            raise ValueError(f"samples [{a}, {b}) not held (holding [{self.base}, {self.end}))")
        self._seal()
        out = np.empty(b - a, np.float32)
        pos, filled = self.base, 0
        for block in self._blocks:
            lo, hi = max(a, pos), min(b, pos + block.size)
            if lo < hi:
                out[filled : filled + hi - lo] = block[lo - pos : hi - pos]
                filled += hi - lo
            pos += block.size
            if pos >= b:
                break
        return out

    def discard_before(self, a: int) -> None:
        a = min(a, self.end)
        if a <= self.base:
            return
        self._seal()
        while self._blocks and self.base + self._blocks[0].size <= a:
            self.base += self._blocks.popleft().size
        if self._blocks and self.base < a:
            self._blocks[0] = self._blocks[0][a - self.base :].copy()
        self.base = a


@dataclass
class _Utterance:
    segment_id: str
    start: int  # absolute sample index
    interim_from: int  # audio end of the last interim sent (start before the first)


class SpeakerPipeline:
    """Live transcription of one participant's track (see the module's docstring)."""

    def __init__(
        self,
        *,
        triton: TritonClient,
        settings: AgentSettings,
        speaker: str,
        speaker_name: str | None,
        track_sid: str,
        offset_s: float,
        publishers: Sequence[TranscriptPublisher],
        clock: Callable[[], float] = time.monotonic,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ):
        self.settings = settings
        self.speaker = speaker
        self.speaker_name = speaker_name
        self.track_sid = track_sid
        self.offset_s = float(offset_s)
        self.publishers = list(publishers)
        self.clock = clock
        self.drain_timeout_s = drain_timeout_s
        self.timings: list[SegmentTiming] = []
        self.samples_received = 0
        self.dropped_samples = 0

        self._vad = VADClient(triton)
        self._asr = ASRClient(triton, vad=self._vad)
        self._chunk = settings.agent_vad_chunk_ms * SAMPLE_RATE // 1000
        self._max_queue = max(self._chunk, int(settings.agent_buffer_max_seconds * SAMPLE_RATE))
        self._max_utterance = int(settings.agent_max_utterance_seconds * SAMPLE_RATE) // FRAME * FRAME
        self._interim_min = max(MIN_ASR_SAMPLES, int(settings.agent_interim_min_seconds * SAMPLE_RATE))
        self._id_prefix = _SEGMENT_ID_BAD.sub("_", track_sid or speaker or "track")[:100]

        self._buf = _Samples()
        self._push_ends: list[int] = []  # absolute end index of each push ...
        self._push_times: list[float] = []  # ... and its clock()
        self._vad_pos = 0  # next sample to send to vad_stream (on the FRAME grid)
        self._origin = 0  # absolute index of the current sequence's 0 ms
        self._stream: VADStreamSession | None = None
        self._generation = 0  # bumped when push() drops audio under a request in flight
        self._open: _Utterance | None = None
        self._last_end = 0  # end of the last ended utterance (absolute index)
        self._reuse_id: str | None = None  # the open utterance's id, kept across a VAD restart
        self._ended_ids: set[str] = set()  # utterances whose end is decided: no interim after this
        self._shown_ids: set[str] = set()  # utterances with a non-empty interim published
        self._interim_task: asyncio.Task | None = None
        self._last_final: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._publish_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._closed = False
        self._buffered_reported = 0.0

    # -- public --------------------------------------------------------------------------------------
    async def push(self, samples: np.ndarray) -> None:
        """Queue 16 kHz mono float32 samples (any length, in order). Never waits for Triton."""
        if self._closing:
            raise RuntimeError("pipeline is closed")
        x = validate_waveform(samples, "samples").reshape(-1)
        if x.size == 0:
            return
        self._ensure_task()
        self._buf.append(x)
        self.samples_received += x.size
        self._push_ends.append(self._buf.end)
        self._push_times.append(self.clock())
        if self._buf.end - self._vad_pos > self._max_queue:
            self._drop_oldest()
        self._report_buffered()
        self._wake.set()

    async def aclose(self) -> None:
        """End of track: flush VAD (the open utterance gets its final), wait for pending finals. The
        publishers are not closed (their owner does that). After ``drain_timeout_s`` of Triton
        staying away, what is still pending is given up (logged)."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                if self._task is not None:
                    await asyncio.gather(self._task, return_exceptions=True)
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        except TimeoutError:
            pending = len(self._tasks) + (self._task is not None and not self._task.done())
            log.error(
                "pipeline of %s (%s): Triton did not come back within %.0f s of the end of the track; "
                "giving up %d pending task(s), %.1f s of audio not transcribed",
                self.speaker,
                self.track_sid,
                self.drain_timeout_s,
                pending,
                (self._buf.end - self._vad_pos) / SAMPLE_RATE,
            )
        finally:
            left = [task for task in [self._task, *self._tasks] if task is not None and not task.done()]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            self._closed = True
            self._vad_pos = self._buf.end
            self._report_buffered()

    # -- the VAD task ---------------------------------------------------------------------------------
    def _ensure_task(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"vad-{self.track_sid}")

    async def _run(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(InferenceError),
            wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
            before_sleep=self._vad_failed,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._vad_loop()
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("pipeline of %s (%s): VAD task failed", self.speaker, self.track_sid)
            raise

    async def _vad_loop(self) -> None:
        while True:
            ready = await self._wait_audio()
            if ready is None:  # idle: close the sequence before Triton's idle timeout drops it
                if self._stream is not None:
                    await self._finish_stream()
                continue
            if not ready:  # closing and less than a chunk left
                await self._finish_stream()
                return
            self._maybe_cut()
            start = self._vad_pos
            x = self._buf.get(start, start + self._chunk)
            if self._stream is None:
                self._stream = self._vad.stream(self.settings.agent_max_end_silence_ms)
                self._origin = start
            generation = self._generation
            events = await self._stream.send(x)
            if generation != self._generation:  # push() dropped audio meanwhile: this stream is gone
                continue
            self._vad_pos = start + x.size
            self._handle_events(events, self.clock())
            self._after_chunk()

    async def _wait_audio(self) -> bool | None:
        """True: a full chunk is queued; False: closing with less than a chunk left; None: idle."""
        while True:
            if self._buf.end - self._vad_pos >= self._chunk:
                return True
            if self._closing:
                return False
            self._wake.clear()
            try:
                async with asyncio.timeout(IDLE_CLOSE_S):
                    await self._wake.wait()
            except TimeoutError:
                if self._stream is not None:
                    return None

    async def _finish_stream(self) -> None:
        """Close the sequence with the queued remainder (end of the track, or no audio for
        IDLE_CLOSE_S); an utterance VAD leaves open ends where the audio does."""
        start = self._vad_pos
        x = self._buf.get(start, self._buf.end)
        events: list[SpeechEvent] = []
        if self._stream is None and x.size:
            self._stream = self._vad.stream(self.settings.agent_max_end_silence_ms)
            self._origin = start
        if self._stream is not None:
            generation = self._generation
            events = await self._stream.close(x)
            if generation != self._generation:
                self._stream = None
                return
        self._stream = None
        self._vad_pos = start + x.size
        now = self.clock()
        self._handle_events(events, now)
        if self._open is not None:
            self._end_open(self._vad_pos, now)
        self._after_chunk()

    def _vad_failed(self, state: RetryCallState) -> None:
        """A vad_stream request failed: forget the sequence, re-run VAD from the last safe point."""
        exc = state.outcome.exception() if state.outcome else None
        metrics.TRITON_ERRORS.labels(VADStream.NAME).inc()
        restart = self._safe_point()
        log.warning(
            "pipeline of %s (%s): vad_stream failed (%s); re-running VAD from %.2f s in %.1f s",
            self.speaker,
            self.track_sid,
            exc,
            restart / SAMPLE_RATE,
            state.next_action.sleep if state.next_action else 0.0,
        )
        if self._open is not None:
            self._reuse_id = self._open.segment_id
            self._open = None
        self._stream = None  # Triton frees the old sequence after its idle timeout
        self._vad_pos = restart

    def _safe_point(self) -> int:
        """Where VAD can re-run from without losing or repeating an utterance."""
        if self._open is not None:
            point = self._open.start
        else:
            margin = int(RESTART_MARGIN_S * SAMPLE_RATE)
            point = max(self._last_end, self._vad_pos - margin)
        point = max(self._buf.base, point - (point - self._buf.base) % FRAME)
        return min(point, self._vad_pos)

    # -- utterances ------------------------------------------------------------------------------------
    def _handle_events(self, events: Sequence[SpeechEvent], decided_at: float) -> None:
        for event in events:
            log.debug(
                "%s: vad event %s (sequence from %.2f s, sent up to %.2f s)",
                self.track_sid,
                event,
                self._origin / SAMPLE_RATE,
                self._vad_pos / SAMPLE_RATE,
            )
            if event.start_ms is not None and self._open is None:
                start = min(
                    max(self._origin + event.start_ms * SAMPLE_RATE // 1000, self._last_end), self._vad_pos
                )
                segment_id, self._reuse_id = self._reuse_id or self._new_id(start), None
                self._open = _Utterance(segment_id, start, start)
            if event.end_ms is not None and self._open is not None:
                end = min(self._origin + event.end_ms * SAMPLE_RATE // 1000, self._vad_pos)
                self._end_open(end, decided_at)

    def _new_id(self, start: int) -> str:
        """``<track sid>-<start in session ms>``: unique within the session (a track's utterances do
        not overlap), also when a new pipeline (a restarted job) transcribes the same track again."""
        return f"{self._id_prefix}-{round((self.offset_s + start / SAMPLE_RATE) * 1000)}"

    def _end_open(self, end: int, decided_at: float) -> None:
        u, self._open = self._open, None
        assert u is not None
        end = max(end, u.start)
        self._last_end = max(self._last_end, end)
        self._ended_ids.add(u.segment_id)
        if end - u.start < MIN_ASR_SAMPLES:
            return
        audio = self._buf.get(u.start, end)
        previous = self._last_final
        self._last_final = self._spawn(
            self._final(u.segment_id, u.start, end, audio, self._pushed_at(end), decided_at, previous)
        )

    def _maybe_cut(self) -> None:
        """Cut the open utterance before the next chunk takes it past the length limit."""
        u = self._open
        if u is None or self._vad_pos + self._chunk - u.start <= self._max_utterance:
            return
        hi = min(self._vad_pos, u.start + self._max_utterance)
        lo = max(u.start + FRAME, hi - int(CUT_SEARCH_S * SAMPLE_RATE))
        lo += (u.start - lo) % FRAME  # frames on the utterance's own 10 ms grid
        if hi - lo < FRAME:
            cut = hi
        else:
            frames = self._buf.get(lo, lo + (hi - lo) // FRAME * FRAME).reshape(-1, FRAME)
            cut = lo + int(np.argmin(np.square(frames, dtype=np.float64).sum(axis=1))) * FRAME
        now = self.clock()
        self._end_open(cut, now)
        self._open = _Utterance(self._new_id(cut), cut, cut)
        self._last_end = cut

    def _after_chunk(self) -> None:
        self._maybe_interim()
        keep = self._safe_point()
        self._buf.discard_before(keep)
        drop = bisect.bisect_right(self._push_ends, keep)
        if drop > 256:
            del self._push_ends[:drop], self._push_times[:drop]
        self._report_buffered()

    def _maybe_interim(self) -> None:
        u = self._open
        if u is None or (self._interim_task is not None and not self._interim_task.done()):
            return
        if self._vad_pos - u.interim_from < self._interim_min:
            return
        end = min(self._vad_pos, u.start + int(ASR.MAX_SECONDS * SAMPLE_RATE))
        u.interim_from = end
        audio = self._buf.get(u.start, end)
        self._interim_task = self._spawn(
            self._interim(u.segment_id, u.start, end, audio, self._pushed_at(end))
        )

    def _drop_oldest(self) -> None:
        """The queue outgrew AGENT_BUFFER_MAX_SECONDS: drop its oldest audio, restart VAD after it."""
        new_pos = self._buf.end - self._max_queue
        new_pos += (-new_pos) % FRAME
        dropped = new_pos - self._vad_pos
        if dropped <= 0:
            return
        u = self._open
        if u is not None and self._vad_pos - u.start >= MIN_ASR_SAMPLES:  # what VAD saw of it: final
            self._end_open(self._vad_pos, self.clock())
        elif u is not None:
            self._reuse_id, self._open = u.segment_id, None
        self.dropped_samples += dropped
        metrics.DROPPED_SECONDS.inc(dropped / SAMPLE_RATE)
        log.warning(
            "pipeline of %s (%s): audio queue over %.0f s (Triton away?): dropped %.2f s of audio at %.2f s",
            self.speaker,
            self.track_sid,
            self._max_queue / SAMPLE_RATE,
            dropped / SAMPLE_RATE,
            self._vad_pos / SAMPLE_RATE,
        )
        self._buf.discard_before(new_pos)
        self._vad_pos = new_pos
        self._last_end = max(self._last_end, new_pos)
        self._stream = None
        self._generation += 1

    def _pushed_at(self, end: int) -> float:
        """clock() when the sample just before ``end`` was pushed."""
        i = bisect.bisect_left(self._push_ends, end)
        return self._push_times[min(i, len(self._push_times) - 1)]

    def _report_buffered(self) -> None:
        value = max(0, self._buf.end - self._vad_pos) / SAMPLE_RATE
        metrics.BUFFERED_SECONDS.inc(value - self._buffered_reported)
        self._buffered_reported = value

    # -- ASR and publishing -----------------------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _transcribe(self, audio: np.ndarray) -> Transcript:
        return await self._asr.transcribe(audio, self.settings.agent_language, self.settings.agent_use_itn)

    async def _interim(
        self, segment_id: str, start: int, end: int, audio: np.ndarray, pushed_at: float
    ) -> None:
        sent_at = self.clock()
        try:
            transcript = await self._transcribe(audio)
        except InferenceError as e:
            metrics.TRITON_ERRORS.labels(ASR.NAME).inc()
            log.warning("pipeline of %s: interim asr failed: %s", self.speaker, e)
            return
        done_at = self.clock()
        async with self._publish_lock:
            if segment_id in self._ended_ids or not transcript.text.strip():
                return  # its final supersedes it (or nothing was recognised yet)
            await self._publish(segment_id, start, end, transcript, False, pushed_at, None, sent_at, done_at)
            self._shown_ids.add(segment_id)

    async def _final(
        self,
        segment_id: str,
        start: int,
        end: int,
        audio: np.ndarray,
        pushed_at: float,
        decided_at: float,
        previous: asyncio.Task | None,
    ) -> None:
        sent_at = self.clock()

        def failed(state: RetryCallState) -> None:
            metrics.TRITON_ERRORS.labels(ASR.NAME).inc()
            log.warning(
                "pipeline of %s: final asr of %s failed (%s); retrying in %.1f s",
                self.speaker,
                segment_id,
                state.outcome.exception() if state.outcome else None,
                state.next_action.sleep if state.next_action else 0.0,
            )

        transcript: Transcript | None = None
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(
                    lambda e: isinstance(e, InferenceError) and not isinstance(e, InvalidRequestError)
                ),
                wait=wait_exponential_jitter(multiplier=0.5, max=5.0, jitter=0.5),
                before_sleep=failed,
                reraise=True,
            ):
                with attempt:
                    sent_at = self.clock()
                    transcript = await self._transcribe(audio)
        except (InferenceError, ValueError) as e:
            metrics.TRITON_ERRORS.labels(ASR.NAME).inc()
            log.error("pipeline of %s: final asr of %s failed for good: %s", self.speaker, segment_id, e)
        done_at = self.clock()
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)  # finals go out in order
        if transcript is None:
            return
        async with self._publish_lock:
            if not transcript.text.strip() and segment_id not in self._shown_ids:
                return  # noise: nothing to publish, nothing shown to replace
            await self._publish(
                segment_id, start, end, transcript, True, pushed_at, decided_at, sent_at, done_at
            )
            self._shown_ids.discard(segment_id)

    async def _publish(
        self,
        segment_id: str,
        start: int,
        end: int,
        transcript: Transcript,
        is_final: bool,
        pushed_at: float,
        decided_at: float | None,
        sent_at: float,
        done_at: float,
    ) -> None:
        start_s = self.offset_s + start / SAMPLE_RATE
        end_s = self.offset_s + end / SAMPLE_RATE
        offset_ms = round(start_s * 1000)
        words = words_from_tokens(
            [t.text for t in transcript.tokens],
            np.asarray([(t.start_ms, t.end_ms) for t in transcript.tokens], np.int64).reshape(-1, 2),
            offset_ms=offset_ms,
        )
        probs = [t.probability for t in transcript.tokens]
        segment = LiveSegment(
            segment_id=segment_id,
            speaker=self.speaker,
            speaker_name=self.speaker_name,
            track_sid=self.track_sid,
            start_time=start_s,
            end_time=end_s,
            text=transcript.text.strip(),
            language=None if transcript.language in ("", "nospeech") else transcript.language,
            is_final=is_final,
            emotion=transcript.emotion or None,
            event=transcript.event or None,
            confidence_score=confidence_of(probs) if probs else None,
            words=tuple(w.to_dict() for w in words),
        )
        for publisher in self.publishers:
            try:
                await publisher.publish(segment)
            except Exception:
                log.exception("publisher %r failed on segment %s", publisher, segment_id)
        published_at = self.clock()
        kind = "final" if is_final else "interim"
        metrics.SEGMENTS.labels(kind).inc()
        metrics.UTTERANCE_LATENCY.labels(kind).observe(max(0.0, published_at - pushed_at))
        self.timings.append(
            SegmentTiming(
                segment_id, is_final, start_s, end_s, pushed_at, decided_at, sent_at, done_at, published_at
            )
        )
