"""Batch transcription and a session's transcriptions: upload -> job -> versions, edits, exports.

- ``POST /api/v1/transcriptions/batch``: multipart ``audio_file`` (+ ``title``, ``language``,
  ``num_speakers``, ``min_speakers``, ``max_speakers`` as form fields or query parameters): a new
  session, its audio file and a ``transcribe`` job, created together; 202 at once.
- ``POST /api/v1/sessions/{id}/transcribe``: the same job for audio already uploaded.
- ``GET /api/v1/sessions/{id}/transcriptions`` (history), ``GET .../transcription`` (current),
  ``GET .../transcriptions/{transcription_id}``, ``PUT``/``PATCH .../transcription`` (an edit: a new
  version), ``POST .../speakers/rename``, ``GET .../export?format=srt|vtt|txt|json|md``.

Another user's session (or one that does not exist) is 404 everywhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.core.security import Principal, Scope
from api.crud import audio as audio_crud
from api.crud import transcriptions as tcrud
from api.deps import DB, Ctx, SessionReader, SessionWriter, require_scopes
from api.jobs.service import submit_job
from api.jobs.store import ACTIVE_JOB_STATUSES, active_job_of_session
from api.models import (
    DEFAULT_SESSION_TITLE,
    AISummary,
    AudioFile,
    Job,
    JobStatus,
    RecordingSession,
    SessionStatus,
    Transcription,
)
from api.routes.sessions import _owned
from api.schemas import (
    MAX_SPEAKERS,
    BatchOptions,
    Language,
    SegmentOut,
    SpeakerRename,
    TranscribeRequest,
    TranscriptionInfoOut,
    TranscriptionJobOut,
    TranscriptionOut,
    TranscriptionPatch,
    TranscriptionReplace,
)
from api.transcribe_job import KIND, job_params
from api.uploads import MultipartFileStream, attachment, stream_upload, upload_limit
from speechlib.exports import EXPORT_FORMATS, export_transcript
from speechlib.transcript import Segment, Word

batch_router = APIRouter(prefix="/api/v1/transcriptions", tags=["transcriptions"])
router = APIRouter(prefix="/api/v1/sessions", tags=["transcriptions"])

Transcriber = Annotated[Principal, require_scopes(Scope.TRANSCRIBE)]
Reader = SessionReader
Writer = SessionWriter

UPLOAD_FIELD = "audio_file"
BATCH_FIELDS = ("title", "language", "num_speakers", "min_speakers", "max_speakers", "use_itn")
NO_TRANSCRIPTION = "this session has no transcription yet"
FORMAT_ALIASES = {"markdown": "md", "webvtt": "vtt", "text": "txt", "subrip": "srt"}

_BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [UPLOAD_FIELD],
                "properties": {
                    UPLOAD_FIELD: {"type": "string", "format": "binary"},
                    "title": {"type": "string", "maxLength": 500},
                    "language": {"type": "string", "maxLength": 16},
                    "use_itn": {"type": "boolean"},
                    **{
                        k: {"type": "integer", "minimum": 1, "maximum": MAX_SPEAKERS}
                        for k in ("num_speakers", "min_speakers", "max_speakers")
                    },
                },
            }
        }
    },
}
_JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"description": "a transcription of this session is already queued or running"},
    413: {"description": "over MAX_UPLOAD_BYTES or MAX_STORED_BYTES_PER_USER (named in the detail)"},
    415: {"description": "the file is not audio"},
    422: {"description": "bad options, a malformed form, or audio that cannot be transcribed"},
    429: {"description": "MAX_ACTIVE_JOBS_PER_USER transcriptions are already queued or running"},
}


def _invalid(e: ValidationError, where: str) -> RequestValidationError:
    errors = [
        {"type": err.get("type"), "loc": (where, *err.get("loc", ())), "msg": err.get("msg")}
        for err in e.errors()
    ]
    return RequestValidationError(errors)


def _check_active_jobs(ctx: Any, user_id: uuid.UUID) -> None:
    """429 when the user already has MAX_ACTIVE_JOBS_PER_USER transcriptions queued or running."""
    cap = ctx.settings.max_active_jobs_per_user
    with ctx.db.session() as s:
        active = s.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.user_id == user_id, Job.kind == KIND, Job.status.in_(ACTIVE_JOB_STATUSES))
        )
    if active >= cap:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"you have {active} transcriptions queued or running; the limit is {cap} "
            "(MAX_ACTIVE_JOBS_PER_USER): wait for one to finish",
            headers={"Retry-After": "30"},
        )


def _accepted(job: Job, audio_file_id: uuid.UUID, language: str) -> TranscriptionJobOut:
    return TranscriptionJobOut(
        job_id=job.id,
        task_id=job.id,
        session_id=job.session_id,
        audio_file_id=audio_file_id,
        status=JobStatus(job.status),
        language=language,
    )


@batch_router.post(
    "/batch",
    response_model=TranscriptionJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={"requestBody": _BATCH_BODY},
    responses=_JOB_RESPONSES,
)
async def batch_transcription(
    request: Request,
    ctx: Ctx,
    principal: Transcriber,
    title: Annotated[str | None, Query(max_length=500)] = None,
    language: Annotated[Language | None, Query()] = None,
    num_speakers: Annotated[int | None, Query(ge=1, le=MAX_SPEAKERS)] = None,
    min_speakers: Annotated[int | None, Query(ge=1, le=MAX_SPEAKERS)] = None,
    max_speakers: Annotated[int | None, Query(ge=1, le=MAX_SPEAKERS)] = None,
    use_itn: Annotated[bool | None, Query()] = None,
) -> TranscriptionJobOut:
    """Upload a recording and transcribe it: a new session with the audio file and a ``transcribe``
    job, answered 202 at once with the job's id (follow it at ``/api/v1/jobs/{job_id}`` or its
    ``/events``). Options come as form fields or query parameters (a form field wins). No
    ``language`` means ``auto``: the detected language is stored on the session."""
    query = {
        "title": title,
        "language": language,
        "num_speakers": num_speakers,
        "min_speakers": min_speakers,
        "max_speakers": max_speakers,
        "use_itn": use_itn,
    }
    try:
        BatchOptions.model_validate({k: v for k, v in query.items() if v is not None})
    except ValidationError as e:
        raise _invalid(e, "query") from None
    user_id = principal.user_id
    await anyio.to_thread.run_sync(_check_active_jobs, ctx, user_id)
    limit = await anyio.to_thread.run_sync(upload_limit, ctx, user_id)

    def store(stream: MultipartFileStream) -> TranscriptionJobOut:
        session = RecordingSession(
            id=uuid.uuid4(),
            user_id=user_id,
            title=DEFAULT_SESSION_TITLE,
            status=SessionStatus.processing.value,
        )
        with ctx.db.session() as s:
            # pending, not flushed: no transaction (no SQLite write lock) while the file streams in
            s.add(session)
            row = audio_crud.store_audio(
                s, ctx.blobs, session, stream, stream.filename, stream.content_type, max_bytes=limit.max_bytes
            )
            try:
                form = {k: v for k, v in stream.fields.items() if k in BATCH_FIELDS and v.strip()}
                try:
                    options = BatchOptions.model_validate(
                        {**{k: v for k, v in query.items() if v is not None}, **form}
                    )
                except ValidationError as e:
                    raise _invalid(e, "body") from None
                lang = options.language or "auto"
                session.title = (options.title or "").strip() or stream.filename or DEFAULT_SESSION_TITLE
                session.title = session.title[:500]
                session.language = lang
                params = job_params(
                    row.id,
                    lang,
                    options.num_speakers,
                    options.min_speakers,
                    options.max_speakers,
                    options.use_itn,
                )
                job = submit_job(ctx, s, KIND, params, user_id=user_id, session_id=session.id)
            except BaseException:
                s.rollback()
                ctx.blobs.delete([row.storage_path])
                raise
            ctx.metrics.blob_bytes.labels(row.storage_backend).inc(row.file_size_bytes or 0)
            return _accepted(job, row.id, lang)

    return await stream_upload(request, UPLOAD_FIELD, limit, store)


@router.post(
    "/{session_id}/transcribe",
    response_model=TranscriptionJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_JOB_RESPONSES,
)
def transcribe_session(
    session_id: uuid.UUID, db: DB, ctx: Ctx, principal: Transcriber, body: TranscribeRequest | None = None
) -> TranscriptionJobOut:
    """(Re-)transcribe a session's uploaded audio (its latest audio file unless ``audio_file_id``
    says which). The current transcription stays current until the new one is stored."""
    body = body or TranscribeRequest()
    session = _owned(db, principal, session_id)
    if body.audio_file_id is not None:
        audio = db.get(AudioFile, body.audio_file_id)
        if audio is None or audio.session_id != session.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "audio file not found in this session")
    else:
        audio = db.scalar(
            select(AudioFile)
            .where(AudioFile.session_id == session.id)
            .order_by(AudioFile.created_at.desc(), AudioFile.id)
            .limit(1)
        )
        if audio is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "this session has no audio file: upload one to /audio_files first"
            )
    running = active_job_of_session(db, session.id, KIND)
    if running is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"a transcription of this session is already queued or running (job {running})",
        )
    _check_active_jobs(ctx, principal.user_id)
    lang = body.language or "auto"
    params = job_params(audio.id, lang, body.num_speakers, body.min_speakers, body.max_speakers, body.use_itn)
    session.status = SessionStatus.processing.value
    job = submit_job(ctx, db, KIND, params, user_id=principal.user_id, session_id=session.id)
    return _accepted(job, audio.id, lang)


# ------------------------------------------------------------------------------ reading versions
@router.get("/{session_id}/transcriptions", response_model=list[TranscriptionInfoOut])
def list_transcriptions(session_id: uuid.UUID, db: DB, principal: Reader) -> list[Transcription]:
    """Every version, newest first (without text: fetch one for its segments)."""
    _owned(db, principal, session_id)
    return tcrud.list_transcriptions(db, session_id)


_SEGMENT_OUT = TypeAdapter(SegmentOut)


def transcription_json(row: Transcription) -> Response:
    """``row`` as :class:`TranscriptionOut` JSON, made one segment at a time. The usual way (the
    whole model validated, turned into a dict, then dumped) holds three copies of a transcript at
    once: ~+50 MiB in the api for a 4-hour meeting's 3.7 MB of JSON (docs/benchmarks.md); this holds
    the JSON's bytes. Every segment is validated before the first byte is sent, so a stored segment
    that does not fit the schema is still an error response, not a truncated body."""
    head = TranscriptionInfoOut.model_validate(row).model_dump_json()
    content = json.dumps(row.content, ensure_ascii=False)
    parts = [
        _SEGMENT_OUT.dump_json(_SEGMENT_OUT.validate_python(seg))
        for seg in TranscriptionOut.keep_readable(row.segments)
    ]

    def body() -> Iterator[bytes]:
        yield f'{head[:-1]},"content":{content},"segments":['.encode()
        for i, part in enumerate(parts):
            yield (b"," if i else b"") + part
        yield b"]}"

    return StreamingResponse(body(), media_type="application/json")


@router.get("/{session_id}/transcription", response_model=TranscriptionOut)
def current_transcription(session_id: uuid.UUID, db: DB, principal: Reader) -> Response:
    """The current version (the latest successful transcription, or the latest edit of it)."""
    _owned(db, principal, session_id)
    row = tcrud.current_transcription(db, session_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_TRANSCRIPTION)
    return transcription_json(row)


@router.get("/{session_id}/transcriptions/{transcription_id}", response_model=TranscriptionOut)
def get_transcription(
    session_id: uuid.UUID, transcription_id: uuid.UUID, db: DB, principal: Reader
) -> Response:
    _owned(db, principal, session_id)
    row = db.get(Transcription, transcription_id)
    if row is None or row.session_id != session_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "transcription not found")
    return transcription_json(row)


# ------------------------------------------------------------------------------ edits
def _base(db, session: RecordingSession, base_version: int | None) -> Transcription:
    base = tcrud.current_transcription(db, session.id)
    if base is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_TRANSCRIPTION)
    if base_version is not None and base.version != base_version:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"the current version is {base.version}, not {base_version}: reload and edit that one",
        )
    return base


def _commit_edit(db) -> None:
    try:
        db.commit()
    except IntegrityError:  # another edit stored the same version number first
        db.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the transcription changed meanwhile: reload and edit again"
        ) from None


@router.put("/{session_id}/transcription", response_model=TranscriptionOut, responses={409: {}})
def replace_segments(
    session_id: uuid.UUID, body: TranscriptionReplace, db: DB, principal: Writer
) -> Transcription:
    """Replace the current version's segments (an edit: a new version; the old one stays in the
    history). Segments with blank text are dropped; the rest are sorted by time and renumbered."""
    session = _owned(db, principal, session_id)
    base = _base(db, session, body.base_version)
    segments = [
        Segment(
            index=i,
            start=seg.start_time,
            end=seg.end_time,
            text=seg.text,
            speaker=seg.speaker,
            language=seg.language,
            emotion=seg.emotion,
            event=seg.event,
            words=tuple(Word(w.start, w.end, w.word, w.speaker, w.probability) for w in seg.words),
            confidence=seg.confidence_score,
        )
        for i, seg in enumerate(body.segments, start=1)
    ]
    row = tcrud.edit_transcription(db, session=session, base=base, segments=segments)
    _commit_edit(db)
    return row


@router.patch("/{session_id}/transcription", response_model=TranscriptionOut, responses={409: {}})
def patch_segments(
    session_id: uuid.UUID, body: TranscriptionPatch, db: DB, principal: Writer
) -> Transcription:
    """Change some segments of the current version, named by ``index`` (text, speaker, times): a new
    version. A segment's new speaker applies to its words too."""
    session = _owned(db, principal, session_id)
    base = _base(db, session, body.base_version)
    try:
        segments = tcrud.patched_segments(
            tcrud.transcript_of(base), [p.model_dump(exclude_none=True) for p in body.segments]
        )
    except LookupError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e).strip("'\"")) from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    row = tcrud.edit_transcription(db, session=session, base=base, segments=segments)
    _commit_edit(db)
    return row


@router.post("/{session_id}/speakers/rename", response_model=TranscriptionOut, responses={409: {}})
def rename_speaker(session_id: uuid.UUID, body: SpeakerRename, db: DB, principal: Writer) -> Transcription:
    """Rename a speaker across the session's current transcript (segments and words): a new version."""
    session = _owned(db, principal, session_id)
    _base(db, session, body.base_version)
    try:
        _, row = tcrud.rename_speaker(db, session=session, old=body.speaker, new=body.name)
    except LookupError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e).strip("'\"")) from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    _commit_edit(db)
    return row


# ------------------------------------------------------------------------------ exports
_EXPORT_CONTENT = {spec.media_type.split(";")[0]: {} for spec in EXPORT_FORMATS.values()}


@router.get(
    "/{session_id}/export",
    response_class=Response,
    responses={200: {"content": _EXPORT_CONTENT, "description": "the current transcript as a file"}},
)
def export_session(
    session_id: uuid.UUID,
    db: DB,
    principal: Reader,
    format: Annotated[str, Query(max_length=16, description="srt, vtt, txt, json or md (markdown)")] = "srt",  # noqa: A002
) -> Response:
    """The current transcript as SRT, WebVTT, plain text, JSON or Markdown minutes (with the latest
    summary, when the session has one), as a download."""
    session = _owned(db, principal, session_id)
    fmt = FORMAT_ALIASES.get(format.lower(), format.lower())
    spec = EXPORT_FORMATS.get(fmt)
    if spec is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}",
        )
    row = tcrud.current_transcription(db, session_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_TRANSCRIPTION)
    summary = None
    if spec.name == "md":
        summary = db.scalar(
            select(AISummary.summary)
            .where(AISummary.session_id == session_id, AISummary.status == "completed")
            .order_by(AISummary.created_at.desc(), AISummary.id)
            .limit(1)
        )
    transcript = tcrud.transcript_of(row, duration=session.duration_seconds)
    text = export_transcript(transcript, spec.name, title=session.title, summary=summary)
    name = f"{session.title or 'transcript'}.{spec.extension}"
    return Response(
        text.encode("utf-8"),
        media_type=spec.media_type,
        headers={"Content-Disposition": attachment(name), "X-Content-Type-Options": "nosniff"},
    )
