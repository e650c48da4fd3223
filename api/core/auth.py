"""Authentication of a request, before any route (and any body parsing) runs.

Which path takes which credential is explicit here:

- ``PUBLIC_PATHS`` (exact paths): no credential. ``AGENT_TOKEN_PATH`` is among them because its
  route authenticates the caller itself (a LiveKit job token or an agent session token).
- ``OPERATOR_PATHS`` (exact): the operator token, or public if the deployment says so.
- ``LIVE_WRITE_PATHS`` (patterns naming a session): a user's credential, or an agent session token
  for the session in the path (docs/interfaces.md "Live sessions"). An agent session token is
  refused on every other path.
- every other path: a user's access token or API key. A new route is protected unless someone adds
  it here.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from api.core.config import AuthMode, Settings
from api.core.security import (
    AuthError,
    Principal,
    Scope,
    TokenVerifier,
    hash_api_key,
    looks_like_agent_token,
    looks_like_api_key,
    verify_agent_token,
)
from api.db.session import Database
from api.db.types import utcnow
from api.models import ApiKey, RecordingSession, User

log = logging.getLogger("api.auth")

AUTH_PREFIX = "/api/v1/auth"
AGENT_TOKEN_PATH = "/api/v1/agent/token"
PUBLIC_PATHS: frozenset[str] = frozenset(
    {
        "/health",
        "/health/live",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
        f"{AUTH_PREFIX}/login",
        f"{AUTH_PREFIX}/register",
        AGENT_TOKEN_PATH,  # authenticates the LiveKit job token / agent session token itself
        "/api/v1/livekit/webhook",  # verified by its route: LiveKit's signature of the body
    }
)
OPERATOR_PATHS: frozenset[str] = frozenset({"/metrics", "/info"})
# Paths where an agent session token for the session named by ``session_id`` is accepted (besides
# users' credentials; the routes' dependency, api.live_auth.LiveWriter, checks the rest).
_SID = r"(?P<session_id>[^/]+)"
LIVE_WRITE_PATHS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"^/api/v1/realtime/sessions/{_SID}/segments/?$"),
    re.compile(rf"^/api/v1/realtime/sessions/{_SID}/status/?$"),
    re.compile(rf"^/api/v1/sessions/{_SID}/recording/?$"),  # the uploader's resume listing (GET)
    re.compile(rf"^/api/v1/sessions/{_SID}/recording/[^/]+/[^/]+/?$"),
    re.compile(rf"^/api/v1/sessions/{_SID}/finalize/?$"),
)


def live_write_session(path: str) -> str | None:
    """The session id (as written in the path) when ``path`` is a live-write path, else None."""
    for pattern in LIVE_WRITE_PATHS:
        m = pattern.match(path)
        if m:
            return m.group("session_id")
    return None


_LAST_USED_RESOLUTION_S = 60.0


class Authenticator:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.verifier = TokenVerifier(settings)

    # -------------------------------------------------------------------------------- paths
    def is_public(self, path: str) -> bool:
        if path in PUBLIC_PATHS:
            return True
        return path in OPERATOR_PATHS and self.settings.operator_endpoints_public

    @staticmethod
    def is_operator_path(path: str) -> bool:
        return path in OPERATOR_PATHS

    def check_operator(self, authorization: str | None) -> None:
        expected = self.settings.operator_token.get_secret_value()
        if not expected:
            raise AuthError(
                "operator_token_not_set", "set OPERATOR_TOKEN (or OPERATOR_ENDPOINTS_PUBLIC=true)"
            )
        given = _bearer(authorization)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise AuthError("bad_operator_token")

    # -------------------------------------------------------------------------------- users
    def authenticate(
        self, authorization: str | None, api_key_header: str | None = None, path: str | None = None
    ) -> Principal:
        """Blocking (database): call from a worker thread. ``path``: the request's path (agent
        session tokens are accepted only on their session's live-write paths)."""
        credential = api_key_header or _bearer(authorization)
        if not credential:
            raise AuthError("missing_credentials")
        if looks_like_api_key(credential):
            return self._api_key_principal(credential)
        if looks_like_agent_token(credential):
            return self._agent_principal(credential, path)
        claims = self.verifier.verify(credential)
        user_id = uuid.UUID(str(claims["sub"]))
        email = claims.get("email")
        self._ensure_user(user_id, email)
        return Principal(
            user_id=user_id, email=email, role=str(claims.get("role", "authenticated")), claims=claims
        )

    def _agent_principal(self, token: str, path: str | None) -> Principal:
        written = live_write_session(path or "")
        if written is None:
            raise AuthError("agent_token_wrong_path", "an agent token is valid only on live-write paths")
        claims = verify_agent_token(self.settings, token)
        try:
            path_session = uuid.UUID(written)
        except ValueError as e:
            raise AuthError("agent_token_wrong_session", "this agent token is for another session") from e
        session_id = uuid.UUID(claims["sid"])
        if path_session != session_id:
            raise AuthError("agent_token_wrong_session", "this agent token is for another session")
        with self.db.session() as s:
            owner = s.scalar(select(RecordingSession.user_id).where(RecordingSession.id == session_id))
        if owner is None:
            raise AuthError("agent_session_gone", "this agent token's session no longer exists")
        return Principal(
            user_id=owner,
            role="agent",
            scopes=frozenset({Scope.LIVE_AGENT}),
            claims=claims,
            agent_session_id=session_id,
            agent_identity=str(claims["sub"]),
        )

    def _ensure_user(self, user_id: uuid.UUID, email: str | None) -> None:
        with self.db.session() as s:
            active = s.scalar(select(User.is_active).where(User.id == user_id))
            if active is None:
                if self.settings.auth_mode is not AuthMode.supabase:
                    raise AuthError("unknown_user")
                # Supabase owns the accounts: the first request of a verified user creates the profile.
                try:
                    s.add(User(id=user_id, email=email))
                    s.commit()
                except IntegrityError:
                    s.rollback()
                    active = s.scalar(select(User.is_active).where(User.id == user_id))
                    if active is None:  # the email is taken by another id
                        s.add(User(id=user_id, email=None))
                        s.commit()
                active = True
            if not active:
                raise AuthError("user_disabled", "this account is disabled")

    def _api_key_principal(self, secret: str) -> Principal:
        now = utcnow()
        with self.db.session() as s:
            row = s.execute(
                select(ApiKey, User.email, User.is_active)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == hash_api_key(secret))
            ).one_or_none()
            if row is None:
                raise AuthError("unknown_api_key")
            key, email, active = row
            if key.revoked_at is not None:
                raise AuthError("revoked_api_key")
            if key.expires_at is not None and key.expires_at <= now:
                raise AuthError("expired_api_key")
            if not active:
                raise AuthError("user_disabled", "this account is disabled")
            if key.last_used_at is None or (now - key.last_used_at).total_seconds() > _LAST_USED_RESOLUTION_S:
                s.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        return Principal(
            user_id=key.user_id,
            email=email,
            scopes=frozenset(key.scopes or ()) & Scope.ALL,
            api_key_id=key.id,
        )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
