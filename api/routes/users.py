"""The caller's profile and preferences (default language, default template, auto-summary)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, status

from api.core.security import Principal, Scope
from api.crud.sessions import template_visible
from api.deps import DB, require_scopes, unprocessable
from api.models import User
from api.schemas import (
    MAX_PREFERENCES_BYTES,
    Preferences,
    PreferencesIn,
    ProfileIn,
    UserProfileOut,
    bounded_json,
)

router = APIRouter(prefix="/api/v1/users", tags=["users"])
Caller = Annotated[Principal, require_scopes(Scope.PROFILE)]


def _user(db, principal: Principal) -> User:
    user = db.get(User, principal.user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return user


def _out(user: User) -> UserProfileOut:
    data = UserProfileOut.model_validate(user, from_attributes=True)
    return data


@router.get("/profile", response_model=UserProfileOut)
def get_profile(db: DB, principal: Caller) -> UserProfileOut:
    return _out(_user(db, principal))


@router.patch("/profile", response_model=UserProfileOut)
def update_profile(body: ProfileIn, db: DB, principal: Caller) -> UserProfileOut:
    user = _user(db, principal)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(user, field, value)
    db.commit()
    return _out(user)


@router.put("/preferences", response_model=UserProfileOut)
def update_preferences(body: PreferencesIn, db: DB, principal: Caller) -> UserProfileOut:
    user = _user(db, principal)
    changes = body.model_dump(exclude_unset=True, mode="json")
    if changes.get("default_template_id") and not template_visible(db, user.id, body.default_template_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "template not found")
    merged = Preferences.model_validate({**(user.preferences or {}), **changes}).model_dump(mode="json")
    try:
        bounded_json(merged, MAX_PREFERENCES_BYTES)
    except ValueError as e:
        raise unprocessable(("body",), f"preferences: {e}") from None
    user.preferences = merged
    db.commit()
    return _out(user)
