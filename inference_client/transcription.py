"""Transcribe a long recording: decode once, VAD in chunks cut at silences, ASR on every speech
segment, diarization over the whole recording, a speaker for every segment and word.

The engine of the batch transcription job (issue 12); the api's job worker calls it, with one
long-lived :class:`TritonClient` for all its jobs::

    async with TritonClient(url) as client:
        transcriber = Transcriber(client, diarization_settings=settings)   # settings: PipelineSettings
        result = await transcriber.transcribe(
            "meeting.m4a",
            TranscriptionOptions(language="auto", num_speakers=None),
            progress=on_progress,          # TranscriptionProgress(stage, fraction, ...)
            on_checkpoint=save,            # ChunkCheckpoint (.to_dict(): JSON) / DiarizationCheckpoint (.to_bytes())
            resume=saved_checkpoints,      # what save() stored, from an earlier, interrupted run
        )
        result.transcript                  # speechlib.transcript.Transcript, speakers on segments and words

Stages (``TranscriptionProgress.stage``): ``decode`` (to a raw float32 file in ``workdir``), ``vad``,
``asr``, ``diarization`` (runs concurrently with VAD/ASR, all through the client's request window)
and ``align`` (speaker attribution). Memory stays bounded as the audio grows: the recording is on
disk; one VAD chunk (``vad_chunk_s`` seconds, default 600: 38 MB) plus the segments whose ASR
requests are in flight are in memory, plus what diarization keeps (a few KB per 1 s window).

**Cutting VAD at silences.** The ``vad`` model takes at most 3600 s per request and its end-pointer
closes any open segment at the end of its input, so a long recording is sent in chunks and a chunk
boundary must not split, lose or double a segment. Chunk ``k`` is VAD'd over samples
``[read_start, read_start + vad_chunk_s)`` and keeps the segments that

- start at or after its ``cut`` (the end of the last segment kept by chunk ``k - 1``; 0 for the first),
- and end at least ``guard`` before the chunk's end (``guard`` = the end silence + 1 s): such a
  segment was closed by a silence the end-pointer saw whole, as the one-request run closes it.

Segments ending later are redone by chunk ``k + 1``, whose ``cut`` is the end of the last kept
segment and which starts reading :data:`PRE_ROLL_MS` (3 s) before the first redone segment (or before
``chunk end - guard`` when none was found), aligned to the 10 ms frame grid. The pre-roll gives the
FSMN network (0.8 s receptive field) and the end-pointer's windows (lookback 200 ms) the same context
the one-request run had, so the redone segments come out with the same times (tested against one
request over the whole audio). Segments of chunk ``k + 1`` that end at or before its cut are the
tail of a segment already kept (the pre-roll reached into it) and are dropped; a segment that starts
before the cut and runs on past it is kept from the cut on (:data:`MIN_SPLIT_MS`). That happens
only where a chunk held no silence to cut at — a segment longer than ``vad_chunk_s`` minus guard
and pre-roll (4.9 s; only chunks under 35 s can meet a 30 s segment), or capped speech back to back
over a whole chunk: the segment is split at the chunk's end, never lost or doubled. Speech longer
than 30 s comes out of VAD as capped segments back to back; when a cut falls inside such a run, the
next chunk starts reading before the run's first segment, so its caps fall where one request's do
(if the run fits in one chunk; a longer run is covered just the same, with its caps moved).

**Checkpoints and resume.** After each chunk's ASR is complete the engine calls ``on_checkpoint``
with a :class:`ChunkCheckpoint` (JSON-able with :meth:`ChunkCheckpoint.to_dict`: the chunk's cut,
where the next chunk starts, every segment's ASR result). After diarization's Triton part it calls
it with a :class:`DiarizationCheckpoint` (npz bytes, ~5 KB per second of audio: 18 MB per hour —
store it as a blob). Pass what was stored back as ``resume=``: finished chunks (a prefix 0..k) are
not sent again, the next chunk starts where chunk k said; a diarization checkpoint skips all of
diarization's Triton requests (clustering is re-run locally, so speaker counts may change). A chunk
that fails is not reported, so it is redone whole; a failed ASR request is retried
(:class:`TritonClient` retries UNAVAILABLE itself; a :class:`TritonUnavailableError` that outlasts
its policy is retried ``request_attempts`` times more), its result replacing nothing and added once.
The checkpoint carries the options that shape it (chunk length, end silence, language, ITN): a
resume with other options raises ``ValueError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inference_client.asr import ASRClient
from inference_client.audio import DecodedAudio, decode_to_file, probe_audio
from inference_client.client import TritonClient
from inference_client.errors import TritonUnavailableError
from inference_client.vad import SpeechSegment, VADClient
from speechlib.ctc import confidence_of
from speechlib.interfaces import ASR, SAMPLE_RATE
from speechlib.languages import normalize_language
from speechlib.transcript import Segment, Transcript, attribute_speakers, segment_from_asr

if TYPE_CHECKING:  # pragma: no cover
    from inference_client.diarization import DiarizationClient
    from speechlib.diarization.pipeline import PipelineSettings

__all__ = [
    "DEFAULT_VAD_CHUNK_S",
    "PRE_ROLL_MS",
    "ChunkCheckpoint",
    "ChunkPlan",
    "DiarizationCheckpoint",
    "RecognizedSegment",
    "STAGES",
    "Transcriber",
    "TranscriptionOptions",
    "TranscriptionProgress",
    "TranscriptionResult",
    "plan_chunk",
]

log = logging.getLogger("inference_client.transcription")

STAGES = ("decode", "vad", "asr", "diarization", "align")
"""The stages progress is reported for, in the order they finish."""

DEFAULT_VAD_CHUNK_S = 600.0
"""Seconds of audio per VAD request (the model takes at most 3600 s): 38 MB of float32 in memory."""

MAX_VAD_REQUEST_S = 3600.0  # the `vad` model's max_audio_seconds (config parameter)
DEFAULT_END_SILENCE_MS = 800  # fsmn-VAD's max_end_silence_time, the model's default
LOOKAHEAD_MS = 100  # fsmn-VAD's lookahead_time_end_point: a segment ends this long after its speech
GUARD_MARGIN_MS = 1000
PRE_ROLL_MS = 3000
"""A chunk starts reading this long before the first segment it redoes (see the module docstring)."""
FRAME_MS = 10  # fsmn-VAD's frame shift: chunks start on this grid, so frames and times line up
MIN_SPLIT_MS = FRAME_MS
"""A segment of a chunk that starts before the chunk's cut is kept (from the cut) when it runs on at
least this long past the cut, so no speech after a cut is dropped; a sliver of silence kept this way
gets empty text from ASR and leaves the transcript (ending at or before the cut: the already-kept
segment's tail seen again)."""
CHAIN_GAP_MS = 1
"""Two segments closer than this (ms) are one stretch of speech that VAD capped at 30 s."""
CHECKPOINT_VERSION = 1


# -- options, progress, results --------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptionOptions:
    """What a job asks for.

    ``language``: ``auto`` (detect per segment) or a code :func:`speechlib.languages.normalize_language`
    accepts; ``use_itn``: punctuation and digits; ``max_end_silence_ms``: silence (ms) that ends a VAD
    segment (None: the model's 800). ``diarize``: run diarization (False: no speakers);
    ``num_speakers`` or ``min_speakers``/``max_speakers``: speaker count (None: found automatically);
    ``clustering``: ``"vbx"``/``"agglomerative"`` (None: the settings'). ``vad_chunk_s``: seconds per
    VAD request (at most 3600; small values are for tests)."""

    language: str | None = "auto"
    use_itn: bool = True
    max_end_silence_ms: int | None = None
    diarize: bool = True
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    clustering: str | None = None
    vad_chunk_s: float = DEFAULT_VAD_CHUNK_S

    def checked(self) -> TranscriptionOptions:
        """These options with the language normalised; ``ValueError`` for values that cannot work."""
        if not 0 < self.vad_chunk_s <= MAX_VAD_REQUEST_S:
            raise ValueError(
                f"vad_chunk_s must be in (0, {MAX_VAD_REQUEST_S:.0f}] seconds, got {self.vad_chunk_s}"
            )
        guard = _guard_ms(self.max_end_silence_ms)
        if self.vad_chunk_s * 1000 < 2 * (guard + PRE_ROLL_MS):
            raise ValueError(
                f"vad_chunk_s={self.vad_chunk_s} is too short to cut at silences: at least "
                f"{2 * (guard + PRE_ROLL_MS) / 1000:.1f} s with this end silence"
            )
        if self.max_end_silence_ms is not None and not 0 <= int(self.max_end_silence_ms) <= 60000:
            raise ValueError(f"max_end_silence_ms must be 0-60000 ms, got {self.max_end_silence_ms}")
        if not isinstance(self.use_itn, bool):
            raise TypeError(f"use_itn must be True or False, got {self.use_itn!r}")
        return replace(self, language=normalize_language(self.language))

    def chunk_key(self) -> str:
        """The options a chunk's result depends on, as a string stored in each checkpoint."""
        return json.dumps(
            {
                "v": CHECKPOINT_VERSION,
                "vad_chunk_s": float(self.vad_chunk_s),
                "max_end_silence_ms": self.max_end_silence_ms,
                "language": self.language,
                "use_itn": self.use_itn,
                "pre_roll_ms": PRE_ROLL_MS,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class TranscriptionProgress:
    """One stage's progress: ``fraction`` in [0, 1] of ``stage`` (one of :data:`STAGES`);
    ``seconds``: seconds of audio that stage has covered; ``duration_s``: the recording's length
    (None while decoding a file whose container does not say)."""

    stage: str
    fraction: float
    seconds: float = 0.0
    duration_s: float | None = None


ProgressCallback = Callable[[TranscriptionProgress], object]


@dataclass(frozen=True)
class RecognizedSegment:
    """One VAD segment and what ASR said about it: ``start_ms``/``end_ms`` from the start of the
    recording, ``pieces`` (sentencepiece strings) and ``token_times_ms`` (``(start, end)`` pairs) from
    the start of the segment. Plain values: JSON-able with :func:`dataclasses.asdict`."""

    start_ms: int
    end_ms: int
    text: str
    language: str
    emotion: str
    event: str
    pieces: tuple[str, ...] = ()
    token_times_ms: tuple[tuple[int, int], ...] = ()
    token_probs: tuple[float, ...] = ()  # each token's CTC posterior (asr TOKEN_PROBS)

    def to_segment(self, max_word_s: float | None = None) -> Segment:
        """The transcript record (seconds, words from the tokens)."""
        kwargs = {} if max_word_s is None else {"max_word_s": max_word_s}
        return segment_from_asr(
            start_ms=0,
            end_ms=self.end_ms - self.start_ms,
            offset_ms=self.start_ms,
            text=self.text,
            pieces=self.pieces,
            token_times_ms=np.asarray(self.token_times_ms, np.int64).reshape(-1, 2),
            language=self.language,
            emotion=self.emotion,
            event=self.event,
            confidence=confidence_of(self.token_probs) if len(self.token_probs) == len(self.pieces) else None,
            **kwargs,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecognizedSegment:
        return cls(
            int(d["start_ms"]),
            int(d["end_ms"]),
            str(d["text"]),
            str(d["language"]),
            str(d["emotion"]),
            str(d["event"]),
            tuple(str(p) for p in d.get("pieces", ())),
            tuple((int(s), int(e)) for s, e in d.get("token_times_ms", ())),
            tuple(float(p) for p in d.get("token_probs", ())),
        )


@dataclass(frozen=True)
class ChunkPlan:
    """What one VAD request over ``[read_start_ms, read_end_ms)`` decided (all ms from the start of
    the recording): the ``segments`` this chunk keeps (each starts at or after ``cut_ms``), where the
    next chunk's cut is (``next_cut_ms``) and where it starts reading (``next_read_start_ms``);
    ``final`` when this chunk reached the end of the audio."""

    read_start_ms: int
    read_end_ms: int
    cut_ms: int
    segments: tuple[SpeechSegment, ...]
    next_cut_ms: int
    next_read_start_ms: int
    final: bool


@dataclass(frozen=True)
class ChunkCheckpoint:
    """A finished chunk: index (0-based), its VAD plan's boundaries and its recognized segments.
    :meth:`to_dict` is JSON-able; :meth:`from_dict` reads it back."""

    index: int
    read_start_ms: int
    cut_ms: int
    next_cut_ms: int
    next_read_start_ms: int
    final: bool
    segments: tuple[RecognizedSegment, ...]
    options_key: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["segments"] = [asdict(s) for s in self.segments]
        d["kind"] = "chunk"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkCheckpoint:
        return cls(
            index=int(d["index"]),
            read_start_ms=int(d["read_start_ms"]),
            cut_ms=int(d["cut_ms"]),
            next_cut_ms=int(d["next_cut_ms"]),
            next_read_start_ms=int(d["next_read_start_ms"]),
            final=bool(d["final"]),
            segments=tuple(RecognizedSegment.from_dict(s) for s in d["segments"]),
            options_key=str(d["options_key"]),
        )


@dataclass(frozen=True)
class DiarizationCheckpoint:
    """Diarization's Triton results for the whole recording (every window's hard segmentation and
    embeddings), as npz bytes (:meth:`to_bytes`, :meth:`from_bytes`). About 5 KB per second."""

    binary: np.ndarray  # (windows, frames, local speakers) uint8
    embeddings: np.ndarray  # (windows, local speakers, D) float32, NaN rows where skipped
    duration_s: float

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            binary=self.binary.astype(np.uint8),
            embeddings=self.embeddings.astype(np.float32),
            duration_s=np.float64(self.duration_s),
            version=np.int64(CHECKPOINT_VERSION),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DiarizationCheckpoint:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["binary"], z["embeddings"], float(z["duration_s"]))


Checkpoint = ChunkCheckpoint | DiarizationCheckpoint
CheckpointCallback = Callable[[Checkpoint], object]


@dataclass
class TranscriptionResult:
    """The transcript (speakers on segments and words when diarized), the diarization's exclusive
    turns (seconds; empty without diarization), and how the work went: ``chunks`` VAD chunks
    (``resumed_chunks`` of them from checkpoints), ``timings`` in seconds per stage."""

    transcript: Transcript
    turns: list = field(default_factory=list)
    chunks: int = 0
    resumed_chunks: int = 0
    diarization_resumed: bool = False
    timings: dict[str, float] = field(default_factory=dict)


# -- the cut ----------------------------------------------------------------------------------------


def _guard_ms(max_end_silence_ms: int | None) -> int:
    silence = DEFAULT_END_SILENCE_MS if max_end_silence_ms is None else int(max_end_silence_ms)
    return silence + LOOKAHEAD_MS + GUARD_MARGIN_MS


def _grid(ms: int) -> int:
    return (int(ms) // FRAME_MS) * FRAME_MS


def plan_chunk(
    segments: Iterable[SpeechSegment],
    *,
    read_start_ms: int,
    read_end_ms: int,
    cut_ms: int,
    final: bool,
    max_end_silence_ms: int | None = None,
) -> ChunkPlan:
    """Which of one VAD request's ``segments`` (ms from the start of the recording) a chunk keeps,
    and where the next chunk cuts and starts reading (module docstring). Pure: no Triton.

    ``read_start_ms``/``read_end_ms``: the samples the request covered; ``cut_ms``: this chunk's
    cut; ``final``: the request reached the end of the recording (then everything after the cut is
    kept)."""
    found: list[SpeechSegment] = []
    for s in sorted(segments, key=lambda s: (s.start_ms, s.end_ms)):
        if s.start_ms >= cut_ms:
            found.append(s)
        elif s.end_ms - cut_ms >= MIN_SPLIT_MS:  # speech running on past the cut: keep the rest
            found.append(SpeechSegment(cut_ms, s.end_ms))
        # else: the tail of the last segment kept by the previous chunk, seen again in the pre-roll
    if final:
        return ChunkPlan(read_start_ms, read_end_ms, cut_ms, tuple(found), read_end_ms, read_end_ms, True)

    limit = read_end_ms - _guard_ms(max_end_silence_ms)
    n = 0
    while n < len(found) and found[n].end_ms <= limit:
        n += 1
    kept = found[:n]
    rest = found[n:]
    next_cut = kept[-1].end_ms if kept else cut_ms
    anchor = min(rest[0].start_ms, limit) if rest else limit
    if kept and rest and rest[0].start_ms - kept[-1].end_ms < CHAIN_GAP_MS:
        # The cut falls between a segment capped at 30 s and its continuation: the next request
        # starts before the whole run of capped segments, so its caps fall where one request's do.
        i = n - 1
        while i > 0 and found[i].start_ms - found[i - 1].end_ms < CHAIN_GAP_MS:
            i -= 1
        anchor = min(anchor, found[i].start_ms)
    next_read = _grid(anchor - PRE_ROLL_MS)
    if next_read <= read_start_ms:
        # No silence to cut at in this chunk (speech back to back, or a chunk too short for its first
        # segment): keep that segment as this request saw it, closed by the end of the input if it
        # was still open; the next chunk keeps whatever runs on past it (the straddle rule above).
        if not kept and rest:
            kept = [rest[0]]
            next_cut = rest[0].end_ms
        next_read = max(read_start_ms + FRAME_MS, _grid(next_cut - PRE_ROLL_MS))
    return ChunkPlan(read_start_ms, read_end_ms, cut_ms, tuple(kept), next_cut, next_read, False)


# -- the engine ------------------------------------------------------------------------------------


async def _call(callback: Callable[[Any], object] | None, value: Any) -> None:
    if callback is None:
        return
    result = callback(value)
    if isinstance(result, Awaitable):
        await result


class Transcriber:
    """Long-audio transcription over Triton (module docstring).

    Args:
        client: the process's :class:`TritonClient` (request window, retries), shared by all jobs.
        diarization_settings: :class:`speechlib.diarization.pipeline.PipelineSettings` (PLDA,
            thresholds); None reads them from ``model_repository/speaker_embedding/1`` the first time
            diarization runs — a worker without that folder must pass them.
        max_pending_segments: ASR requests created at once (each holds its segment's audio, <= 30 s =
            1.9 MB); default twice the client's window, enough to keep Triton's batches full.
        request_attempts: tries of one ASR/VAD request when the client's own retries gave up with
            :class:`TritonUnavailableError` (with ``retry_pause_s`` between them).
    """

    def __init__(
        self,
        client: TritonClient,
        *,
        diarization_settings: PipelineSettings | None = None,
        asr: ASRClient | None = None,
        vad: VADClient | None = None,
        diarizer: DiarizationClient | None = None,
        max_pending_segments: int | None = None,
        request_attempts: int = 3,
        retry_pause_s: float = 1.0,
    ):
        self.client = client
        self.vad = vad or VADClient(client)
        self.asr = asr or ASRClient(client, vad=self.vad)
        self._diarizer = diarizer
        self.diarization_settings = diarization_settings
        self.max_pending_segments = max_pending_segments or max(2, 2 * client.max_in_flight)
        self.request_attempts = max(1, int(request_attempts))
        self.retry_pause_s = retry_pause_s

    @property
    def diarizer(self):
        """The :class:`inference_client.diarization.DiarizationClient` (made on first use)."""
        if self._diarizer is None:
            from inference_client.diarization import DiarizationClient

            self._diarizer = DiarizationClient(self.client, settings=self.diarization_settings)
        return self._diarizer

    async def _retrying(self, what: str, make: Callable[[], Awaitable[Any]]) -> Any:
        for attempt in range(1, self.request_attempts + 1):
            try:
                return await make()
            except TritonUnavailableError as e:
                if attempt == self.request_attempts:
                    raise
                log.warning(
                    "%s: Triton unavailable (%s); try %d of %d", what, e, attempt + 1, self.request_attempts
                )
                await asyncio.sleep(self.retry_pause_s)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- VAD over a decoded file ----------------------------------------------------------------
    async def plan_chunks(
        self,
        audio: DecodedAudio,
        options: TranscriptionOptions | None = None,
        *,
        start: ChunkCheckpoint | None = None,
    ) -> AsyncIterator[ChunkPlan]:
        """VAD of the whole of ``audio`` in chunks of ``options.vad_chunk_s`` cut at silences, one
        :class:`ChunkPlan` per request, in order; ``start``: continue after this finished chunk.
        The next request is sent while the caller works on the current plan."""
        options = (options or TranscriptionOptions()).checked()
        total_ms = audio.num_samples * 1000 // audio.sample_rate
        chunk_ms = int(options.vad_chunk_s * 1000)
        if start is not None:
            if start.final:
                return
            read_start, cut = start.next_read_start_ms, start.next_cut_ms
        else:
            read_start, cut = 0, 0
        if audio.num_samples == 0:
            return

        async def request(read_start: int, cut: int) -> ChunkPlan:
            read_end = min(read_start + chunk_ms, total_ms)
            final = read_end >= total_ms
            a = read_start * audio.sample_rate // 1000
            b = audio.num_samples if final else read_end * audio.sample_rate // 1000
            x = audio.read(a, b)
            segs = await self._retrying(
                f"vad {read_start}-{read_end} ms", lambda: self.vad.segments(x, options.max_end_silence_ms)
            )
            shifted = [SpeechSegment(s.start_ms + read_start, s.end_ms + read_start) for s in segs]
            return plan_chunk(
                shifted,
                read_start_ms=read_start,
                read_end_ms=read_end,
                cut_ms=cut,
                final=final,
                max_end_silence_ms=options.max_end_silence_ms,
            )

        pending = asyncio.ensure_future(request(read_start, cut))
        try:
            while True:
                plan = await pending
                pending = None
                if not plan.final:
                    pending = asyncio.ensure_future(request(plan.next_read_start_ms, plan.next_cut_ms))
                yield plan
                if plan.final:
                    return
        finally:
            if pending is not None and not pending.done():
                pending.cancel()

    # -- ASR of one chunk -----------------------------------------------------------------------
    async def recognize(
        self, audio: DecodedAudio, segments: Iterable[SpeechSegment], options: TranscriptionOptions
    ) -> list[RecognizedSegment]:
        """ASR of each segment of ``audio`` (ms from its start), at most ``max_pending_segments``
        requests created at once; results in the segments' order. Segments too short for ASR
        (< 25 ms) come back with empty text."""
        options = options.checked()
        segments = list(segments)
        results: list[RecognizedSegment | None] = [None] * len(segments)
        gate = asyncio.Semaphore(self.max_pending_segments)
        min_samples = audio.sample_rate * 25 // 1000
        max_samples = int(ASR.MAX_SECONDS * audio.sample_rate)

        async def one(i: int, seg: SpeechSegment) -> None:
            async with gate:
                a = seg.start_ms * audio.sample_rate // 1000
                b = min(seg.end_ms * audio.sample_rate // 1000, a + max_samples)
                x = audio.read(a, b)
                if x.size < min_samples:
                    results[i] = RecognizedSegment(seg.start_ms, seg.end_ms, "", "", "", "")
                    return
                t = await self._retrying(
                    f"asr {seg.start_ms}-{seg.end_ms} ms",
                    lambda: self.asr.transcribe(x, options.language, options.use_itn),
                )
                results[i] = RecognizedSegment(
                    seg.start_ms,
                    seg.end_ms,
                    t.text,
                    t.language,
                    t.emotion,
                    t.event,
                    tuple(k.text for k in t.tokens),
                    tuple((k.start_ms, k.end_ms) for k in t.tokens),
                    tuple(k.probability for k in t.tokens if k.probability is not None),
                )

        tasks = [asyncio.ensure_future(one(i, s)) for i, s in enumerate(segments)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        return [r for r in results if r is not None]

    # -- the whole job --------------------------------------------------------------------------
    async def transcribe(
        self,
        source: str | Path | DecodedAudio,
        options: TranscriptionOptions | None = None,
        *,
        workdir: str | Path | None = None,
        progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
        resume: Iterable[Checkpoint] = (),
    ) -> TranscriptionResult:
        """Transcribe ``source`` (an audio file of any format PyAV reads, or an already decoded
        :class:`DecodedAudio`) into a speaker-attributed :class:`Transcript`.

        ``workdir``: where the decoded audio goes (``audio.f32``; an existing one is reused, so a
        resumed job on the same machine does not decode again); default a temporary folder removed
        at the end. ``progress`` and ``on_checkpoint`` may be coroutine functions; ``resume``: the
        checkpoints an earlier run reported (any order; see the module docstring).

        Raises :class:`inference_client.audio.AudioDecodeError` for undecodable input (before any
        request), ``ValueError`` for bad options or checkpoints that do not fit; empty or silent
        audio gives an empty transcript."""
        options = (options or TranscriptionOptions()).checked()
        if options.diarize:
            from speechlib.diarization.options import check_speaker_counts

            check_speaker_counts(options.num_speakers, options.min_speakers, options.max_speakers)
        chunks_done, diarization_done = _read_resume(resume, options)
        timings: dict[str, float] = {}
        if isinstance(source, DecodedAudio):
            return await self._run(
                source, options, progress, on_checkpoint, chunks_done, diarization_done, timings
            )
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="intrascribe-") as tmp:
                audio = await self._decode(source, Path(tmp), progress, timings)
                return await self._run(
                    audio, options, progress, on_checkpoint, chunks_done, diarization_done, timings
                )
        audio = await self._decode(source, Path(workdir), progress, timings)
        return await self._run(
            audio, options, progress, on_checkpoint, chunks_done, diarization_done, timings
        )

    async def _decode(
        self, source: str | Path, workdir: Path, progress: ProgressCallback | None, timings: dict[str, float]
    ) -> DecodedAudio:
        t0 = time.perf_counter()
        info = probe_audio(source)  # AudioDecodeError at once for what is not audio
        workdir.mkdir(parents=True, exist_ok=True)
        target = workdir / "audio.f32"
        if target.is_file():
            audio = DecodedAudio.open(target, SAMPLE_RATE, info)
        else:
            loop = asyncio.get_running_loop()
            claimed = info.duration_s

            def report(seconds: float) -> None:  # in the decoding thread: wait for the callback
                fraction = min(1.0, seconds / claimed) if claimed else 0.0
                p = TranscriptionProgress("decode", fraction, seconds, claimed)
                if progress is not None:
                    asyncio.run_coroutine_threadsafe(_call(progress, p), loop).result()

            audio = await asyncio.to_thread(decode_to_file, source, target, SAMPLE_RATE, 30.0, report)
        timings["decode"] = time.perf_counter() - t0
        await _call(progress, TranscriptionProgress("decode", 1.0, audio.duration_s, audio.duration_s))
        return audio

    async def _run(
        self,
        audio: DecodedAudio,
        options: TranscriptionOptions,
        progress: ProgressCallback | None,
        on_checkpoint: CheckpointCallback | None,
        chunks_done: list[ChunkCheckpoint],
        diarization_done: DiarizationCheckpoint | None,
        timings: dict[str, float],
    ) -> TranscriptionResult:
        duration = audio.duration_s
        total_ms = max(1, audio.num_samples * 1000 // audio.sample_rate)

        async def report(stage: str, fraction: float, seconds: float) -> None:
            await _call(
                progress, TranscriptionProgress(stage, min(1.0, max(0.0, fraction)), seconds, duration)
            )

        if diarization_done is not None and abs(diarization_done.duration_s - duration) > 0.01:
            raise ValueError(
                f"the diarization checkpoint covers {diarization_done.duration_s:.3f} s of audio, this "
                f"recording is {duration:.3f} s: it belongs to another file"
            )
        if chunks_done and chunks_done[-1].next_cut_ms > total_ms:
            raise ValueError("the chunk checkpoints run past the end of this recording: another file's?")
        if audio.num_samples == 0:
            for stage in STAGES[1:]:
                await report(stage, 1.0, 0.0)
            return TranscriptionResult(Transcript.from_segments([], duration=0.0), timings=timings)

        # -- VAD + ASR, chunk by chunk, checkpointed in order ------------------------------------
        async def speech() -> list[ChunkCheckpoint]:
            t0 = time.perf_counter()
            done = list(chunks_done)
            covered = done[-1].next_cut_ms if done else 0
            if done:
                await report("vad", 1.0 if done[-1].final else covered / total_ms, covered / 1000)
                await report("asr", 1.0 if done[-1].final else covered / total_ms, covered / 1000)
            plans = self.plan_chunks(audio, options, start=done[-1] if done else None)
            async with contextlib.aclosing(plans):  # a failure below cancels the VAD request ahead
                async for plan in plans:
                    end = total_ms if plan.final else plan.next_cut_ms
                    await report("vad", end / total_ms, end / 1000)
                    recognized = await self.recognize(audio, plan.segments, options)
                    checkpoint = ChunkCheckpoint(
                        index=len(done),
                        read_start_ms=plan.read_start_ms,
                        cut_ms=plan.cut_ms,
                        next_cut_ms=plan.next_cut_ms,
                        next_read_start_ms=plan.next_read_start_ms,
                        final=plan.final,
                        segments=tuple(recognized),
                        options_key=options.chunk_key(),
                    )
                    done.append(checkpoint)
                    await _call(on_checkpoint, checkpoint)
                    await report("asr", end / total_ms, end / 1000)
            timings["vad_asr"] = time.perf_counter() - t0
            return done

        async def diarization():
            if not options.diarize:
                return None
            t0 = time.perf_counter()
            diarizer = self.diarizer
            if diarization_done is not None:
                analysis = diarization_done
                await report("diarization", 1.0, duration)
            else:
                step_s = float(getattr(diarizer.settings, "step_s", 1.0)) or 1.0

                async def on_progress(p) -> None:
                    done = getattr(p, "windows_done", 0)
                    fraction = 0.99 * done * step_s / max(duration, step_s)  # 1.0 after the checkpoint
                    await report("diarization", fraction, getattr(p, "seconds_read", 0.0))

                found = await diarizer.analyze(audio.blocks(30.0), progress=on_progress)
                analysis = DiarizationCheckpoint(found.binary, found.embeddings, found.duration_s)
                timings["diarization_inference"] = time.perf_counter() - t0
                await _call(on_checkpoint, analysis)
                await report("diarization", 1.0, duration)
            t1 = time.perf_counter()
            result = await asyncio.to_thread(self._assemble, diarizer, analysis, options)
            timings["clustering"] = time.perf_counter() - t1
            return result

        speech_task = asyncio.ensure_future(speech())
        diar_task = asyncio.ensure_future(diarization())
        try:
            chunks, diarized = await asyncio.gather(speech_task, diar_task)
        finally:
            for task in (speech_task, diar_task):
                task.cancel()

        # -- the record ---------------------------------------------------------------------------
        await report("align", 0.0, 0.0)
        t0 = time.perf_counter()
        segments = [r.to_segment() for c in chunks for r in c.segments]
        transcript = Transcript.from_segments(segments, duration=duration)
        turns = list(diarized.exclusive_turns) if diarized is not None else []
        if diarized is not None:
            transcript = attribute_speakers(transcript, turns)
        timings["align"] = time.perf_counter() - t0
        await report("align", 1.0, duration)
        return TranscriptionResult(
            transcript,
            turns,
            chunks=len(chunks),
            resumed_chunks=len(chunks_done),
            diarization_resumed=diarization_done is not None,
            timings=timings,
        )

    @staticmethod
    def _assemble(diarizer, analysis: DiarizationCheckpoint, options: TranscriptionOptions):
        from inference_client.diarization import WindowAnalysis

        found = WindowAnalysis(analysis.binary, analysis.embeddings, diarizer.settings, analysis.duration_s)
        kwargs: dict[str, Any] = {
            "num_speakers": options.num_speakers,
            "min_speakers": options.min_speakers,
            "max_speakers": options.max_speakers,
        }
        if options.clustering is not None:
            kwargs["method"] = options.clustering
        return found.assemble(**kwargs)


def _read_resume(
    resume: Iterable[Checkpoint], options: TranscriptionOptions
) -> tuple[list[ChunkCheckpoint], DiarizationCheckpoint | None]:
    """Finished chunks (a contiguous prefix, checked) and the diarization checkpoint, if any."""
    chunks: dict[int, ChunkCheckpoint] = {}
    diarization: DiarizationCheckpoint | None = None
    key = options.chunk_key()
    for item in resume:
        if isinstance(item, DiarizationCheckpoint):
            diarization = item
        elif isinstance(item, ChunkCheckpoint):
            if item.options_key != key:
                raise ValueError(
                    f"checkpoint of chunk {item.index} was made with other options ({item.options_key}); "
                    f"this run has {key}: start without it"
                )
            chunks[item.index] = item
        else:
            raise TypeError(
                f"resume takes ChunkCheckpoint/DiarizationCheckpoint items, got {type(item).__name__}"
            )
    ordered: list[ChunkCheckpoint] = []
    for i in range(len(chunks)):
        if i not in chunks:
            raise ValueError(f"chunk checkpoints must be 0..k without gaps; have {sorted(chunks)}")
        c = chunks[i]
        if ordered and (
            c.cut_ms != ordered[-1].next_cut_ms or c.read_start_ms != ordered[-1].next_read_start_ms
        ):
            raise ValueError(f"chunk checkpoint {i} does not continue chunk {i - 1}")
        if ordered and ordered[-1].final:
            raise ValueError(f"chunk checkpoint {i} follows the final chunk {i - 1}")
        ordered.append(c)
    if ordered and (ordered[0].cut_ms != 0 or ordered[0].read_start_ms != 0):
        raise ValueError("chunk checkpoint 0 does not start at the beginning of the recording")
    if not math.isfinite(options.vad_chunk_s):  # pragma: no cover - checked() refuses it
        raise ValueError("vad_chunk_s must be finite")
    return ordered, diarization
