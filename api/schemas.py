"""Request and response bodies. Field names follow the original api (``id``, ``title``, ``status``,
``language``, ``template_id``, ``created_at``...) with additions."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from api.core.security import Scope
from api.models import DEFAULT_LANGUAGE, JobStatus, SessionStatus

_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_language(v: str | None) -> str | None:
    if v is not None and not _LANGUAGE.match(v):
        raise ValueError("language must be a BCP-47 tag such as 'zh-CN', 'en', 'yue', or 'auto'")
    return v


class Message(BaseModel):
    message: str


# --------------------------------------------------------------------------------------- auth
class RegisterIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    username: str | None = Field(None, max_length=100)
    full_name: str | None = Field(None, max_length=200)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        v = v.strip().lower()
        if not _EMAIL.match(v):
            raise ValueError("not an email address")
        return v


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class TokenUser(BaseModel):
    id: uuid.UUID
    email: str | None


class TokenOut(BaseModel):
    """Shaped like Supabase's token response (no refresh token in embedded mode)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    expires_at: int
    user: TokenUser


# --------------------------------------------------------------------------------------- users
class Preferences(BaseModel):
    model_config = ConfigDict(extra="allow")

    default_language: str = DEFAULT_LANGUAGE
    default_template_id: uuid.UUID | None = None
    auto_summary: bool = False

    _lang = field_validator("default_language")(_check_language)


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    default_language: str | None = None
    default_template_id: uuid.UUID | None = None
    auto_summary: bool | None = None

    _lang = field_validator("default_language")(_check_language)


class ProfileIn(BaseModel):
    username: str | None = Field(None, max_length=100)
    full_name: str | None = Field(None, max_length=200)
    avatar_url: str | None = Field(None, max_length=2000)


class UserProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    username: str | None
    full_name: str | None
    avatar_url: str | None
    is_active: bool
    preferences: Preferences
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------------------- sessions
class SessionCreate(BaseModel):
    title: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=10000)
    language: str | None = Field(None, description="default: the user's default_language preference")
    tags: list[str] = Field(default_factory=list, max_length=50)
    template_id: uuid.UUID | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    _lang = field_validator("language")(_check_language)


class SessionUpdate(BaseModel):
    title: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=10000)
    status: SessionStatus | None = None
    language: str | None = None
    tags: list[str] | None = Field(None, max_length=50)
    template_id: uuid.UUID | None = None
    metadata: dict[str, Any] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = Field(None, ge=0)

    _lang = field_validator("language")(_check_language)


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None
    status: SessionStatus
    language: str
    template_id: uuid.UUID | None
    tags: list[str]
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------------------- audio
class AudioFileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID
    original_filename: str | None
    storage_backend: str
    storage_bucket: str
    storage_path: str
    public_url: str | None
    file_size_bytes: int | None
    duration_seconds: float | None
    format: str | None
    mime_type: str | None
    sample_rate: int | None
    channels: int | None
    upload_status: str
    processing_status: str
    file_hash: str | None = Field(description="SHA-256 of the stored bytes, hex")
    created_at: datetime


class SignedUrlOut(BaseModel):
    url: str
    expires_in: int | None


# --------------------------------------------------------------------------------------- api keys
class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: sorted(Scope.ALL))
    expires_in_days: int | None = Field(None, ge=1, le=3650)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - Scope.ALL)
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {sorted(Scope.ALL)}")
        if not v:
            raise ValueError("an API key needs at least one scope")
        return sorted(set(v))


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the secret; shown only in this response")


# --------------------------------------------------------------------------------------- jobs
class JobProgress(BaseModel):
    done: int = 0
    total: int | None = None
    stage: str | None = None


class JobErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: JobStatus
    session_id: uuid.UUID | None
    progress: JobProgress
    result: dict[str, Any] | None
    error: JobErrorOut | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskStatusOut(BaseModel):
    """The original ``/api/v2/tasks/{id}/status`` envelope, filled from the job."""

    success: bool = True
    message: str
    timestamp: datetime
    task_id: uuid.UUID
    status: JobStatus
    progress: JobProgress
    result: dict[str, Any] | None
    error: str | None
    job: JobOut
