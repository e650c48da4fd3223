"""Live segments and status of a session: written by the agent (or the owner), read by the owner as
JSON or Server-Sent Events. docs/interfaces.md "Live sessions" has the schemas."""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.crud import sessions as crud
from api.deps import DB, Ctx, SessionReader
from api.live import LiveSessionGone, LiveStoreFull, room_name
from api.live_auth import ERROR_CONTENT as _ERR
from api.live_auth import SESSION_NOT_FOUND, LiveWriter, require_user
from api.routes.jobs import acquire_stream_slot
from api.schemas import Text, UtcDatetime
from api.sse import poll_sse, sse_frame, sse_response

router = APIRouter(prefix="/api/v1/realtime/sessions", tags=["live"])

MAX_SEGMENT_SECONDS = 86400.0
MAX_SEGMENTS_PER_WRITE = 100
MAX_PARTICIPANTS = 100


SegmentId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Identity = Annotated[Text, StringConstraints(min_length=1, max_length=256)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SEGMENT_SECONDS, allow_inf_nan=False)]


class LiveWord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    word: Text = Field(max_length=200)
    start: Seconds
    end: Seconds
    speaker: Text | None = Field(None, max_length=256)
    probability: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)


class LiveSegment(BaseModel):
    """The transcript's segment record with the live keys (docs/interfaces.md "Live segment")."""

    model_config = ConfigDict(extra="forbid")

    segment_id: SegmentId
    speaker: Identity
    speaker_name: Text | None = Field(None, max_length=256)
    start_time: Seconds
    end_time: Seconds
    text: Text = Field("", max_length=10000)
    language: Text | None = Field(None, max_length=16)
    is_final: bool = False
    confidence_score: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    emotion: Text | None = Field(None, max_length=32)
    event: Text | None = Field(None, max_length=32)
    words: list[LiveWord] = Field(default_factory=list, max_length=2000)

    @model_validator(mode="after")
    def _times(self) -> LiveSegment:
        if self.end_time < self.start_time:
            raise ValueError("end_time must not be before start_time")
        return self


class StoredSegment(LiveSegment):
    revision: int
    updated_at: str


class SegmentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segments: list[LiveSegment] = Field(min_length=1, max_length=MAX_SEGMENTS_PER_WRITE)


class SegmentsWritten(BaseModel):
    session_id: uuid.UUID
    accepted: int
    ignored: int
    segment_count: int
    revision: int


class Participant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: Identity
    name: Text | None = Field(None, max_length=256)
    joined_at: UtcDatetime | None = None


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recording: bool | None = None
    participants: list[Participant] | None = Field(None, max_length=MAX_PARTICIPANTS)


class LiveStatus(BaseModel):
    session_id: uuid.UUID
    room_name: str
    recording: bool
    participants: list[dict[str, Any]]
    last_activity: str | None
    segment_count: int
    revision: int


class LiveTranscription(BaseModel):
    session_id: uuid.UUID
    segments: list[StoredSegment]
    segment_count: int
    revision: int


def _owned(db, principal, session_id: uuid.UUID) -> None:
    require_user(principal)
    if crud.get_owned(db, principal.user_id, session_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND)


def _status(session_id: uuid.UUID, doc: dict[str, Any] | None) -> LiveStatus:
    doc = doc or {}
    return LiveStatus(
        session_id=session_id,
        room_name=room_name(session_id),
        recording=bool(doc.get("recording", False)),
        participants=list(doc.get("participants") or []),
        last_activity=doc.get("last_activity"),
        segment_count=int(doc.get("segment_count") or 0),
        revision=int(doc.get("revision") or 0),
    )


def _transcription(ctx, session_id: uuid.UUID) -> LiveTranscription:
    segments = ctx.live.segments(session_id)
    return LiveTranscription(
        session_id=session_id,
        segments=segments,
        segment_count=len(segments),
        revision=max((int(s["revision"]) for s in segments), default=0),
    )


# ------------------------------------------------------------------------------------- writes
@router.post(
    "/{session_id}/segments",
    response_model=SegmentsWritten,
    responses={
        413: {"description": "the session would hold more than LIVE_MAX_SEGMENTS segments", "content": _ERR}
    },
)
def write_segments(session_id: uuid.UUID, body: SegmentsIn, ctx: Ctx, writer: LiveWriter) -> SegmentsWritten:
    """Upserts segments by ``segment_id``: an interim is replaced by later writes, never a final by
    an interim (those are counted in ``ignored``)."""
    try:
        result = ctx.live.upsert_segments(
            writer.session_id, [s.model_dump(mode="json") for s in body.segments]
        )
    except LiveStoreFull as e:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(e)) from e
    except LiveSessionGone as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND) from e
    return SegmentsWritten(
        session_id=writer.session_id,
        accepted=result.accepted,
        ignored=result.ignored,
        segment_count=result.segment_count,
        revision=result.revision,
    )


@router.patch("/{session_id}/status", response_model=LiveStatus)
def write_status(session_id: uuid.UUID, body: StatusIn, ctx: Ctx, writer: LiveWriter) -> LiveStatus:
    """Sets ``recording`` and/or the list of ``participants`` now in the room; every write (and every
    segment write) updates ``last_activity``."""
    changes = body.model_dump(mode="json", exclude_none=True)
    try:
        return _status(writer.session_id, ctx.live.update_status(writer.session_id, changes))
    except LiveSessionGone as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND) from e


# -------------------------------------------------------------------------------------- reads
@router.get("/{session_id}/transcription", response_model=LiveTranscription)
def get_transcription(session_id: uuid.UUID, ctx: Ctx, db: DB, principal: SessionReader) -> LiveTranscription:
    """The live segments, by start time (empty before the first write and after LIVE_TTL_SECONDS)."""
    _owned(db, principal, session_id)
    return _transcription(ctx, session_id)


@router.get("/{session_id}/status", response_model=LiveStatus)
def get_status(session_id: uuid.UUID, ctx: Ctx, db: DB, principal: SessionReader) -> LiveStatus:
    _owned(db, principal, session_id)
    return _status(session_id, ctx.live.status(session_id))


_EVENT_ID = re.compile(r"^[0-9]{1,18}$")


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events; see docs/interfaces.md",
        },
        429: {
            "description": "too many open event streams for this user (SSE_MAX_STREAMS_PER_USER)",
            "content": _ERR,
        },
    },
)
async def live_events(
    session_id: uuid.UUID,
    request: Request,
    ctx: Ctx,
    principal: SessionReader,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
):
    """A ``snapshot`` (the transcription), then a ``segment`` event per new or updated segment
    (``id`` = its revision). Reconnect with ``Last-Event-ID`` to get only what changed after it."""

    def load():
        with ctx.db.session() as s:
            _owned(s, principal, session_id)
        return _transcription(ctx, session_id)

    snapshot = await anyio.to_thread.run_sync(load)
    after = snapshot.revision
    resume = last_event_id is not None and _EVENT_ID.match(last_event_id.strip())
    if resume:  # an id beyond the newest revision resumes from the newest
        after = min(int(last_event_id.strip()), snapshot.revision)
    slots = acquire_stream_slot(ctx, principal.user_id)
    deadline = time.monotonic() + ctx.settings.sse_max_stream_seconds

    def poll():
        nonlocal after
        changes = ctx.live.changes_after(session_id, after)
        if changes:
            after = max(after, max(int(seg["revision"]) for seg in changes))
        return [(int(seg["revision"]), "segment", seg) for seg in changes]

    async def stream():
        try:
            if not resume:
                yield sse_frame(snapshot.revision, "snapshot", snapshot.model_dump(mode="json"))
            async for frame in poll_sse(request, poll, deadline=deadline):
                yield frame
        finally:
            slots.release(principal.user_id)

    return sse_response(stream())
