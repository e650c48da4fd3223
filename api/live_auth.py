"""Who may write a live session's data, and the agent's credentials (docs/interfaces.md "Live sessions").

``LiveWriter`` is the one dependency of every live-write route (segments, status, recording chunks,
finalize): the session's owner (an access token, or an API key with ``sessions:write``) or an agent
session token for that very session. The route's path parameter must be named ``session_id``::

    @router.post("/{session_id}/finalize")
    def finalize(session_id: uuid.UUID, writer: LiveWriter, ...):
        writer.session_id, writer.owner_id, writer.is_agent, writer.identity

An agent session token reaches such a route only on its own session's paths (``api.core.auth``
refuses it everywhere else); a user reaching it for a session that is not theirs gets 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, status

from api.core.config import Settings
from api.core.security import AuthError, Principal, Scope
from api.crud.sessions import get_owned
from api.deps import DB, CurrentPrincipal
from api.live import session_id_of_room

LIVE_NOT_CONFIGURED = (
    "live sessions are not configured (set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)"
)
SESSION_NOT_FOUND = "session not found"
# OpenAPI content of the live routes' error answers ({"detail": ...})
ERROR_CONTENT = {
    "application/json": {"schema": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}}
}
# LiveKit's server mints agent job tokens with this participant kind and the `agent` video grant.
AGENT_KIND = "agent"


@dataclass(frozen=True)
class LiveAccess:
    """The caller of a live-write route: ``owner_id`` is the session's owner whoever writes;
    ``identity`` is the agent's LiveKit identity (None for the owner)."""

    session_id: uuid.UUID
    owner_id: uuid.UUID
    is_agent: bool
    identity: str | None = None


def live_configured(settings: Settings) -> bool:
    return bool(
        settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret.get_secret_value()
    )


def require_live(settings: Settings) -> None:
    if not live_configured(settings):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, LIVE_NOT_CONFIGURED)


def live_writer(session_id: uuid.UUID, principal: CurrentPrincipal, db: DB) -> LiveAccess:
    if principal.is_agent:
        if principal.agent_session_id != session_id:  # api.core.auth already refuses this
            raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND)
        return LiveAccess(session_id, principal.user_id, True, principal.agent_identity)
    if Scope.SESSIONS_WRITE not in principal.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"this API key lacks the scope(s): {Scope.SESSIONS_WRITE}"
        )
    if get_owned(db, principal.user_id, session_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, SESSION_NOT_FOUND)
    return LiveAccess(session_id, principal.user_id, False, None)


LiveWriter = Annotated[LiveAccess, Depends(live_writer)]


def require_user(principal: CurrentPrincipal) -> Principal:
    """A user's credential (not an agent session token): for the live routes users call."""
    if principal.is_agent:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "an agent token cannot do this")
    return principal


# ------------------------------------------------------------------------------ agent job tokens
@dataclass(frozen=True)
class AgentJob:
    """What a verified LiveKit job token says: the agent's identity, its room and our session."""

    identity: str
    room: str
    session_id: uuid.UUID


def verify_job_token(settings: Settings, token: str) -> AgentJob:
    """A LiveKit agent job token, verified with livekit-api's ``TokenVerifier`` (signature with
    LIVEKIT_API_SECRET, issuer LIVEKIT_API_KEY, ``exp`` required) and checked for the claims LiveKit's
    server mints for agents: ``kind`` agent, the ``agent`` and ``roomJoin`` video grants, a room that
    names a session. :class:`AuthError` otherwise."""
    import jwt
    from livekit.api import TokenVerifier

    verifier = TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
    try:
        claims = verifier.verify(token)
    except jwt.ExpiredSignatureError as e:
        raise AuthError("job_token_expired") from e
    except (jwt.PyJWTError, ValueError, TypeError) as e:  # bad signature, issuer, shape
        raise AuthError("invalid_job_token") from e
    video = claims.video
    if claims.kind != AGENT_KIND or video is None or video.agent is not True or video.room_join is not True:
        raise AuthError("not_an_agent_job_token", "not a LiveKit agent job token")
    session_id = session_id_of_room(video.room or "")
    if session_id is None or not claims.identity:
        raise AuthError("not_a_session_room", "the job token's room is not a session's room")
    return AgentJob(claims.identity, video.room, session_id)
