"""Synchronous transcription and diarization of short audio, shared by the OpenAI-compatible endpoint
(``api/routes/openai_compat.py``) and the original's direct calls (``api/routes/direct.py``).

One request, one answer, no job: audio up to ``SYNC_MAX_AUDIO_SECONDS`` (300 s by default) is decoded
in memory (at most 19 MB of float32), sent through Triton (VAD -> ASR on every speech segment,
concurrently; diarization over the whole clip when asked) and recorded in the caller's history as a
session with its transcription. Longer audio is refused with 413 naming the batch endpoint.

Errors are :class:`SyncCallError` (status, a stable code, a message for the person, the parameter at
fault); each route renders them in its own shape. Nothing the caller sends can make a 500 here: bad
audio is 400, too long 413, Triton down or not serving the models 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from api.core.config import Settings
from speechlib.ctc import confidence_of
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD, Segmentation, SpeakerEmbedding
from speechlib.languages import normalize_language
from speechlib.transcript import Transcript, attribute_speakers, segment_from_asr

if TYPE_CHECKING:
    from api.context import AppContext
    from api.core.security import Principal
    from inference_client.asr import TranscribedSegment
    from speechlib.diarization.pipeline import DiarizationResult

log = logging.getLogger("api.sync")

BATCH_ENDPOINT = "POST /api/v1/transcriptions/batch"
SYNC_BYTES_PER_SECOND = 384_000
"""Request bytes allowed per second of ``SYNC_MAX_AUDIO_SECONDS``: float32 stereo at 48 kHz in a file
(4 x 2 x 48 000), or ~24 characters per sample of a 16 kHz JSON array (16 000 x 24). A 300 s limit
gives a 110 MiB body limit on these routes (every other route keeps ``MAX_BODY_BYTES``)."""
BODY_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, JSON keys
DURATION_TOLERANCE_S = 0.5  # a container's claim or a resampler's rounding over the limit
READY_TIMEOUT_S = 0.0  # one check (server and each model): a server not ready now is a 503 now
MAX_INPUT_SAMPLE_RATE = 384_000
INT16_SCALE = 32768.0
TRANSCRIPTION_MODELS = (VAD.NAME, ASR.NAME)
DIARIZATION_MODELS = (Segmentation.NAME, SpeakerEmbedding.NAME)


class SyncCallError(Exception):
    """A request that cannot be answered: ``status`` (HTTP), ``code`` (stable, for clients), ``message``
    (for the person), ``param`` (the request field at fault, or None)."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param


def multipart_body(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a multipart form itself (the fields documented)."""
    schema = {"type": "object", "required": list(required), "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def sync_body_limit(settings: Settings) -> int:
    """The body limit of the synchronous routes, derived from ``sync_max_audio_seconds``."""
    return int(settings.sync_max_audio_seconds * SYNC_BYTES_PER_SECOND) + BODY_OVERHEAD_BYTES


def too_long(seconds: float, limit: float, param: str | None = None) -> SyncCallError:
    return SyncCallError(
        413,
        "audio_too_long",
        f"the audio is {seconds:.1f} s long; synchronous calls take at most {limit:g} s "
        f"(SYNC_MAX_AUDIO_SECONDS). Send longer recordings to {BATCH_ENDPOINT} (a durable job: "
        "the answer says where to follow it).",
        param,
    )


def check_language(language: str | None, param: str = "language") -> str:
    try:
        return normalize_language(language)
    except ValueError as e:
        raise SyncCallError(400, "unsupported_language", str(e), param) from None


# -- audio in ---------------------------------------------------------------------------------------


def decode_upload(src: BinaryIO, max_seconds: float, param: str = "file") -> np.ndarray:
    """An uploaded file (any format FFmpeg reads) as 16 kHz mono float32. Blocking: run in a thread.
    The upload is copied to a temporary file (the decoder reads paths); the container's claimed
    duration is checked before decoding, the decoded length after."""
    import shutil
    import tempfile

    from api.media import media
    from inference_client.audio import AudioDecodeError, decode_audio, probe_audio

    with tempfile.TemporaryDirectory(prefix="intrascribe-sync-") as tmp:
        path = Path(tmp) / "upload"
        src.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        try:
            info = media.run(probe_audio, path)  # in a media process (api.media)
            if info.duration_s is not None and info.duration_s > max_seconds + DURATION_TOLERANCE_S:
                raise too_long(info.duration_s, max_seconds, param)
            x = media.run(decode_audio, path)
        except AudioDecodeError as e:
            raise SyncCallError(
                400, "invalid_audio", f"the file is not audio we can decode: {e}", param
            ) from None
    if x.size > (max_seconds + DURATION_TOLERANCE_S) * SAMPLE_RATE:
        raise too_long(x.size / SAMPLE_RATE, max_seconds, param)
    return x


def waveform_from_array(
    values: Sequence[float], sample_rate: int, max_seconds: float, param: str = "audio_data"
) -> np.ndarray:
    """The original's ``audio_data`` as 16 kHz mono float32 in [-1, 1]: values whose largest
    magnitude is over 1 are int16-scale (divided by 32768), others floats in [-1, 1]; other rates
    are resampled (polyphase, scipy)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise SyncCallError(
            400, "empty_audio", "audio_data.audio_array holds no samples", f"{param}.audio_array"
        )
    if not np.isfinite(x).all():
        raise SyncCallError(
            400,
            "invalid_audio",
            "audio_data.audio_array holds NaN or infinite values",
            f"{param}.audio_array",
        )
    if not 0 < sample_rate <= MAX_INPUT_SAMPLE_RATE:
        raise SyncCallError(
            400,
            "invalid_sample_rate",
            f"audio_data.sample_rate must be 1-{MAX_INPUT_SAMPLE_RATE} Hz, got {sample_rate}",
            f"{param}.sample_rate",
        )
    seconds = x.size / sample_rate
    if seconds > max_seconds + DURATION_TOLERANCE_S:
        raise too_long(seconds, max_seconds, param)
    peak = float(np.abs(x).max())
    if peak > 1.0:
        if peak > INT16_SCALE:
            raise SyncCallError(
                400,
                "invalid_audio",
                f"audio_data.audio_array peaks at {peak:g}: send floats in [-1, 1] or int16 values "
                "(-32768..32767)",
                f"{param}.audio_array",
            )
        x = x / INT16_SCALE
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(int(sample_rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


# -- Triton -----------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    transcript: Transcript
    asr_segments: list  # inference_client.asr.TranscribedSegment, in time order (token ids and times)
    processing_ms: int
    diarization: DiarizationResult | None = None


def _unavailable(what: str, detail: str) -> SyncCallError:
    return SyncCallError(503, "inference_unavailable", f"{what} is not available right now: {detail}")


async def _ready(ctx: AppContext, models: Iterable[str]):
    if ctx.inference is None:  # pragma: no cover - every AppContext made from settings has one
        raise _unavailable("speech recognition", "this api process has no Triton client")
    client = ctx.inference.client()
    try:
        await client.wait_ready(list(models), timeout_s=READY_TIMEOUT_S)
    except TimeoutError as e:
        raise _unavailable("the inference server", str(e)) from None
    return client


def _inference_error(e: Exception) -> SyncCallError:
    from inference_client.errors import (
        InvalidRequestError,
        ModelNotFoundError,
        TritonUnavailableError,
    )

    if isinstance(e, TritonUnavailableError | ModelNotFoundError):
        return _unavailable("the inference server", e.message)
    if isinstance(e, InvalidRequestError):
        return SyncCallError(400, "invalid_audio", f"the audio was refused: {e.message}")
    return SyncCallError(502, "inference_failed", f"inference failed: {getattr(e, 'message', e)}")


def segment_confidence(segment: TranscribedSegment) -> float | None:
    """A segment's confidence in [0, 1]: the geometric mean of its tokens' CTC posteriors
    (``asr``'s ``TOKEN_PROBS``: each token's mean posterior over its frames on the greedy path);
    None for a segment without tokens."""
    return confidence_of([t.probability for t in segment.transcript.tokens])


def transcript_confidence(segments: Sequence[TranscribedSegment]) -> float | None:
    """The whole text's confidence: the geometric mean over all its tokens (None without tokens)."""
    return confidence_of([t.probability for s in segments for t in s.transcript.tokens])


async def transcribe(
    ctx: AppContext,
    x: np.ndarray,
    *,
    language: str = "auto",
    diarize: bool = False,
    use_itn: bool = True,
    num_speakers: int | None = None,
) -> SyncResult:
    """VAD -> ASR (every speech segment concurrently, so Triton batches them) of a short waveform,
    and diarization of the same waveform when ``diarize`` (concurrently), speakers on segments and
    words by :func:`speechlib.transcript.attribute_speakers` — the batch job's record."""
    from inference_client.errors import InferenceError

    t0 = time.perf_counter()
    models = TRANSCRIPTION_MODELS + (DIARIZATION_MODELS if diarize else ())
    await _ready(ctx, models)
    transcriber = ctx.inference.transcriber()
    diarizer = _diarizer(transcriber) if diarize else None
    try:
        speech = transcriber.asr.transcribe_segments(x, language, use_itn)
        if diarizer is not None:
            asr_segments, diarization = await asyncio.gather(
                speech, diarizer.diarize(x, num_speakers=num_speakers)
            )
        else:
            asr_segments, diarization = await speech, None
    except InferenceError as e:
        raise _inference_error(e) from None
    except ValueError as e:  # the client's own checks (audio too short for ASR, ...)
        raise SyncCallError(400, "invalid_audio", str(e)) from None
    segments = [
        segment_from_asr(
            start_ms=s.start_ms,
            end_ms=s.end_ms,
            text=s.text,
            pieces=[t.text for t in s.transcript.tokens],
            token_times_ms=np.asarray(
                [(t.start_ms, t.end_ms) for t in s.transcript.tokens], np.int64
            ).reshape(-1, 2),
            language=s.transcript.language if s.transcript.language != "nospeech" else None,
            emotion=s.transcript.emotion,
            event=s.transcript.event,
            confidence=segment_confidence(s),
        )
        for s in asr_segments
    ]
    transcript = Transcript.from_segments(segments, duration=x.size / SAMPLE_RATE)
    if diarization is not None:
        transcript = attribute_speakers(transcript, list(diarization.exclusive_turns))
    kept = [s for s in asr_segments if s.text.strip()]
    return SyncResult(transcript, kept, int((time.perf_counter() - t0) * 1000), diarization)


def _diarizer(transcriber):
    try:
        return transcriber.diarizer
    except FileNotFoundError as e:
        raise _unavailable("diarization", f"its pipeline parameters are missing ({e})") from None


async def diarize(ctx: AppContext, x: np.ndarray, *, num_speakers: int | None = None) -> SyncResult:
    """Diarization alone (the original's ``/diarize``)."""
    from inference_client.errors import InferenceError

    t0 = time.perf_counter()
    await _ready(ctx, DIARIZATION_MODELS)
    diarizer = _diarizer(ctx.inference.transcriber())
    try:
        result = await diarizer.diarize(x, num_speakers=num_speakers)
    except InferenceError as e:
        raise _inference_error(e) from None
    except ValueError as e:
        raise SyncCallError(400, "invalid_audio", str(e)) from None
    empty = Transcript.from_segments([], duration=x.size / SAMPLE_RATE)
    return SyncResult(empty, [], int((time.perf_counter() - t0) * 1000), result)


# -- the caller's history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCall:
    session_id: uuid.UUID
    transcription_id: uuid.UUID | None
    audio_file_id: uuid.UUID | None


def record_call(
    ctx: AppContext,
    principal: Principal,
    *,
    result: SyncResult,
    source: str,
    title: str,
    session_id: uuid.UUID | None = None,
    audio: tuple[BinaryIO, str | None, str | None] | None = None,
    stt_model: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> StoredCall:
    """Record one call in the caller's history (blocking: run in a thread): the session
    ``session_id`` (must be the caller's; else 404) or a new, completed one; the uploaded file in the
    blob store (``audio``: file, filename, content type); the transcription (source ``source``)."""
    from api.crud import audio as audio_crud
    from api.crud import sessions as sessions_crud
    from api.crud.transcriptions import save_transcription
    from api.models import RecordingSession, SessionStatus

    transcript = result.transcript
    with ctx.db.session() as s:
        if session_id is not None:
            session = sessions_crud.get_owned(s, principal.user_id, session_id)
            if session is None:
                raise SyncCallError(404, "session_not_found", "no such session", "session_id")
        else:
            session = RecordingSession(
                user_id=principal.user_id,
                title=title[:500],
                status=SessionStatus.completed.value,
                language=transcript.language or "auto",
                duration_seconds=transcript.duration,
                meta={"source": source, **(metadata or {})},
            )
            s.add(session)
            s.flush()
        audio_file_id = None
        if audio is not None:
            src, filename, content_type = audio
            src.seek(0)
            row = audio_crud.store_audio(
                s, ctx.blobs, session, iter(lambda: src.read(1024 * 1024), b""), filename, content_type
            )
            audio_file_id = row.id
        transcription_id = None
        if transcript.segments or session_id is None:
            saved = save_transcription(
                s,
                session=session,
                transcript=transcript,
                source=source,
                audio_file_id=audio_file_id,
                processing_time_ms=result.processing_ms,
                stt_model=stt_model,
            )
            transcription_id = saved.id
        s.commit()
        return StoredCall(session.id, transcription_id, audio_file_id)


def stt_model_name() -> str:
    """What answers: the ``asr`` model's network (SenseVoiceSmall)."""
    return "SenseVoiceSmall"
