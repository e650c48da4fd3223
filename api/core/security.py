"""Passwords, access tokens and API keys.

Access tokens have the shape of Supabase's: HS256/ES256/RS256 JWTs with ``sub`` (the user id),
``aud`` ("authenticated"), ``role``, ``email``, ``exp``, ``iat`` (and ``iss`` when configured).
Embedded mode issues them (HS256); supabase mode only verifies them — the HS256 ones with the
project's JWT secret, the asymmetric ones with a key from the project's JWKS, chosen by ``kid``.
``alg: none`` and any algorithm not listed here are refused before a key is even looked up.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from pwdlib import PasswordHash

from api.core.config import AuthMode, Settings

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
API_KEY_PREFIX = "isk_"
ZXCVBN_MAX_CHARS = 72

_password_hash = PasswordHash.recommended()  # argon2id with pwdlib's current parameters


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so a login's timing does not reveal it."""
    return _password_hash.hash(secrets.token_urlsafe(16))


# ------------------------------------------------------------------------------------- scopes
class Scope:
    """Scopes an API key can carry. An access token (interactive login) carries all of them."""

    SESSIONS_READ = "sessions:read"
    SESSIONS_WRITE = "sessions:write"
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    TRANSCRIBE = "transcribe"
    SUMMARIZE = "summarize"
    TEMPLATES_READ = "templates:read"
    TEMPLATES_WRITE = "templates:write"
    PROFILE = "profile"
    # Only an agent session token carries this one (never an API key or a user's access token):
    # writing the live data of one session (api/live_auth.py).
    LIVE_AGENT = "live:agent"

    ALL: frozenset[str] = frozenset(
        {
            SESSIONS_READ,
            SESSIONS_WRITE,
            JOBS_READ,
            JOBS_WRITE,
            TRANSCRIBE,
            SUMMARIZE,
            TEMPLATES_READ,
            TEMPLATES_WRITE,
            PROFILE,
        }
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, through an access token or one of their API keys."""

    user_id: uuid.UUID
    email: str | None = None
    role: str = "authenticated"
    scopes: frozenset[str] = field(default_factory=lambda: Scope.ALL)
    api_key_id: uuid.UUID | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    # An agent session token (below): the session it may write live data of, and the agent's identity.
    # ``user_id`` is then the session's owner; ``scopes`` is only ``Scope.LIVE_AGENT``.
    agent_session_id: uuid.UUID | None = None
    agent_identity: str | None = None

    @property
    def via_api_key(self) -> bool:
        return self.api_key_id is not None

    @property
    def is_agent(self) -> bool:
        return self.agent_session_id is not None


class AuthError(Exception):
    """A credential that does not authenticate. ``reason`` is a short, loggable, non-secret code."""

    def __init__(self, reason: str, message: str = "invalid or missing credentials"):
        super().__init__(message)
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------------------------ passwords
def hash_password(password: str) -> str:
    return _password_hash.hash(password)


def password_problem(password: str, min_score: int, user_inputs: list[str]) -> str | None:
    """Why ``password`` is too weak (zxcvbn's offline estimate below ``min_score`` of 0-4), or None.
    ``user_inputs`` (email, name) count as known words."""
    if min_score <= 0:
        return None
    from zxcvbn import zxcvbn

    # zxcvbn refuses more than 72 characters (and its cost grows with length): a longer password
    # is judged by its first 72, which is a lower bound on its strength
    result = zxcvbn(password[:ZXCVBN_MAX_CHARS], user_inputs=[u[:100] for u in user_inputs if u])
    if result["score"] >= min_score:
        return None
    feedback = result.get("feedback") or {}
    hint = feedback.get("warning") or " ".join(feedback.get("suggestions") or []) or "use a longer passphrase"
    return f"password is too weak (strength {result['score']}/4, need {min_score}): {hint}"


def verify_password(password: str, hashed: str | None) -> bool:
    """Constant-work check: verifies against a dummy hash when there is no user."""
    if hashed is None:
        _password_hash.verify(password, _dummy_hash())
        return False
    try:
        return _password_hash.verify(password, hashed)
    except Exception:
        return False


# --------------------------------------------------------------------------------------- tokens
def issue_access_token(
    settings: Settings, user_id: uuid.UUID, email: str | None, *, expires_in: int | None = None
) -> tuple[str, int]:
    """Embedded mode: an HS256 token shaped like Supabase's. Returns (token, expires_at epoch s)."""
    now = int(time.time())
    exp = now + (expires_in if expires_in is not None else settings.access_token_expire_seconds)
    claims = {
        "sub": str(user_id),
        "aud": settings.jwt_audience,
        "role": "authenticated",
        "email": email,
        "iat": now,
        "exp": exp,
        "iss": settings.token_issuer,
    }
    return jwt.encode(claims, settings.signing_secret, algorithm="HS256"), exp


class TokenVerifier:
    """Verifies access tokens for the configured auth mode (signature, expiry, audience, issuer)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.hs256_secret = settings.signing_secret
        jwks_url = settings.resolved_jwks_url if settings.auth_mode is AuthMode.supabase else ""
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=600, timeout=5) if jwks_url else None

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise AuthError("malformed_token") from e
        alg = header.get("alg")
        if alg == "HS256":
            if not self.hs256_secret:
                raise AuthError("hs256_not_configured")
            key: Any = self.hs256_secret
        elif alg in ASYMMETRIC_ALGORITHMS:
            if self._jwks is None:
                raise AuthError("jwks_not_configured")
            try:
                signing_key = self._jwks.get_signing_key_from_jwt(token)
            except (jwt.PyJWKClientError, jwt.PyJWTError) as e:
                raise AuthError("unknown_signing_key") from e
            if signing_key.algorithm_name not in ASYMMETRIC_ALGORITHMS or signing_key.algorithm_name != alg:
                raise AuthError("algorithm_mismatch")
            key = signing_key.key
        else:
            raise AuthError("algorithm_not_allowed")
        # Our own tokens always carry our issuer; a Supabase project's is checked when configured.
        embedded = self.settings.auth_mode is AuthMode.embedded
        issuer = self.settings.token_issuer if embedded else (self.settings.jwt_issuer or None)
        required = ["exp", "sub", "aud", *(["iat", "iss"] if embedded else [])]
        options = {"require": required, "verify_iss": issuer is not None}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.settings.jwt_audience,
                issuer=issuer,
                options=options,
                leeway=5,
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("expired") from e
        except jwt.InvalidAudienceError as e:
            raise AuthError("wrong_audience") from e
        except jwt.InvalidIssuerError as e:
            raise AuthError("wrong_issuer") from e
        except jwt.InvalidSignatureError as e:
            raise AuthError("bad_signature") from e
        except jwt.PyJWTError as e:
            raise AuthError("invalid_token") from e
        if embedded and int(claims["exp"]) - int(claims["iat"]) > self.settings.max_token_lifetime_seconds:
            raise AuthError("lifetime_too_long")
        try:
            uuid.UUID(str(claims["sub"]))
        except ValueError as e:
            raise AuthError("invalid_subject") from e
        if claims.get("role", "authenticated") == "anon":
            raise AuthError("anonymous_token")
        return claims


# ------------------------------------------------------------------------------------- API keys
def generate_api_key() -> tuple[str, str, str]:
    """A new key: (the secret shown once, its display prefix, its stored hash)."""
    public = secrets.token_hex(4)
    secret = f"{API_KEY_PREFIX}{public}_{secrets.token_urlsafe(32)}"
    return secret, f"{API_KEY_PREFIX}{public}", hash_api_key(secret)


def hash_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)


# ------------------------------------------------------------------------ agent session tokens
# The LiveKit agent exchanges its job token (minted by LiveKit's server) for one of these: an HS256
# JWT scoped to one session, signed with a key derived from LIVEKIT_API_SECRET (so it is neither a
# LiveKit token nor a user token: another key, another audience). docs/interfaces.md "Live sessions".
AGENT_AUDIENCE = "intrascribe:live-agent"
_AGENT_KEY_LABEL = b"intrascribe agent session token v1"


def agent_signing_key(livekit_api_secret: str) -> bytes:
    return hmac.new(livekit_api_secret.encode(), _AGENT_KEY_LABEL, hashlib.sha256).digest()


def looks_like_agent_token(credential: str) -> bool:
    """True when ``credential`` is a JWT addressed to agents (not verified: routing only)."""
    try:
        claims = jwt.decode(credential, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    aud = claims.get("aud")
    return aud == AGENT_AUDIENCE or (isinstance(aud, list) and AGENT_AUDIENCE in aud)


def issue_agent_token(
    settings: Settings, session_id: uuid.UUID, identity: str, room: str, auth_time: int
) -> tuple[str, int]:
    """A session-scoped agent token. Returns (token, expires_at epoch s)."""
    now = int(time.time())
    exp = now + settings.agent_token_ttl_seconds
    claims = {
        "iss": settings.token_issuer,
        "aud": AGENT_AUDIENCE,
        "sub": identity,
        "sid": str(session_id),
        "room": room,
        "iat": now,
        "exp": exp,
        "auth_time": int(auth_time),
        "jti": uuid.uuid4().hex,
    }
    key = agent_signing_key(settings.livekit_api_secret.get_secret_value())
    return jwt.encode(claims, key, algorithm="HS256"), exp


def verify_agent_token(settings: Settings, token: str) -> dict[str, Any]:
    """Claims of a valid agent session token; :class:`AuthError` otherwise."""
    secret = settings.livekit_api_secret.get_secret_value()
    if not secret:
        raise AuthError("live_not_configured")
    try:
        claims = jwt.decode(
            token,
            agent_signing_key(secret),
            algorithms=["HS256"],
            audience=AGENT_AUDIENCE,
            issuer=settings.token_issuer,
            options={"require": ["exp", "iat", "sub", "sid", "aud", "iss", "auth_time"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as e:
        raise AuthError("agent_token_expired") from e
    except jwt.PyJWTError as e:
        raise AuthError("invalid_agent_token") from e
    if int(claims["exp"]) - int(claims["iat"]) > settings.agent_token_ttl_seconds + 5:
        raise AuthError("lifetime_too_long")
    try:
        claims["sid"] = str(uuid.UUID(str(claims["sid"])))
    except ValueError as e:
        raise AuthError("invalid_agent_token") from e
    return claims
