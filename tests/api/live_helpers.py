"""LiveKit for the live-session tests: settings with a key and secret, and job tokens minted with
livekit-api's own ``AccessToken`` carrying the claims LiveKit's server gives an agent's job (identity,
``kind: agent``, video grant ``roomJoin`` + ``room`` + ``agent``, one hour)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from livekit.api import AccessToken, VideoGrants

LIVEKIT_KEY = "APItestkey0123"
LIVEKIT_SECRET = "livekit-test-secret-" + "s" * 40  # >= 32 bytes
LIVE_SETTINGS = dict(
    livekit_url="wss://livekit.example.test",
    livekit_api_key=LIVEKIT_KEY,
    livekit_api_secret=LIVEKIT_SECRET,
    livekit_agent_name="intrascribe-agent-test",
)


def room_of(session_id) -> str:
    """Written out here, as docs/interfaces.md states it (not taken from the code under test)."""
    return f"intrascribe-{uuid.UUID(str(session_id))}"


def job_token(
    room: str,
    *,
    identity: str = "agent-AJ_test",
    ttl: timedelta = timedelta(hours=1),
    kind: str | None = "agent",
    agent_grant: bool = True,
    key: str = LIVEKIT_KEY,
    secret: str = LIVEKIT_SECRET,
) -> str:
    grants = VideoGrants(room_join=True, room=room, agent=True if agent_grant else None)
    token = AccessToken(key, secret).with_identity(identity).with_grants(grants).with_ttl(ttl)
    if kind is not None:
        token = token.with_kind(kind)
    return token.to_jwt()


def agent_headers(client, session_id, **kw) -> dict[str, str]:
    """An agent session token for ``session_id``, obtained the agent's way (job token exchange)."""
    r = client.post(
        "/api/v1/agent/token", headers={"Authorization": f"Bearer {job_token(room_of(session_id), **kw)}"}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
