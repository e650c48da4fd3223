"""A live session's recording: chunk upload (``PUT .../recording/{participant}/{seq}``), the list of
stored chunks (``GET .../recording``, to resume after a reconnect) and finalize
(``POST .../finalize``). The work is in :mod:`api.recording`; docs/interfaces.md ("Recording chunks
and finalize") is the contract the agent codes against."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from api import live_transcribe_job as live_job
from api import recording as rec
from api.context import AppContext
from api.crud import audio as audio_crud
from api.crud import sessions as crud
from api.crud.audio import AudioRejected
from api.deps import Ctx
from api.jobs.service import submit_job
from api.jobs.store import active_job_of_session
from api.live_auth import LiveWriter
from api.models import RecordingSession
from api.summaries import maybe_enqueue_auto_summary
from api.uploads import stored_bytes

log = logging.getLogger("api.recording")

router = APIRouter(prefix="/api/v1/sessions", tags=["live"])

CHUNK_PATH = re.compile(r"^/api/v1/sessions/[^/]+/recording/[^/]+/[^/]+/?$")  # its body limit (api.main)
NOT_FOUND = "session not found"
PARTICIPANT_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}$"  # a LiveKit identity: any printable text

# Who may upload, list and finalize: the session's owner (sessions:write) or the agent token of this
# session (api.live_auth.LiveWriter: 404 for anyone else's session).


class ChunkOut(BaseModel):
    session_id: uuid.UUID
    participant: str
    seq: int
    size_bytes: int
    sha256: str
    duration_seconds: float
    offset_seconds: float = Field(description="the participant's start on the session's timeline (s)")
    start_seconds: float = Field(
        description="this chunk's start on the session's timeline: offset + seq x chunk_seconds"
    )
    created: bool = Field(description="false: these bytes were already stored for this seq (nothing changed)")


class TrackOut(BaseModel):
    participant: str
    offset_seconds: float
    chunk_seconds: float
    seqs: list[int]
    missing: list[int] = Field(description="seqs below the highest stored one that are not stored")
    next_seq: int
    recorded_seconds: float
    end_seconds: float


class RecordingOut(BaseModel):
    session_id: uuid.UUID
    chunk_seconds: float = Field(description="RECORDING_CHUNK_SECONDS: the length a new track's chunks have")
    max_chunk_bytes: int
    finalized: bool
    audio_file_id: uuid.UUID | None = None
    participants: list[TrackOut]


class FinalizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retranscribe: bool = Field(
        False,
        description="also start a job that runs ASR on each participant's own track (participant = speaker)",
    )
    diarize: bool = Field(False, description="with retranscribe: diarize inside each track as well")


class FinalizeOut(BaseModel):
    session_id: uuid.UUID
    transcription_id: uuid.UUID
    audio_file_id: uuid.UUID | None
    duration_seconds: float
    participants: list[str]
    segments: int
    created: bool = Field(description="false: the session was finalized before; nothing changed")
    job_id: uuid.UUID | None = Field(None, description="the re-transcription job, when one was started")


_CHUNK_BODY = {
    "required": True,
    "content": {
        "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_ERR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}


def _stored_room(ctx: AppContext, owner_id: uuid.UUID) -> int:
    with ctx.db.session() as s:
        return ctx.settings.max_stored_bytes_per_user - stored_bytes(s, owner_id)


async def _read_capped(request: Request, ctx: AppContext, owner_id: uuid.UUID) -> bytes:
    """The chunk's bytes: at most RECORDING_MAX_CHUNK_BYTES, and what the owner's
    MAX_STORED_BYTES_PER_USER leaves (a chunk is stored audio like an upload); else 413."""
    room = await anyio.to_thread.run_sync(_stored_room, ctx, owner_id)
    limit = ctx.settings.recording_max_chunk_bytes
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > room:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"this chunk would exceed the owner's stored audio limit of "
                f"{ctx.settings.max_stored_bytes_per_user} bytes (MAX_STORED_BYTES_PER_USER)",
            )
        if len(data) > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"a chunk may hold {limit} bytes at most (RECORDING_MAX_CHUNK_BYTES)",
            )
    return bytes(data)


def _refusal(e: rec.RecordingError | AudioRejected) -> HTTPException:
    """The refusal as uploads answer theirs: ``detail`` is "code: reason"."""
    message = e.message if isinstance(e, AudioRejected) else f"{e.code}: {e.message}"
    return HTTPException(e.status_code, message)


@router.put(
    "/{session_id}/recording/{participant}/{seq}",
    response_model=ChunkOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": _CHUNK_BODY},
    responses={
        200: {
            "description": "these bytes were already stored for this seq: nothing changed",
            "model": ChunkOut,
        },
        409: {"description": "other bytes are stored for this seq, or the recording is finalized", **_ERR},
        413: {"description": "over RECORDING_MAX_CHUNK_BYTES, or MAX_STORED_BYTES_PER_USER reached", **_ERR},
        415: {"description": "not audio, or not Ogg", **_ERR},
        422: {
            "description": "bad path/query values, or audio that cannot be a chunk (too short/long)",
            **_ERR,
        },
    },
)
async def put_chunk(
    session_id: uuid.UUID,
    participant: Annotated[str, Path(pattern=PARTICIPANT_PATTERN, max_length=255)],
    seq: Annotated[int, Path(ge=0, le=rec.MAX_SEQ)],
    request: Request,
    response: Response,
    ctx: Ctx,
    access: LiveWriter,
    offset: Annotated[
        float | None,
        Query(
            ge=0,
            le=rec.MAX_OFFSET_S,
            description="the participant's start on the session's timeline (seconds); read from the first "
            "chunk of a participant only; without it the api measures it from the arrival time",
        ),
    ] = None,
) -> ChunkOut:
    """Store chunk ``seq`` (0, 1, ...) of ``participant``'s recording: one Ogg/Opus file of
    RECORDING_CHUNK_SECONDS (the last one may be shorter). Idempotent: the same bytes again answer
    200 and change nothing; other bytes for a stored seq answer 409. Chunks may come in any order;
    ``GET .../recording`` lists what is stored (to resume after a reconnect)."""
    data = await _read_capped(request, ctx, access.owner_id)

    def store() -> rec.ChunkOutcome:
        for attempt in range(3):
            with ctx.db.session() as s:
                session = crud.get_owned(s, access.owner_id, session_id)
                if session is None:
                    raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
                try:
                    out = rec.accept_chunk(
                        s,
                        ctx.blobs,
                        session,
                        participant,
                        seq,
                        data,
                        ctx.settings.recording_chunk_seconds,
                        offset,
                    )
                    s.commit()
                    return out
                except IntegrityError:  # a concurrent upload of this track or seq won: look again
                    s.rollback()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    try:
        out = await anyio.to_thread.run_sync(store)
    except (rec.RecordingError, AudioRejected) as e:
        raise _refusal(e) from None
    if not out.created:
        response.status_code = status.HTTP_200_OK
    return ChunkOut(
        session_id=session_id,
        participant=participant,
        seq=seq,
        size_bytes=out.chunk.size_bytes,
        sha256=out.chunk.sha256,
        duration_seconds=out.chunk.duration_seconds,
        offset_seconds=out.track.offset_seconds,
        start_seconds=round(rec.chunk_start_s(out.track, seq), 3),
        created=out.created,
    )


@router.get("/{session_id}/recording", response_model=RecordingOut)
def get_recording(session_id: uuid.UUID, ctx: Ctx, access: LiveWriter) -> RecordingOut:
    """The session's stored chunks per participant (seqs, gaps, next seq, offset): what an uploader
    resumes from after a reconnect, and whether the recording is finalized. The owner
    (``sessions:write``) or the session's agent."""
    with ctx.db.session() as s:
        done = rec.finalized_transcription(s, session_id)
        tracks = [TrackOut(**rec.track_summary(s, t)) for t in audio_crud.tracks_of_session(s, session_id)]
        return RecordingOut(
            session_id=session_id,
            chunk_seconds=ctx.settings.recording_chunk_seconds,
            max_chunk_bytes=ctx.settings.recording_max_chunk_bytes,
            finalized=done is not None,
            audio_file_id=done.audio_file_id if done is not None else None,
            participants=tracks,
        )


def finalize_session(
    ctx: AppContext, session_id: uuid.UUID, user_id: uuid.UUID | None, options: FinalizeIn | None = None
) -> FinalizeOut | None:
    """Finalize (api.recording.finalize) and commit; then, for a new finalization, the optional
    re-transcription job. ``user_id`` None: any owner (the webhook, signed by LiveKit). None if there
    is no such session. Raises :class:`api.recording.RecordingError`."""
    options = options or FinalizeIn()
    with ctx.db.session() as s:
        session = s.get(RecordingSession, session_id)
        if session is None or (user_id is not None and session.user_id != user_id):
            return None
        out = rec.finalize(s, ctx.blobs, ctx.live, session)
        if out.created and out.transcription.segments and not options.retranscribe:
            # the owner's auto-summary, in this transaction (a re-transcription queues it when it ends)
            maybe_enqueue_auto_summary(s, session, ctx.settings)
        s.commit()
        job_id = None
        if options.retranscribe and out.audio_file is not None:
            job_id = active_job_of_session(s, session_id, live_job.KIND)
            if job_id is None:
                params = live_job.job_params(out.audio_file.id, None, options.diarize)
                job_id = submit_job(
                    ctx, s, live_job.KIND, params, user_id=session.user_id, session_id=session_id
                ).id
        return FinalizeOut(
            session_id=session_id,
            transcription_id=out.transcription.id,
            audio_file_id=out.audio_file.id if out.audio_file is not None else None,
            duration_seconds=out.duration_seconds,
            participants=out.participants,
            segments=len(out.transcription.segments or []),
            created=out.created,
            job_id=job_id,
        )


@router.post(
    "/{session_id}/finalize",
    response_model=FinalizeOut,
    responses={
        409: {"description": "nothing to finalize: no chunks and no live transcript", **_ERR},
        422: {"description": "a malformed body", **_ERR},
    },
)
def finalize(
    session_id: uuid.UUID, ctx: Ctx, access: LiveWriter, body: FinalizeIn | None = None
) -> FinalizeOut:
    """Join each participant's chunks into a timeline-aligned mix (the session's audio file), store
    the live transcript as the session's transcription (real times, participants as speakers, the
    true duration), mark the session completed. Idempotent: a second call changes nothing and
    answers what the first stored (``created`` false). LiveKit's ``room_finished`` webhook calls
    the same."""
    try:
        out = finalize_session(ctx, session_id, access.owner_id, body)
    except rec.RecordingError as e:
        raise _refusal(e) from None
    if out is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return out
