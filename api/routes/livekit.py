"""LiveKit: a participant's connection details, and the agent's token exchange.

docs/interfaces.md "Live sessions" (room names, token claims, the agent-authentication scheme).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.core.security import (
    AuthError,
    Principal,
    Scope,
    issue_agent_token,
    looks_like_agent_token,
    verify_agent_token,
)
from api.crud import sessions as crud
from api.db.types import utcnow
from api.deps import DB, Ctx, require_scopes
from api.live import room_name
from api.live_auth import ERROR_CONTENT as _ERR
from api.live_auth import SESSION_NOT_FOUND, require_live, require_user, verify_job_token
from api.models import DEFAULT_LANGUAGE, DEFAULT_SESSION_TITLE, RecordingSession, SessionStatus, User
from api.schemas import SessionLanguage, Text

router = APIRouter(prefix="/api/v1/livekit", tags=["live"])
agent_router = APIRouter(prefix="/api/v1/agent", tags=["live"])

Writer = Annotated[Principal, require_scopes(Scope.SESSIONS_WRITE)]
# A session in one of these can no longer be joined.
CLOSED_STATUSES = frozenset(
    {
        SessionStatus.completed.value,
        SessionStatus.cancelled.value,
        SessionStatus.archived.value,
        SessionStatus.failed.value,
    }
)

LIVE_503 = {503: {"description": "live sessions are not configured (LIVEKIT_*)", "content": _ERR}}


class ConnectionDetailsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sessionId: uuid.UUID | None = Field(None, description="join this session of yours; none: create one")
    title: Text | None = Field(None, max_length=500)
    language: SessionLanguage | None = None
    participantName: Text | None = Field(None, max_length=128)


class ConnectionDetailsOut(BaseModel):
    serverUrl: str
    roomName: str
    participantName: str
    participantIdentity: str
    participantToken: str
    sessionId: uuid.UUID


def participant_token(settings, *, identity: str, name: str, room: str, session_id: uuid.UUID) -> str:
    """Grants joining ``room`` only, dispatches our agent with only the session id as metadata."""
    from livekit.api import AccessToken, RoomAgentDispatch, RoomConfiguration, VideoGrants

    dispatch = RoomAgentDispatch(
        agent_name=settings.livekit_agent_name, metadata=json.dumps({"session_id": str(session_id)})
    )
    return (
        AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_name(name)
        .with_grants(VideoGrants(room_join=True, room=room))
        .with_room_config(RoomConfiguration(agents=[dispatch]))
        .with_ttl(timedelta(seconds=settings.livekit_token_ttl_seconds))
        .to_jwt()
    )


@router.post(
    "/connection-details",
    response_model=ConnectionDetailsOut,
    responses={
        409: {"description": "the session is finished and cannot be joined", "content": _ERR},
        **LIVE_503,
    },
)
def connection_details(
    body: ConnectionDetailsIn, ctx: Ctx, db: DB, principal: Writer
) -> ConnectionDetailsOut:
    """Creates a live session (or joins one of the caller's, ``sessionId``) and returns what a
    LiveKit client needs: server URL, room and a participant token for that room only."""
    require_user(principal)
    settings = ctx.settings
    require_live(settings)
    if body.sessionId is not None:
        session = crud.get_owned(db, principal.user_id, body.sessionId)
        if session is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND)
        if session.status in CLOSED_STATUSES:
            raise HTTPException(status.HTTP_409_CONFLICT, f"session is {session.status}: start a new one")
        if session.status == SessionStatus.created.value or session.started_at is None:
            session.status = SessionStatus.recording.value
            session.started_at = session.started_at or utcnow()
            db.commit()
    else:
        session = RecordingSession(
            user_id=principal.user_id,
            title=(body.title or "").strip() or DEFAULT_SESSION_TITLE,
            language=body.language or crud.default_language(db, principal.user_id) or DEFAULT_LANGUAGE,
            status=SessionStatus.recording.value,
            started_at=utcnow(),
        )
        db.add(session)
        db.commit()
    user = db.get(User, principal.user_id)
    name = (body.participantName or "").strip() or _display_name(user)
    identity = f"u-{principal.user_id.hex[:8]}-{secrets.token_hex(4)}"
    room = room_name(session.id)
    token = participant_token(settings, identity=identity, name=name, room=room, session_id=session.id)
    return ConnectionDetailsOut(
        serverUrl=settings.livekit_url,
        roomName=room,
        participantName=name,
        participantIdentity=identity,
        participantToken=token,
        sessionId=session.id,
    )


def _display_name(user: User | None) -> str:
    if user is None:
        return "Participant"
    if user.full_name:
        return user.full_name
    if user.username:
        return user.username
    if user.email:
        return user.email.split("@", 1)[0]
    return "Participant"


# ------------------------------------------------------------------------------------ the agent
class AgentTokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    expires_at: int
    session_id: uuid.UUID
    room_name: str
    identity: str


_UNAUTHORIZED = {
    "description": "not a valid LiveKit agent job token or agent session token",
    "content": _ERR,
}


@agent_router.post(
    "/token",
    response_model=AgentTokenOut,
    responses={
        401: _UNAUTHORIZED,
        404: {"description": "the room's session does not exist", "content": _ERR},
        **LIVE_503,
    },
)
async def agent_token(
    ctx: Ctx,
    authorization: Annotated[str | None, Header(max_length=8192)] = None,
) -> AgentTokenOut:
    """The agent exchanges its LiveKit job token (or renews with its still-valid agent session
    token) for an api token scoped to that session's live-write paths (docs/interfaces.md)."""
    settings = ctx.settings
    require_live(settings)
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized("send Authorization: Bearer <LiveKit job token or agent session token>")

    def exchange() -> AgentTokenOut:
        now = int(time.time())
        try:
            if looks_like_agent_token(credential):
                claims = verify_agent_token(settings, credential)
                auth_time = int(claims["auth_time"])
                if now - auth_time > settings.max_token_lifetime_seconds:
                    raise AuthError("agent_renewal_too_old", "renewal window over: present a new job token")
                session_id, identity = uuid.UUID(claims["sid"]), str(claims["sub"])
            else:
                job = verify_job_token(settings, credential)
                session_id, identity, auth_time = job.session_id, job.identity, now
        except AuthError as e:
            ctx.metrics.auth_failures.labels(e.reason).inc()
            raise _unauthorized(e.message if e.message != "invalid or missing credentials" else None) from e
        with ctx.db.session() as s:
            exists = s.get(RecordingSession, session_id) is not None
        if not exists:
            raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND)
        room = room_name(session_id)
        token, exp = issue_agent_token(settings, session_id, identity, room, auth_time)
        return AgentTokenOut(
            access_token=token,
            expires_in=exp - now,
            expires_at=exp,
            session_id=session_id,
            room_name=room,
            identity=identity,
        )

    return await anyio.to_thread.run_sync(exchange)


def _unauthorized(message: str | None = None) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        message or "invalid or expired agent credentials",
        headers={"WWW-Authenticate": 'Bearer realm="intrascribe-agent"'},
    )
