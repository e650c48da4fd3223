"""Personal API keys for the CLI, the OpenAI-compatible endpoint and scripts. Managing keys needs an
interactive access token: a key cannot mint or revoke keys."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from api.core.security import generate_api_key
from api.db.types import utcnow
from api.deps import DB, Interactive
from api.models import ApiKey
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Message

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_api_key(body: ApiKeyCreate, db: DB, principal: Interactive) -> ApiKeyCreated:
    """Returns the key once; only its hash is stored."""
    secret, prefix, digest = generate_api_key()
    row = ApiKey(
        user_id=principal.user_id,
        name=body.name,
        prefix=prefix,
        key_hash=digest,
        scopes=body.scopes,
        expires_at=utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None,
    )
    db.add(row)
    db.commit()
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=secret)


@router.get("", response_model=list[ApiKeyOut])
def list_api_keys(db: DB, principal: Interactive) -> list[ApiKey]:
    return list(
        db.scalars(select(ApiKey).where(ApiKey.user_id == principal.user_id).order_by(ApiKey.created_at))
    )


@router.delete("/{key_id}", response_model=Message)
def revoke_api_key(key_id: uuid.UUID, db: DB, principal: Interactive) -> Message:
    row = db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == principal.user_id))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "API key not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.commit()
    return Message(message="API key revoked")
