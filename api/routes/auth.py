"""Embedded-mode accounts: register and log in (public). Mounted only when AUTH_MODE=embedded; in
supabase mode, Supabase Auth issues the tokens.

Both routes are brute-force limited (api/core/ratelimit.py): failed logins per (client address,
account) with a back-off that grows by tier, attempts per client address, registrations per client
address; password hashes run a few at a time. Registration answers 409 for a taken email (a client
must be able to say "log in instead"), so it is limited like login and hashes the password first,
whether or not the email exists, so timing tells nothing more than the status does.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.core.auth import AUTH_PREFIX
from api.core.security import hash_password, issue_access_token, password_problem, verify_password
from api.deps import DB, Ctx, unprocessable
from api.models import User, UserCredential
from api.schemas import LoginIn, RegisterIn, TokenOut, TokenUser

router = APIRouter(prefix=AUTH_PREFIX, tags=["auth"])


def _token(ctx, user: User) -> TokenOut:
    token, expires_at = issue_access_token(ctx.settings, user.id, user.email)
    return TokenOut(
        access_token=token,
        expires_in=ctx.settings.access_token_expire_seconds,
        expires_at=expires_at,
        user=TokenUser(id=user.id, email=user.email),
    )


def _client(request: Request) -> str:
    # The peer address. Behind a reverse proxy, run uvicorn with --proxy-headers and
    # --forwarded-allow-ips so this is the real client, not the proxy.
    return request.client.host if request.client else "unknown"


@router.post("/register", response_model=TokenOut, status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, request: Request, db: DB, ctx: Ctx) -> TokenOut:
    if not ctx.settings.allow_registration:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "registration is disabled on this server")
    limits = ctx.auth_limits
    client = _client(request)
    limits.attempts.check_and_hit(client)
    limits.registrations.check_and_hit(client)
    problem = password_problem(
        body.password, ctx.settings.password_min_score, [body.email, body.username or ""]
    )
    if problem:
        raise unprocessable(("body", "password"), problem)
    with limits.hashing.slot():
        password_hash = hash_password(body.password)
    user = User(email=body.email, username=body.username, full_name=body.full_name, preferences={})
    db.add(user)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "an account with this email exists; log in instead"
        ) from None
    db.add(UserCredential(user_id=user.id, password_hash=password_hash))
    db.commit()
    return _token(ctx, user)


@router.post("/login", response_model=TokenOut)
def login(body: LoginIn, request: Request, db: DB, ctx: Ctx) -> TokenOut:
    limits = ctx.auth_limits
    client = _client(request)
    email = body.email.strip().lower()
    # refused while backing off, before any hash is computed (the right password waits too)
    limits.login_failures.check(client, email)
    limits.attempts.check_and_hit(client)
    row = db.execute(
        select(User, UserCredential.password_hash)
        .join(UserCredential, UserCredential.user_id == User.id)
        .where(User.email == email)
    ).one_or_none()
    user, hashed = row if row else (None, None)
    with limits.hashing.slot():
        ok = verify_password(body.password, hashed)
    if not ok or user is None:
        limits.login_failures.hit(client, email)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    if not user.is_active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account is disabled")
    return _token(ctx, user)
