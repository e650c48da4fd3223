"""Request and response bodies. Field names follow the original api (``id``, ``title``, ``status``,
``language``, ``template_id``, ``created_at``...) with additions."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.core.security import Scope
from api.models import DEFAULT_LANGUAGE, JobStatus, SessionStatus

_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# NUL and lone surrogates: PostgreSQL text/jsonb cannot hold them, and UTF-8 cannot encode the latter.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Bounds on what a user may store (every list and profile read returns it).
MAX_TAGS = 50
MAX_TAG_CHARS = 64
MAX_METADATA_BYTES = 16 * 1024
MAX_PREFERENCES_BYTES = 8 * 1024
MAX_JSON_DEPTH = 8
MAX_OFFSET = 2**31 - 1  # far beyond any real list; keeps OFFSET inside the database's integer range
MAX_DURATION_SECONDS = 7 * 24 * 3600.0


def _storable(v: str) -> str:
    if _UNSTORABLE.search(v):
        raise ValueError("text must not contain NUL characters or unpaired UTF-16 surrogates")
    return v


Text = Annotated[str, AfterValidator(_storable)]
"""A string the database can store (no NUL, no lone surrogate)."""


def _to_utc(v: datetime) -> datetime:
    try:
        return v.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("datetime is out of range once converted to UTC (years 1-9999)") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An ISO 8601 datetime with a timezone (``Z`` or an offset), stored as UTC."""


def _check_language(v: str | None) -> str | None:
    if v is not None and not _LANGUAGE.match(v):
        raise ValueError("language must be a BCP-47 tag such as 'zh-CN', 'en', 'yue', or 'auto'")
    return v


Language = Annotated[
    str,
    StringConstraints(max_length=16, pattern=_LANGUAGE.pattern),
    AfterValidator(_check_language),
]


def _transcribable(v: str | None) -> str | None:
    if v is not None:
        from speechlib.languages import normalize_language

        normalize_language(v)  # ValueError naming the supported codes
    return v


SessionLanguage = Annotated[Language, AfterValidator(_transcribable)]
"""A recording's language: one the recognizer knows (the one mapping, :mod:`speechlib.languages`),
kept as sent (``zh-CN`` stays ``zh-CN``)."""


def _check_json(value: Any, max_bytes: int, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            _storable(str(k))
            _check_json(v, max_bytes, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, max_bytes, depth + 1)
    elif isinstance(value, str):
        _storable(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")


def bounded_json(value: Any, max_bytes: int) -> Any:
    """Refuse JSON that is too deep, too large once serialised, or that the database cannot store."""
    _check_json(value, max_bytes)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"))
    if size > max_bytes:
        raise ValueError(f"JSON is {size} bytes; the limit is {max_bytes}")
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(lambda v: bounded_json(v, MAX_METADATA_BYTES)),
    Field(
        description=f"any JSON object, at most {MAX_METADATA_BYTES} bytes and {MAX_JSON_DEPTH} levels deep"
    ),
]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS), AfterValidator(_storable)]


def _omitted_not_null(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def OptionalField(**kwargs: Any) -> Any:  # noqa: N802 - reads like pydantic's Field
    """A field that may be left out (unchanged) but not sent as null."""
    return Field(None, json_schema_extra=_omitted_not_null, **kwargs)


class Message(BaseModel):
    message: str


# --------------------------------------------------------------------------------------- auth
class RegisterIn(BaseModel):
    email: str = Field(max_length=320, json_schema_extra={"format": "email"})
    password: str = Field(min_length=8, max_length=1024, description="checked for strength (zxcvbn)")
    username: Text | None = Field(None, max_length=100)
    full_name: Text | None = Field(None, max_length=200)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        v = v.strip().lower()
        if not _EMAIL.match(v):
            raise ValueError("not an email address")
        return v


class LoginIn(BaseModel):
    email: Text = Field(max_length=320)
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
    """Stored preferences. Lenient on read: a stored value that no longer validates falls back to
    its default, so a profile read never fails on stored data."""

    model_config = ConfigDict(extra="allow")

    default_language: str = DEFAULT_LANGUAGE
    default_template_id: uuid.UUID | None = None
    # None: not set by the user, AUTO_SUMMARY_DEFAULT applies (api.summaries.auto_summary_wanted)
    auto_summary: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        data = dict(data)
        lang = data.get("default_language")
        if not isinstance(lang, str) or not _LANGUAGE.match(lang):
            data.pop("default_language", None)
        if not isinstance(data.get("auto_summary", False), bool | None):
            data.pop("auto_summary", None)
        try:
            if data.get("default_template_id") is not None:
                uuid.UUID(str(data["default_template_id"]))
        except ValueError:
            data.pop("default_template_id", None)
        return data


class PreferencesIn(BaseModel):
    """A merge: only the keys sent change. Extra keys are kept (JSON, bounded in size and depth)."""

    model_config = ConfigDict(extra="allow")

    default_language: SessionLanguage = OptionalField()
    default_template_id: uuid.UUID | None = None
    auto_summary: bool = OptionalField()

    @model_validator(mode="after")
    def _bounded(self) -> PreferencesIn:
        bounded_json(self.model_dump(mode="json", exclude_unset=True), MAX_PREFERENCES_BYTES)
        return self


def _web_url(v: str | None) -> str | None:
    if v is not None and v != "" and not re.match(r"^https?://[^\s/]+", v, re.IGNORECASE):
        raise ValueError("avatar_url must be an http:// or https:// URL")
    return v


class ProfileIn(BaseModel):
    username: Text | None = Field(None, max_length=100)
    full_name: Text | None = Field(None, max_length=200)
    avatar_url: Annotated[Text | None, AfterValidator(_web_url)] = Field(
        None, max_length=2000, json_schema_extra={"format": "uri"}
    )


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
    title: Text | None = Field(None, max_length=500)
    description: Text | None = Field(None, max_length=10000)
    language: SessionLanguage | None = Field(
        None, description="default: the user's default_language preference"
    )
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    template_id: uuid.UUID | None = None
    metadata: Metadata = Field(default_factory=dict)


class SessionUpdate(BaseModel):
    """Partial update: a field left out is unchanged. ``status``, ``language``, ``tags`` and
    ``metadata`` cannot be null; the other nullable fields are cleared by null."""

    title: Text | None = Field(None, max_length=500)
    description: Text | None = Field(None, max_length=10000)
    status: SessionStatus = OptionalField()
    language: SessionLanguage = OptionalField()
    tags: list[Tag] = OptionalField(max_length=MAX_TAGS)
    template_id: uuid.UUID | None = None
    metadata: Metadata = OptionalField()
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    duration_seconds: float | None = Field(None, ge=0, le=MAX_DURATION_SECONDS, allow_inf_nan=False)


class SessionOut(BaseModel):
    """Lenient on read (null tags or metadata, a non-finite duration read as empty), so one odd row
    can never make its owner's list fail."""

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

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        return [str(t) for t in v] if isinstance(v, list | tuple) else []

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, v: Any) -> Any:
        return v if isinstance(v, dict) else {}

    @field_validator("duration_seconds", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return v if isinstance(v, int | float) and math.isfinite(v) else None


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
DEFAULT_API_KEY_DAYS = 90


class ApiKeyCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    scopes: list[Literal[tuple(sorted(Scope.ALL))]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: sorted(Scope.ALL), min_length=1, max_length=len(Scope.ALL) * 4
    )
    expires_in_days: int = Field(
        DEFAULT_API_KEY_DAYS,
        ge=1,
        le=3650,
        description=f"days until the key expires (default {DEFAULT_API_KEY_DAYS})",
    )

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


# --------------------------------------------------------------------------------------- transcriptions
MAX_SPEAKERS = 32
MAX_SEGMENT_TEXT = 10_000
MAX_EDIT_SEGMENTS = 20_000
SpeakerName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_storable)
]
SpeakerCount = Annotated[int, Field(ge=1, le=MAX_SPEAKERS)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_SECONDS, allow_inf_nan=False)]


class TranscribeOptions(BaseModel):
    """What a transcription job is asked for. ``language``: ``auto`` (detect; the default) or a
    code of the one language mapping (``zh``, ``zh-CN``, ``en``, ``en-US``, ``yue``, ``ja``, ``ko``);
    speaker counts: found automatically when not given."""

    model_config = ConfigDict(extra="forbid")

    language: Language | None = None
    num_speakers: SpeakerCount | None = None
    min_speakers: SpeakerCount | None = None
    max_speakers: SpeakerCount | None = None
    use_itn: bool = Field(True, description="punctuation and numbers as digits (inverse text normalisation)")

    @field_validator("language")
    @classmethod
    def _supported(cls, v: str | None) -> str | None:
        from speechlib.languages import normalize_language

        return None if v is None else normalize_language(v)  # ValueError names the supported codes

    @model_validator(mode="after")
    def _counts(self) -> TranscribeOptions:
        from speechlib.diarization.options import check_speaker_counts

        check_speaker_counts(self.num_speakers, self.min_speakers, self.max_speakers)
        return self


class BatchOptions(TranscribeOptions):
    title: Text | None = Field(None, max_length=500)


class TranscribeRequest(TranscribeOptions):
    audio_file_id: uuid.UUID | None = Field(None, description="default: the session's latest audio file")


class TranscriptionJobOut(BaseModel):
    """202 for a started transcription: follow ``job_id`` at /api/v1/jobs/{job_id} (or its events)."""

    job_id: uuid.UUID
    task_id: uuid.UUID = Field(description="the same id, under the original's name (/api/v2/tasks/{id})")
    session_id: uuid.UUID
    audio_file_id: uuid.UUID
    status: JobStatus
    language: str


class WordOut(BaseModel):
    word: str
    start: float
    end: float
    speaker: str | None = None
    probability: float | None = None


class SegmentOut(BaseModel):
    """The stored segment shape: the original's keys (seconds), then ours."""

    index: int
    speaker: str | None = None
    start_time: float
    end_time: float
    text: str
    confidence_score: float | None = None
    is_final: bool = True
    language: str | None = None
    emotion: str | None = None
    event: str | None = None
    words: list[WordOut] = Field(default_factory=list)


class TranscriptionInfoOut(BaseModel):
    """One version, without its text (history listings)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID
    version: int
    is_current: bool
    source: str
    job_id: uuid.UUID | None
    audio_file_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    language: str
    confidence_score: float | None
    processing_time_ms: int | None
    stt_model: str | None
    status: str
    word_count: int | None
    created_at: datetime
    updated_at: datetime


class TranscriptionOut(TranscriptionInfoOut):
    content: str
    segments: list[SegmentOut]

    @field_validator("segments", mode="before")
    @classmethod
    def keep_readable(cls, v: Any) -> Any:  # lenient on read: a stored element without times is skipped
        if not isinstance(v, list):
            return []
        return [s for s in v if isinstance(s, dict) and "start_time" in s and "end_time" in s]


class WordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    word: Text = Field(max_length=200)
    start: Seconds
    end: Seconds
    speaker: SpeakerName | None = None
    probability: float | None = Field(None, ge=0, le=1)


class SegmentIn(BaseModel):
    """A whole segment (PUT): times in seconds, ``end_time >= start_time``."""

    model_config = ConfigDict(extra="ignore")  # a segment read back (with its other keys) may be sent

    speaker: SpeakerName | None = None
    start_time: Seconds
    end_time: Seconds
    text: Text = Field(max_length=MAX_SEGMENT_TEXT)
    language: Annotated[str, StringConstraints(max_length=16)] | None = None
    emotion: Annotated[str, StringConstraints(max_length=32)] | None = None
    event: Annotated[str, StringConstraints(max_length=32)] | None = None
    confidence_score: float | None = Field(None, ge=0, le=1)
    words: list[WordIn] = Field(default_factory=list, max_length=5_000)

    @model_validator(mode="after")
    def _order(self) -> SegmentIn:
        if self.end_time < self.start_time:
            raise ValueError("end_time must not be before start_time")
        for w in self.words:
            if w.end < w.start:
                raise ValueError(f"word {w.word!r} ends before it starts")
        return self


class SegmentPatch(BaseModel):
    """Changes to one segment (PATCH), named by its ``index``; fields left out stay."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=1, le=10_000_000)
    text: Text | None = Field(None, max_length=MAX_SEGMENT_TEXT)
    speaker: SpeakerName | None = None
    start_time: Seconds | None = None
    end_time: Seconds | None = None


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_version: int | None = Field(
        None, ge=1, description="the version edited; 409 if the current one is another (someone else edited)"
    )


class TranscriptionReplace(_Edit):
    segments: list[SegmentIn] = Field(max_length=MAX_EDIT_SEGMENTS)


class TranscriptionPatch(_Edit):
    segments: list[SegmentPatch] = Field(min_length=1, max_length=MAX_EDIT_SEGMENTS)


class SpeakerRename(_Edit):
    speaker: SpeakerName = Field(description="the label to rename, e.g. SPEAKER_00")
    name: SpeakerName = Field(description="the new name (renaming onto an existing speaker merges them)")


# ------------------------------------------------------------------ summaries, titles, templates
MAX_TEMPLATE_CHARS = 20_000
MAX_SUMMARY_CHARS = 200_000
MAX_SUMMARY_ITEMS = 500


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = Field(None, max_length=2000)
    template_content: Text = Field(
        min_length=1,
        max_length=MAX_TEMPLATE_CHARS,
        description="a Markdown outline (headings with guidance), optionally with {placeholders}",
    )
    category: Text | None = Field(None, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    is_active: bool = True


class TemplateUpdate(BaseModel):
    """Partial update: a field left out is unchanged."""

    model_config = ConfigDict(extra="forbid")

    name: Text = OptionalField(min_length=1, max_length=200)
    description: Text | None = Field(None, max_length=2000)
    template_content: Text = OptionalField(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    category: Text | None = Field(None, max_length=100)
    tags: list[Tag] = OptionalField(max_length=MAX_TAGS)
    is_active: bool = OptionalField()


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID | None
    name: str
    description: str | None
    template_content: str
    category: str | None
    tags: list[Any]
    is_default: bool
    is_active: bool
    is_system_template: bool
    usage_count: int
    placeholders: list[str] = Field(default_factory=list, description="the {placeholders} in the content")
    is_user_default: bool = Field(False, description="the caller's default template (preferences)")
    created_at: datetime
    updated_at: datetime


class SummarizeIn(BaseModel):
    """The original's ``POST /api/v1/summarize`` body."""

    transcription_text: Text = Field(min_length=1, max_length=MAX_SUMMARY_CHARS)
    template_id: uuid.UUID | None = None
    language: Language | None = Field(None, description="output language; default: the transcript's")


class TitleIn(BaseModel):
    """The original's ``POST /api/v1/generate-title`` body."""

    transcription_text: Text = Field(min_length=1, max_length=MAX_SUMMARY_CHARS)
    summary_text: Text | None = Field(None, max_length=MAX_SUMMARY_CHARS)
    language: Language | None = None


class ActionItemOut(BaseModel):
    task: str
    owner: str | None = None
    due: str | None = None


class ActionItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Text = Field(min_length=1, max_length=5000)
    owner: Text | None = Field(None, max_length=200)
    due: Text | None = Field(None, max_length=200)


class LLMUsageOut(BaseModel):
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    calls: int
    cost_usd: float
    processing_time_ms: int
    map_calls: int = 0


class SummarizeOut(BaseModel):
    summary: str
    key_points: list[str]
    action_items: list[ActionItemOut]
    decisions: list[str]
    language: str | None
    template_id: uuid.UUID | None
    metadata: LLMUsageOut


class TitleOut(BaseModel):
    title: str
    metadata: LLMUsageOut


class LLMUnavailableOut(BaseModel):
    error: str
    tried: list[str]
    hint: str


class SummaryJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: uuid.UUID | None = Field(
        None, description="default: the session's template, then the user's default, then the system default"
    )
    language: Language | None = Field(None, description="output language; default: the transcript's")


class SummaryJobOut(BaseModel):
    job_id: uuid.UUID
    session_id: uuid.UUID
    status: JobStatus


def _json_list(v: Any) -> Any:
    return v if isinstance(v, list) else []


class SummaryOut(BaseModel):
    """One stored summary version (newest first in lists; none is ever overwritten)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID
    transcription_id: uuid.UUID | None
    summary: str
    key_points: list[Any]
    action_items: list[Any]
    decisions: list[Any]
    language: str | None
    template_id: uuid.UUID | None
    source: str
    parent_id: uuid.UUID | None
    job_id: uuid.UUID | None
    ai_model: str | None
    ai_provider: str | None
    processing_time_ms: int | None
    token_usage: dict[str, Any]
    cost_cents: float | None
    created_at: datetime

    _lists = field_validator("key_points", "action_items", "decisions", mode="before")(_json_list)


class SummaryEdit(BaseModel):
    """An edit: stored as a new version made from ``base_id`` (the latest if left out)."""

    model_config = ConfigDict(extra="forbid")

    base_id: uuid.UUID | None = None
    summary: Text = Field(min_length=1, max_length=MAX_SUMMARY_CHARS)
    key_points: list[Annotated[Text, StringConstraints(max_length=5000)]] = OptionalField(
        max_length=MAX_SUMMARY_ITEMS
    )
    action_items: list[ActionItemIn] = OptionalField(max_length=MAX_SUMMARY_ITEMS)
    decisions: list[Annotated[Text, StringConstraints(max_length=5000)]] = OptionalField(
        max_length=MAX_SUMMARY_ITEMS
    )
