"""The original's direct calls, now on Triton, synchronous, for short audio (``SYNC_MAX_AUDIO_SECONDS``).

- ``POST /transcribe``: the original's JSON body ``{"audio_data": {"sample_rate", "audio_array"},
  "session_id", "language"}``; values with a largest magnitude over 1 are int16-scale, others floats
  in [-1, 1]; any rate is resampled to 16 kHz. Answers the original's ``{success, text,
  confidence_score, processing_time_ms, error_message}`` plus ``segments`` (times in seconds) and the
  detected ``language``. ``confidence_score`` comes from the CTC posteriors (``api.sync_calls``).
  The result is recorded in the caller's history (source ``direct``): in the session ``session_id``
  when given (it must be the caller's), else in a new session.
- ``POST /diarize-file``: multipart ``file`` (or ``audio_file``), optional ``session_id`` (logged,
  as the original did) and ``num_speakers``; answers the original's ``/diarize`` shape ``{success,
  segments: [{start_time, end_time, speaker_label, duration}], speaker_count, processing_time_ms,
  error_message}``. Nothing is stored.

Both need an access token or an API key with the ``transcribe`` scope (the original's were open: a
deliberate break, see README's migration section). Errors keep the shape with ``success: false`` and
a 4xx/5xx status (the original answered 200 with ``success: false``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.core.security import Principal, Scope
from api.deps import Ctx, require_scopes
from api.sync_calls import (
    SyncCallError,
    check_language,
    decode_upload,
    diarize,
    multipart_body,
    record_call,
    stt_model_name,
    transcribe,
    transcript_confidence,
    waveform_from_array,
)

log = logging.getLogger("api.direct")

router = APIRouter(tags=["direct calls (the original's)"])

TRANSCRIBE_PATH = "/transcribe"
DIARIZE_PATH = "/diarize-file"
Caller = Annotated[Principal, require_scopes(Scope.TRANSCRIBE)]


class AudioData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sample_rate: int = Field(16000, ge=1, le=384_000, description="Hz; resampled to 16 kHz")
    audio_array: list[float] = Field(
        ..., description="mono samples: floats in [-1, 1], or int16-scale values (largest |x| > 1)"
    )


class TranscribeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    audio_data: AudioData
    session_id: str | None = Field(None, max_length=64, description="a session of the caller to record into")
    language: str | None = Field("auto", max_length=16, description="auto, zh, en, yue, ja, ko (zh-CN...)")


class DirectSegment(BaseModel):
    start_time: float
    end_time: float
    text: str
    confidence_score: float | None = None
    language: str | None = None


class TranscribeResponse(BaseModel):
    success: bool
    text: str = ""
    confidence_score: float | None = None
    processing_time_ms: int = 0
    error_message: str | None = None
    segments: list[DirectSegment] = []
    language: str | None = None
    session_id: str | None = None


class DiarizedSegment(BaseModel):
    start_time: float
    end_time: float
    speaker_label: str
    duration: float


class DiarizeResponse(BaseModel):
    success: bool
    segments: list[DiarizedSegment] = []
    speaker_count: int = 0
    processing_time_ms: int = 0
    error_message: str | None = None


def _failure(e: SyncCallError, model: type[BaseModel]) -> JSONResponse:
    body = model(success=False, error_message=e.message).model_dump()
    return JSONResponse(body, status_code=e.status)


_ANY_JSON = {"application/json": {"schema": {"type": "object"}}}  # success: false + error_message, or detail
_FAILURES: dict[int | str, dict[str, Any]] = {
    400: {"description": "not usable audio, or an unsupported language", "content": _ANY_JSON},
    404: {"description": "session_id is not a session of the caller", "content": _ANY_JSON},
    413: {
        "description": "over SYNC_MAX_AUDIO_SECONDS (use the batch endpoint) or the body limit",
        "content": _ANY_JSON,
    },
    429: {"description": "SYNC_MAX_CONCURRENT calls in progress; see Retry-After", "content": _ANY_JSON},
    502: {"description": "the inference server failed the request", "content": _ANY_JSON},
    503: {"description": "the inference server is down or not serving the models", "content": _ANY_JSON},
}


def _session_uuid(session_id: str | None) -> uuid.UUID | None:
    if session_id is None or not session_id.strip():
        return None
    try:
        return uuid.UUID(session_id.strip())
    except ValueError:
        raise SyncCallError(404, "session_not_found", "no such session", "session_id") from None


@router.post(
    TRANSCRIBE_PATH,
    response_model=TranscribeResponse,
    responses=_FAILURES,
)
async def transcribe_direct(body: TranscribeRequest, ctx: Ctx, principal: Caller):
    """Transcribe a waveform sent as JSON (the original's ``/transcribe``)."""
    limit = ctx.settings.sync_max_audio_seconds
    try:
        language = check_language(body.language)
        session_id = _session_uuid(body.session_id)
        x = waveform_from_array(body.audio_data.audio_array, body.audio_data.sample_rate, limit)
        body.audio_data.audio_array = []  # the samples live on in x only
        result = await transcribe(ctx, x, language=language)
        stored = await anyio.to_thread.run_sync(
            lambda: record_call(
                ctx,
                principal,
                result=result,
                source="direct",
                title="Direct transcription",
                session_id=session_id,
                stt_model=stt_model_name(),
            )
        )
    except SyncCallError as e:
        return _failure(e, TranscribeResponse)
    t = result.transcript
    return TranscribeResponse(
        success=True,
        text=t.text,
        confidence_score=transcript_confidence(result.asr_segments),
        processing_time_ms=result.processing_ms,
        segments=[
            DirectSegment(
                start_time=s.start,
                end_time=s.end,
                text=s.text,
                confidence_score=s.confidence,
                language=s.language,
            )
            for s in t.segments
        ],
        language=t.language,
        session_id=str(stored.session_id),
    )


_DIARIZE_FORM = multipart_body(
    {
        "file": {"type": "string", "format": "binary"},
        "session_id": {"type": "string", "maxLength": 64},
        "num_speakers": {"type": "integer", "minimum": 1, "maximum": 20},
    },
    ["file"],
)


@router.post(DIARIZE_PATH, response_model=DiarizeResponse, responses=_FAILURES, openapi_extra=_DIARIZE_FORM)
async def diarize_file(
    ctx: Ctx,
    principal: Caller,
    file: Annotated[UploadFile | None, File(include_in_schema=False)] = None,
    audio_file: Annotated[UploadFile | None, File(include_in_schema=False)] = None,
    session_id: Annotated[str | None, Form(include_in_schema=False, max_length=64)] = None,
    num_speakers: Annotated[int | None, Form(include_in_schema=False, ge=1, le=20)] = None,
):
    """Who spoke when in an uploaded file (the original's ``/diarize``)."""
    upload = file if file is not None else audio_file
    try:
        if upload is None or not hasattr(upload, "file"):
            raise SyncCallError(400, "missing_file", "send the audio as multipart field 'file'", "file")
        limit = ctx.settings.sync_max_audio_seconds
        x = await anyio.to_thread.run_sync(decode_upload, upload.file, limit)
        result = await diarize(ctx, x, num_speakers=num_speakers)
    except SyncCallError as e:
        return _failure(e, DiarizeResponse)
    turns = result.diarization.turns  # pyannote's tracks: overlapping speech kept, as the original's
    log.info("diarize-file for user %s (session_id %r): %d turns", principal.user_id, session_id, len(turns))
    return DiarizeResponse(
        success=True,
        segments=[
            DiarizedSegment(
                start_time=round(t.start_s, 3),
                end_time=round(t.end_s, 3),
                speaker_label=t.speaker,
                duration=round(t.end_s - t.start_s, 3),
            )
            for t in turns
        ],
        speaker_count=len({t.speaker for t in turns}),
        processing_time_ms=result.processing_ms,
    )
