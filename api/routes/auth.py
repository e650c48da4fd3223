"""Embedded-mode accounts: register and log in (public). Mounted only when AUTH_MODE=embedded; in
supabase mode, Supabase Auth issues the tokens."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.core.auth import AUTH_PREFIX
from api.core.security import hash_password, issue_access_token, verify_password
from api.deps import DB, Ctx
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


@router.post("/register", response_model=TokenOut, status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, db: DB, ctx: Ctx) -> TokenOut:
    if not ctx.settings.allow_registration:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "registration is disabled on this server")
    user = User(email=body.email, username=body.username, full_name=body.full_name, preferences={})
    db.add(user)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "an account with this email exists; log in instead"
        ) from None
    db.add(UserCredential(user_id=user.id, password_hash=hash_password(body.password)))
    db.commit()
    return _token(ctx, user)


@router.post("/login", response_model=TokenOut)
def login(body: LoginIn, db: DB, ctx: Ctx) -> TokenOut:
    row = db.execute(
        select(User, UserCredential.password_hash)
        .join(UserCredential, UserCredential.user_id == User.id)
        .where(User.email == body.email.strip().lower())
    ).one_or_none()
    user, hashed = row if row else (None, None)
    if not verify_password(body.password, hashed) or user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    if not user.is_active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this account is disabled")
    return _token(ctx, user)
