"""Recording sessions: the original's CRUD at /api/v1/sessions/ plus their audio files."""

from __future__ import annotations

import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from api.blobstore import BlobNotFound
from api.core.security import Principal
from api.crud import audio as audio_crud
from api.crud import sessions as crud
from api.deps import DB, Ctx, SessionReader, SessionWriter
from api.models import DEFAULT_LANGUAGE, DEFAULT_SESSION_TITLE, AudioFile, RecordingSession, SessionStatus
from api.schemas import (
    MAX_OFFSET,
    AudioFileOut,
    Language,
    Message,
    SessionCreate,
    SessionOut,
    SessionUpdate,
    SignedUrlOut,
    Tag,
    Text,
    UtcDatetime,
)
from api.uploads import MultipartFileStream, attachment, stream_upload, upload_limit

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
audio_router = APIRouter(prefix="/api/v1/audio-files", tags=["sessions"])

Reader = SessionReader
Writer = SessionWriter

NOT_FOUND = "session not found"


def _owned(db, principal: Principal, session_id: uuid.UUID) -> RecordingSession:
    session = crud.get_owned(db, principal.user_id, session_id)
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return session


@router.post("/", response_model=SessionOut, status_code=status.HTTP_201_CREATED)
def create_session(body: SessionCreate, db: DB, principal: Writer) -> RecordingSession:
    if body.template_id and not crud.template_visible(db, principal.user_id, body.template_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "template not found")
    session = RecordingSession(
        user_id=principal.user_id,
        title=(body.title or "").strip() or DEFAULT_SESSION_TITLE,
        description=body.description,
        language=body.language or crud.default_language(db, principal.user_id) or DEFAULT_LANGUAGE,
        tags=body.tags,
        template_id=body.template_id,
        meta=body.metadata,
        status=SessionStatus.created.value,
    )
    db.add(session)
    db.commit()
    return session


@router.get("/", response_model=list[SessionOut])
def list_sessions(
    db: DB,
    principal: Reader,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status_: Annotated[list[SessionStatus] | None, Query(alias="status")] = None,
    language: Annotated[Language | None, Query()] = None,
    q: Annotated[Text | None, Query(max_length=200, description="substring of title or description")] = None,
    tag: Annotated[Tag | None, Query()] = None,
    created_after: Annotated[UtcDatetime | None, Query()] = None,
    created_before: Annotated[UtcDatetime | None, Query()] = None,
) -> list[RecordingSession]:
    """Newest first. The total count (for pagination) is in the ``X-Total-Count`` header."""
    rows, total = crud.list_sessions(
        db,
        principal.user_id,
        limit=limit,
        offset=offset,
        statuses=[s.value for s in status_] if status_ else None,
        language=language,
        q=q,
        tag=tag,
        created_after=created_after,
        created_before=created_before,
    )
    response.headers["X-Total-Count"] = str(total)
    return rows


@router.get("/{session_id}", response_model=SessionOut)
def get_session(session_id: uuid.UUID, db: DB, principal: Reader) -> RecordingSession:
    return _owned(db, principal, session_id)


def _apply_update(db, principal: Principal, session_id: uuid.UUID, body: SessionUpdate) -> RecordingSession:
    session = _owned(db, principal, session_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("template_id") and not crud.template_visible(db, principal.user_id, body.template_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "template not found")
    for field, value in changes.items():
        if field == "status":
            value = SessionStatus(value).value
        if field == "metadata":
            field = "meta"
        if field in ("title",) and value is None:
            continue
        setattr(session, field, value)
    db.commit()
    return session


@router.put("/{session_id}", response_model=SessionOut)
def update_session(session_id: uuid.UUID, body: SessionUpdate, db: DB, principal: Writer) -> RecordingSession:
    """Partial update (as the original's PUT): only the fields sent change."""
    return _apply_update(db, principal, session_id, body)


@router.patch("/{session_id}", response_model=SessionOut)
def patch_session(session_id: uuid.UUID, body: SessionUpdate, db: DB, principal: Writer) -> RecordingSession:
    return _apply_update(db, principal, session_id, body)


@router.delete("/{session_id}", response_model=Message)
def delete_session(session_id: uuid.UUID, db: DB, ctx: Ctx, principal: Writer) -> Message:
    """Deletes the session with its audio (rows and blobs), transcripts, summaries and live data;
    its unfinished jobs are cancelled."""
    session = _owned(db, principal, session_id)
    crud.delete_session(db, session, ctx.blobs, ctx.live)
    return Message(message="Session deleted successfully")


# ------------------------------------------------------------------------------------- audio
@router.get("/{session_id}/audio_files", response_model=list[AudioFileOut])
def list_audio_files(session_id: uuid.UUID, db: DB, principal: Reader):
    _owned(db, principal, session_id)
    return audio_crud.list_for_session(db, session_id)


UPLOAD_FIELD = "audio_file"
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [UPLOAD_FIELD],
                "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
            }
        }
    },
}


@router.post(
    "/{session_id}/audio_files",
    response_model=AudioFileOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        413: {"description": "over MAX_UPLOAD_BYTES or MAX_STORED_BYTES_PER_USER (named in the detail)"},
        415: {"description": "the file is not audio (docs/bad-input.md)"},
        422: {"description": "a malformed form, or audio that cannot be transcribed (docs/bad-input.md)"},
    },
)
async def upload_audio_file(session_id: uuid.UUID, request: Request, ctx: Ctx, principal: Writer):
    """Store an audio file for the session (multipart field ``audio_file``, any container FFmpeg
    reads). Scope and ownership are checked before a byte of the body is read; the file streams into
    the blob store, refused (413) past MAX_UPLOAD_BYTES, then checked with PyAV (duration measured
    from its packets): what is not audio, or cannot be transcribed, is refused (415 / 422) and not
    kept (docs/bad-input.md)."""
    # (the scope is checked by the Writer dependency: the route reads the body itself, after it)

    def owned() -> RecordingSession | None:
        with ctx.db.session() as s:
            return crud.get_owned(s, principal.user_id, session_id)

    if await anyio.to_thread.run_sync(owned) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    limit = await anyio.to_thread.run_sync(upload_limit, ctx, principal.user_id)

    def store(stream: MultipartFileStream) -> AudioFile:
        with ctx.db.session() as s:
            session = crud.get_owned(s, principal.user_id, session_id)
            if session is None:  # deleted meanwhile
                raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
            row = audio_crud.store_audio(
                s, ctx.blobs, session, stream, stream.filename, stream.content_type, max_bytes=limit.max_bytes
            )
            s.commit()
            s.refresh(row)
            s.expunge(row)
            return row

    row = await stream_upload(request, UPLOAD_FIELD, limit, store)
    ctx.metrics.blob_bytes.labels(row.storage_backend).inc(row.file_size_bytes or 0)
    return row


@audio_router.get(
    "/{file_id}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the stored bytes"}},
)
def download_audio_file(file_id: uuid.UUID, db: DB, ctx: Ctx, principal: Reader):
    """The stored bytes, streamed, as ``application/octet-stream`` (never the uploader's content
    type: a file that claims text/html must not render in a browser)."""
    row = audio_crud.get_owned(db, principal.user_id, file_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "audio file not found")
    try:
        chunks = ctx.blobs.open_chunks(row.storage_path)
    except BlobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "audio file not found") from None
    name = row.original_filename or row.storage_path.rsplit("/", 1)[-1]
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": attachment(name),
            "X-Content-Type-Options": "nosniff",
            **({"Content-Length": str(row.file_size_bytes)} if row.file_size_bytes is not None else {}),
        },
    )


@audio_router.get("/{file_id}/url", response_model=SignedUrlOut)
def audio_file_url(file_id: uuid.UUID, db: DB, ctx: Ctx, principal: Reader) -> SignedUrlOut:
    """A time-limited direct URL (Supabase Storage), or this api's download path (local backend)."""
    row = audio_crud.get_owned(db, principal.user_id, file_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "audio file not found")
    expires = ctx.settings.signed_url_expire_seconds
    url = ctx.blobs.signed_url(row.storage_path, expires)
    if url is None:
        return SignedUrlOut(url=f"/api/v1/audio-files/{row.id}/download", expires_in=None)
    return SignedUrlOut(url=url, expires_in=expires)
