"""LiveKit's side of a live session's end: the ``room_finished`` webhook (finalizes the session), and
a room's status / end through LiveKit's server API (RoomService, Twirp) for the session's owner.

The webhook is public in the auth layer (LiveKit cannot hold our credentials): it is verified with
``livekit.api.WebhookReceiver`` and ``TokenVerifier`` (LIVEKIT_API_KEY / LIVEKIT_API_SECRET: the JWT
in ``Authorization`` signs the body's SHA-256). A tampered or unsigned body answers 401.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Request, status
from google.protobuf import json_format
from pydantic import BaseModel, Field

from api.context import AppContext
from api.crud import sessions as crud
from api.deps import Ctx, SessionReader, SessionWriter
from api.live import session_id_of_room
from api.live_auth import LIVE_NOT_CONFIGURED, live_configured
from api.recording import RecordingError
from api.routes.recording import finalize_session

log = logging.getLogger("api.livekit")

router = APIRouter(prefix="/api/v1/livekit", tags=["live"])
webhook_router = APIRouter(prefix="/api/v1/livekit", tags=["live"])  # public: signed by LiveKit
WEBHOOK_PATH = "/api/v1/livekit/webhook"
ROOM_NOT_FOUND = "room not found"
ROOM_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

_ERR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}
_503 = {
    503: {
        "description": "LiveKit's server API is not configured (LIVEKIT_API_URL or LIVEKIT_URL, key, secret)",
        **_ERR,
    }
}


class WebhookOut(BaseModel):
    event: str
    room: str | None = None
    session_id: uuid.UUID | None = None
    finalizing: bool = Field(description="true: the session's finalize runs (after this answer)")


class ParticipantOut(BaseModel):
    identity: str
    name: str
    state: str
    joined_at: datetime | None = None


class RoomStatusOut(BaseModel):
    room: str
    session_id: uuid.UUID
    active: bool = Field(description="the room exists on the LiveKit server now")
    num_participants: int = 0
    created_at: datetime | None = None
    participants: list[ParticipantOut] = []


class RoomEndOut(BaseModel):
    room: str
    session_id: uuid.UUID
    ended: bool = Field(description="false: the room was not open (nothing to end)")


def _verify(settings, body: bytes, authorization: str | None) -> Any:
    """The webhook event, if ``authorization`` is LiveKit's signature of ``body``; else 401."""
    from livekit.api import TokenVerifier, WebhookReceiver

    if not authorization:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing the webhook's Authorization header")
    token = authorization.removeprefix("Bearer ").strip()
    receiver = WebhookReceiver(
        TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
    )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the webhook body is not UTF-8") from None
    try:
        return receiver.receive(text, token)
    except json_format.Error:  # signed (verified first), but not an event
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the webhook body is not a WebhookEvent") from None
    except Exception:  # jwt errors, "hash mismatch", "sha256 was not found": not LiveKit's signature
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the webhook's signature does not verify") from None


def _finalize_after_webhook(ctx: AppContext, session_id: uuid.UUID) -> None:
    try:
        out = finalize_session(ctx, session_id, None)
        if out is not None:
            log.info("room_finished: session %s finalized (new=%s)", session_id, out.created)
    except RecordingError as e:
        log.info("room_finished: session %s not finalized: %s", session_id, e.message)
    except Exception:
        log.exception(
            "room_finished: finalizing session %s failed (POST .../finalize retries it)", session_id
        )


@webhook_router.post(
    "/webhook",
    response_model=WebhookOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/webhook+json": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
    responses={
        400: {"description": "signed, but not a WebhookEvent", **_ERR},
        401: {
            "description": "missing or wrong signature (Authorization: LiveKit's JWT of the body's SHA-256)",
            **_ERR,
        },
        413: {"description": "body over MAX_BODY_BYTES", **_ERR},
        **_503,
    },
)
async def webhook(request: Request, ctx: Ctx, background: BackgroundTasks) -> WebhookOut:
    """LiveKit's webhook. ``room_finished`` for a session's room (``intrascribe-<session id>``)
    finalizes that session (as ``POST /api/v1/sessions/{id}/finalize``), after the answer: LiveKit
    does not wait for the mix. Other events and other rooms are acknowledged and ignored."""
    if not live_configured(ctx.settings):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, LIVE_NOT_CONFIGURED)
    body = await request.body()
    event = _verify(ctx.settings, body, request.headers.get("authorization"))
    room = event.room.name if event.HasField("room") else None
    session_id = session_id_of_room(room) if room else None
    finalizing = False
    if event.event == "room_finished" and session_id is not None:
        exists = await anyio.to_thread.run_sync(_session_exists, ctx, session_id)
        if exists:
            background.add_task(anyio.to_thread.run_sync, _finalize_after_webhook, ctx, session_id)
            finalizing = True
    return WebhookOut(event=event.event, room=room, session_id=session_id, finalizing=finalizing)


def _session_exists(ctx: AppContext, session_id: uuid.UUID) -> bool:
    from api.models import RecordingSession

    with ctx.db.session() as s:
        return s.get(RecordingSession, session_id) is not None


# ------------------------------------------------------------------------------ room status / end
def _api_url(settings) -> str:
    return settings.livekit_api_url or settings.livekit_url


def _room_api(settings):
    """LiveKit's server API client, or 503 when it is not configured."""
    from livekit.api import LiveKitAPI

    secret = settings.livekit_api_secret.get_secret_value()
    if not (_api_url(settings) and settings.livekit_api_key and secret):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, LIVE_NOT_CONFIGURED)
    return LiveKitAPI(_api_url(settings), settings.livekit_api_key, secret, failover=False)


async def _owned_room(ctx: AppContext, user_id: uuid.UUID, room: str) -> uuid.UUID:
    session_id = session_id_of_room(room)

    def owned() -> bool:
        with ctx.db.session() as s:
            return crud.get_owned(s, user_id, session_id) is not None

    if session_id is None or not await anyio.to_thread.run_sync(owned):
        raise HTTPException(status.HTTP_404_NOT_FOUND, ROOM_NOT_FOUND)
    return session_id


def _time(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


class _Unreachable(HTTPException):
    def __init__(self, e: Exception):
        super().__init__(status.HTTP_502_BAD_GATEWAY, f"LiveKit's server API failed: {type(e).__name__}: {e}")


RoomName = Annotated[str, Path(pattern=ROOM_PATTERN)]
_ROOM_RESPONSES = {
    404: {"description": "no session of the caller's has this room", **_ERR},
    422: {"description": "not a room name", **_ERR},
    502: {"description": "LiveKit's server API failed or is unreachable", **_ERR},
    **_503,
}


@router.get("/rooms/{room}/status", response_model=RoomStatusOut, responses=_ROOM_RESPONSES)
async def room_status(room: RoomName, ctx: Ctx, principal: SessionReader) -> RoomStatusOut:
    """The session's room as LiveKit's server sees it (RoomService ListRooms + ListParticipants)."""
    from livekit.api import ListParticipantsRequest, ListRoomsRequest

    session_id = await _owned_room(ctx, principal.user_id, room)
    lk = _room_api(ctx.settings)
    try:
        rooms = (await lk.room.list_rooms(ListRoomsRequest(names=[room]))).rooms
        found = next((r for r in rooms if r.name == room), None)
        if found is None:
            return RoomStatusOut(room=room, session_id=session_id, active=False)
        people = (await lk.room.list_participants(ListParticipantsRequest(room=room))).participants
    except HTTPException:
        raise
    except Exception as e:
        raise _Unreachable(e) from None
    finally:
        await lk.aclose()
    from livekit.protocol.models import ParticipantInfo

    return RoomStatusOut(
        room=room,
        session_id=session_id,
        active=True,
        num_participants=found.num_participants,
        created_at=_time(found.creation_time),
        participants=[
            ParticipantOut(
                identity=p.identity,
                name=p.name,
                state=ParticipantInfo.State.Name(p.state),
                joined_at=_time(p.joined_at),
            )
            for p in people
        ],
    )


@router.post("/rooms/{room}/end", response_model=RoomEndOut, responses=_ROOM_RESPONSES)
async def end_room(room: RoomName, ctx: Ctx, principal: SessionWriter) -> RoomEndOut:
    """Close the session's room on the LiveKit server (RoomService DeleteRoom): everyone is
    disconnected; LiveKit then sends ``room_finished``, which finalizes the session."""
    from livekit.api import DeleteRoomRequest, TwirpError

    session_id = await _owned_room(ctx, principal.user_id, room)
    lk = _room_api(ctx.settings)
    try:
        await lk.room.delete_room(DeleteRoomRequest(room=room))
    except TwirpError as e:
        if e.status == 404 or e.code == "not_found":
            return RoomEndOut(room=room, session_id=session_id, ended=False)
        raise _Unreachable(e) from None
    except Exception as e:
        raise _Unreachable(e) from None
    finally:
        await lk.aclose()
    return RoomEndOut(room=room, session_id=session_id, ended=True)
