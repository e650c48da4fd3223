"""Tables. Names and JSON field names follow the original Intrascribe schema (fields are added,
never renamed); ``api/migrations`` creates exactly these, on PostgreSQL and SQLite.

Enumerations that the database constrains (session status, job status) are defined once here; the
CHECK constraints are generated from them (a new value needs a migration that rewrites the check).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api.db.types import JSONType, TagList, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SessionStatus(str, enum.Enum):
    """Lifecycle of a recording session (the one definition; the database checks it)."""

    created = "created"
    recording = "recording"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    archived = "archived"


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class TranscriptionSource(str, enum.Enum):
    """Where a transcription came from (the database checks it): ``live`` the original's realtime
    recording, ``batch`` the transcribe job, ``openai`` /v1/audio/transcriptions, ``direct`` the
    original's /transcribe and /diarize-file calls, ``edit`` a user's edit of an earlier version."""

    live = "live"
    batch = "batch"
    openai = "openai"
    direct = "direct"
    edit = "edit"


# The statuses a job never leaves, as the stored strings (JobStatus members compare equal to them).
TERMINAL_JOB_STATUSES: frozenset[str] = frozenset(
    s.value for s in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)
)

DEFAULT_SESSION_TITLE = "未命名录音"  # the original's default ("untitled recording")
DEFAULT_LANGUAGE = "zh-CN"
AUDIO_BUCKET = "audio-recordings"


def enum_check_sql(column: str, values: type[enum.Enum]) -> str:
    """``status IN ('a', 'b')`` for a CHECK constraint, from the enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(
        UTCDateTime, nullable=False, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )


def _updated_at() -> Mapped[datetime]:
    return mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )


class User(Base):
    """A user's profile; ``id`` equals the Supabase auth user id (the token's ``sub``)."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    username: Mapped[str | None] = mapped_column(String(100))
    full_name: Mapped[str | None] = mapped_column(String(200))
    avatar_url: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    # {"default_language": "zh-CN", "default_template_id": null, "auto_summary": false, ...}
    preferences: Mapped[dict[str, Any]] = mapped_column(
        JSONType, nullable=False, default=dict, server_default=text("'{}'")
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class UserCredential(Base):
    """Embedded-auth password hash (argon2). Kept apart from ``users`` so no policy ever exposes it."""

    __tablename__ = "user_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class SummaryTemplate(Base):
    __tablename__ = "summary_templates"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )  # NULL: a system template
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    template_content: Mapped[str] = mapped_column(Text, nullable=False)
    category: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[Any]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    is_default: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    is_system_template: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    usage_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class RecordingSession(Base):
    __tablename__ = "recording_sessions"
    __table_args__ = (
        CheckConstraint(enum_check_sql("status", SessionStatus), name="status"),
        Index(None, "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(
        String(500), nullable=False, default=DEFAULT_SESSION_TITLE, server_default=DEFAULT_SESSION_TITLE
    )
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(16),
        nullable=False,
        default=SessionStatus.created.value,
        server_default=SessionStatus.created.value,
    )
    language: Mapped[str] = mapped_column(
        String(16), nullable=False, default=DEFAULT_LANGUAGE, server_default=DEFAULT_LANGUAGE
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    # "metadata" is reserved on declarative classes: the attribute is meta, the column keeps its name.
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONType, nullable=False, default=dict, server_default=text("'{}'")
    )
    tags: Mapped[list[str]] = mapped_column(TagList, nullable=False, default=list)
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("summary_templates.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    audio_files: Mapped[list[AudioFile]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True
    )


class AudioFile(Base):
    __tablename__ = "audio_files"

    id: Mapped[uuid.UUID] = _uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    original_filename: Mapped[str | None] = mapped_column(String(500))
    storage_backend: Mapped[str] = mapped_column(String(16), nullable=False)  # local | supabase
    storage_path: Mapped[str] = mapped_column(Text, nullable=False)
    storage_bucket: Mapped[str] = mapped_column(
        String(100), nullable=False, default=AUDIO_BUCKET, server_default=AUDIO_BUCKET
    )
    public_url: Mapped[str | None] = mapped_column(Text)  # always NULL: the bucket is private
    file_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration_seconds: Mapped[float | None] = mapped_column(Numeric(10, 3, asdecimal=False))
    format: Mapped[str | None] = mapped_column(String(32))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    upload_status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="completed", server_default="completed"
    )
    processing_status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="pending", server_default="pending"
    )
    file_hash: Mapped[str | None] = mapped_column(String(64))  # sha256, hex
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    session: Mapped[RecordingSession] = relationship(back_populates="audio_files")


class Transcription(Base):
    """One version of a session's transcript. Versions are numbered 1, 2, ... per session; exactly
    one is ``is_current`` once any exists (the latest successful one, or the latest edit). Older
    versions stay as history; re-transcription adds a version, never overwrites one. ``job_id`` is
    unique: a job that completes twice (a retried completion) stores one transcription."""

    __tablename__ = "transcriptions"
    __table_args__ = (
        CheckConstraint(enum_check_sql("source", TranscriptionSource), name="source"),
        UniqueConstraint("session_id", "version"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default=text("1"))
    is_current: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    source: Mapped[str] = mapped_column(
        String(16),
        nullable=False,
        default=TranscriptionSource.batch.value,
        server_default=TranscriptionSource.live.value,  # rows from before versioning: the original's
    )
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    audio_file_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("audio_files.id", ondelete="SET NULL")
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(  # the version an edit was made from
        Uuid, ForeignKey("transcriptions.id", ondelete="SET NULL")
    )
    content: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # [{index, speaker, start_time, end_time, text, confidence_score, is_final}, ...] (seconds)
    segments: Mapped[list[Any]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    language: Mapped[str] = mapped_column(
        String(16), nullable=False, default=DEFAULT_LANGUAGE, server_default=DEFAULT_LANGUAGE
    )
    confidence_score: Mapped[float | None] = mapped_column(Float)
    processing_time_ms: Mapped[int | None] = mapped_column(Integer)
    stt_model: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="completed", server_default="completed"
    )
    word_count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class AISummary(Base):
    __tablename__ = "ai_summaries"
    __table_args__ = (
        CheckConstraint("quality_rating IS NULL OR quality_rating BETWEEN 1 AND 5", name="quality"),
        CheckConstraint("source IN ('generated', 'edit')", name="source"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # SET NULL, not CASCADE: re-transcribing must not delete the summaries made from the old text.
    transcription_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("transcriptions.id", ondelete="SET NULL")
    )
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    key_points: Mapped[list[Any]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    action_items: Mapped[list[Any]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    participants: Mapped[list[Any]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    ai_model: Mapped[str | None] = mapped_column(String(200))
    ai_provider: Mapped[str | None] = mapped_column(String(100))
    processing_time_ms: Mapped[int | None] = mapped_column(Integer)
    token_usage: Mapped[dict[str, Any]] = mapped_column(
        JSONType, nullable=False, default=dict, server_default=text("'{}'")
    )
    cost_cents: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="completed", server_default="completed"
    )
    quality_rating: Mapped[int | None] = mapped_column(Integer)
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("summary_templates.id", ondelete="SET NULL")
    )
    # History (0005): every generation or edit adds a row; none is overwritten.
    decisions: Mapped[list[Any]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    language: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(
        String(16), nullable=False, default="generated", server_default="generated"
    )  # generated | edit
    job_id: Mapped[uuid.UUID | None] = mapped_column(  # one summary per job
        Uuid, ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(  # the summary an edit was made from
        Uuid, ForeignKey("ai_summaries.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class ApiKey(Base):
    """A personal API key: only a SHA-256 of the secret is stored (the secret has 256 bits of
    entropy, so a slow password hash adds nothing and would cost every request)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False)  # shown in listings
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scopes: Mapped[list[str]] = mapped_column(
        JSONType, nullable=False, default=list, server_default=text("'[]'")
    )
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    """A durable background job. The row is the truth; the task queue only carries wake-ups."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(enum_check_sql("status", JobStatus), name="status"),
        Index(None, "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default=JobStatus.queued.value, server_default=JobStatus.queued.value
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="SET NULL"), index=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(
        JSONType, nullable=False, default=dict, server_default=text("'{}'")
    )
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    progress: Mapped[dict[str, Any]] = mapped_column(
        JSONType, nullable=False, default=lambda: {"done": 0, "total": None, "stage": "queued"}
    )
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # {"code": ..., "message": ...}
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=3, server_default=text("3"))
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class JobEvent(Base):
    """Append-only log of a job's transitions and progress: the SSE stream replays it by ``id``."""

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)  # status | progress
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = _created_at()


class RecordingTrack(Base):
    """One participant's continuous recording in a live session (0007). ``offset_seconds``: where
    the participant's chunk 0 starts on the session's timeline (seconds from the session start),
    fixed when their first chunk arrives; chunk ``seq`` then starts at offset + seq x chunk_seconds."""

    __tablename__ = "recording_tracks"
    __table_args__ = (UniqueConstraint("session_id", "participant"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    participant: Mapped[str] = mapped_column(String(255), nullable=False)  # LiveKit identity
    offset_seconds: Mapped[float] = mapped_column(Float, nullable=False)
    chunk_seconds: Mapped[float] = mapped_column(Float, nullable=False)  # RECORDING_CHUNK_SECONDS then
    created_at: Mapped[datetime] = _created_at()


class RecordingChunk(Base):
    """One uploaded Ogg/Opus chunk of a track (0007): its blob, size, hash and measured duration.
    Unique per (track, seq): a repeated upload of the same bytes finds this row."""

    __tablename__ = "recording_chunks"
    __table_args__ = (UniqueConstraint("track_id", "seq"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    track_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_tracks.id", ondelete="CASCADE"), nullable=False
    )
    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    storage_backend: Mapped[str] = mapped_column(String(16), nullable=False)
    storage_bucket: Mapped[str] = mapped_column(String(100), nullable=False)
    storage_path: Mapped[str] = mapped_column(Text, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    duration_seconds: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = _created_at()


# Tables a user owns directly (user_id column) and those owned through their session.
USER_OWNED_TABLES = ("recording_sessions", "audio_files", "api_keys", "jobs")
SESSION_OWNED_TABLES = ("transcriptions", "ai_summaries")
