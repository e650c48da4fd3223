"""Initial schema: the original's tables (names kept, fields added) plus credentials, API keys, jobs.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.db.types import JSONType, TagList, UTCDateTime
from api.models import DEFAULT_LANGUAGE, DEFAULT_SESSION_TITLE, JobStatus, SessionStatus, enum_check_sql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP")
EMPTY_OBJ = sa.text("'{}'")
EMPTY_LIST = sa.text("'[]'")
FALSE = sa.text("false")
TRUE = sa.text("true")


def _timestamps(updated: bool = True) -> list[sa.Column]:
    cols = [sa.Column("created_at", UTCDateTime, nullable=False, server_default=NOW)]
    if updated:
        cols.append(sa.Column("updated_at", UTCDateTime, nullable=False, server_default=NOW))
    return cols


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("username", sa.String(100)),
        sa.Column("full_name", sa.String(200)),
        sa.Column("avatar_url", sa.Text),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=TRUE),
        sa.Column("preferences", JSONType, nullable=False, server_default=EMPTY_OBJ),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "user_credentials",
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_credentials"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_user_credentials_user_id_users"
        ),
    )
    op.create_table(
        "summary_templates",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("template_content", sa.Text, nullable=False),
        sa.Column("category", sa.String(100)),
        sa.Column("tags", JSONType, nullable=False, server_default=EMPTY_LIST),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=FALSE),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=TRUE),
        sa.Column("is_system_template", sa.Boolean, nullable=False, server_default=FALSE),
        sa.Column("usage_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_summary_templates"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_summary_templates_user_id_users"
        ),
    )
    op.create_index("ix_summary_templates_user_id", "summary_templates", ["user_id"])
    op.create_table(
        "recording_sessions",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("title", sa.String(500), nullable=False, server_default=DEFAULT_SESSION_TITLE),
        sa.Column("description", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default=SessionStatus.created.value),
        sa.Column("language", sa.String(16), nullable=False, server_default=DEFAULT_LANGUAGE),
        sa.Column("started_at", UTCDateTime),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("metadata", JSONType, nullable=False, server_default=EMPTY_OBJ),
        sa.Column("tags", TagList, nullable=False),
        sa.Column("template_id", sa.Uuid),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_recording_sessions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_recording_sessions_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["summary_templates.id"],
            ondelete="SET NULL",
            name="fk_recording_sessions_template_id_summary_templates",
        ),
        sa.CheckConstraint(enum_check_sql("status", SessionStatus), name="ck_recording_sessions_status"),
    )
    op.create_index(
        "ix_recording_sessions_user_id_created_at", "recording_sessions", ["user_id", "created_at"]
    )
    op.create_table(
        "audio_files",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("original_filename", sa.String(500)),
        sa.Column("storage_backend", sa.String(16), nullable=False),
        sa.Column("storage_path", sa.Text, nullable=False),
        sa.Column("storage_bucket", sa.String(100), nullable=False, server_default="audio-recordings"),
        sa.Column("public_url", sa.Text),
        sa.Column("file_size_bytes", sa.BigInteger),
        sa.Column("duration_seconds", sa.Numeric(10, 3, asdecimal=False)),
        sa.Column("format", sa.String(32)),
        sa.Column("mime_type", sa.String(100)),
        sa.Column("sample_rate", sa.Integer),
        sa.Column("channels", sa.Integer),
        sa.Column("upload_status", sa.String(16), nullable=False, server_default="completed"),
        sa.Column("processing_status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("file_hash", sa.String(64)),
        sa.Column("error_message", sa.Text),
        *_timestamps(updated=False),
        sa.PrimaryKeyConstraint("id", name="pk_audio_files"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="CASCADE",
            name="fk_audio_files_session_id_recording_sessions",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_audio_files_user_id_users"
        ),
    )
    op.create_index("ix_audio_files_session_id", "audio_files", ["session_id"])
    op.create_index("ix_audio_files_user_id", "audio_files", ["user_id"])
    op.create_table(
        "transcriptions",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("content", sa.Text, nullable=False, server_default=""),
        sa.Column("segments", JSONType, nullable=False, server_default=EMPTY_LIST),
        sa.Column("language", sa.String(16), nullable=False, server_default=DEFAULT_LANGUAGE),
        sa.Column("confidence_score", sa.Float),
        sa.Column("processing_time_ms", sa.Integer),
        sa.Column("stt_model", sa.String(100)),
        sa.Column("status", sa.String(16), nullable=False, server_default="completed"),
        sa.Column("word_count", sa.Integer),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_transcriptions"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="CASCADE",
            name="fk_transcriptions_session_id_recording_sessions",
        ),
    )
    op.create_index("ix_transcriptions_session_id", "transcriptions", ["session_id"])
    op.create_table(
        "ai_summaries",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("transcription_id", sa.Uuid),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("key_points", JSONType, nullable=False, server_default=EMPTY_LIST),
        sa.Column("action_items", JSONType, nullable=False, server_default=EMPTY_LIST),
        sa.Column("participants", JSONType, nullable=False, server_default=EMPTY_LIST),
        sa.Column("ai_model", sa.String(200)),
        sa.Column("ai_provider", sa.String(100)),
        sa.Column("processing_time_ms", sa.Integer),
        sa.Column("token_usage", JSONType, nullable=False, server_default=EMPTY_OBJ),
        sa.Column("cost_cents", sa.Float),
        sa.Column("status", sa.String(16), nullable=False, server_default="completed"),
        sa.Column("quality_rating", sa.Integer),
        sa.Column("template_id", sa.Uuid),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_ai_summaries"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="CASCADE",
            name="fk_ai_summaries_session_id_recording_sessions",
        ),
        sa.ForeignKeyConstraint(
            ["transcription_id"],
            ["transcriptions.id"],
            ondelete="SET NULL",
            name="fk_ai_summaries_transcription_id_transcriptions",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["summary_templates.id"],
            ondelete="SET NULL",
            name="fk_ai_summaries_template_id_summary_templates",
        ),
        sa.CheckConstraint(
            "quality_rating IS NULL OR quality_rating BETWEEN 1 AND 5", name="ck_ai_summaries_quality"
        ),
    )
    op.create_index("ix_ai_summaries_session_id", "ai_summaries", ["session_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", JSONType, nullable=False, server_default=EMPTY_LIST),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.Column("revoked_at", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_api_keys_user_id_users"
        ),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default=JobStatus.queued.value),
        sa.Column("user_id", sa.Uuid),
        sa.Column("session_id", sa.Uuid),
        sa.Column("params", JSONType, nullable=False, server_default=EMPTY_OBJ),
        sa.Column("result", JSONType),
        sa.Column("progress", JSONType, nullable=False),
        sa.Column("checkpoint", JSONType),
        sa.Column("error", JSONType),
        sa.Column("attempt", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default=sa.text("3")),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=FALSE),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("heartbeat_at", UTCDateTime),
        sa.Column("enqueued_at", UTCDateTime),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE", name="fk_jobs_user_id_users"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="SET NULL",
            name="fk_jobs_session_id_recording_sessions",
        ),
        sa.CheckConstraint(enum_check_sql("status", JobStatus), name="ck_jobs_status"),
    )
    op.create_index("ix_jobs_status_lease_expires_at", "jobs", ["status", "lease_expires_at"])
    op.create_index("ix_jobs_user_id", "jobs", ["user_id"])
    op.create_index("ix_jobs_session_id", "jobs", ["session_id"])
    op.create_table(
        "job_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("job_id", sa.Uuid, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], ondelete="CASCADE", name="fk_job_events_job_id_jobs"
        ),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])


def downgrade() -> None:
    for table in (
        "job_events",
        "jobs",
        "api_keys",
        "ai_summaries",
        "transcriptions",
        "audio_files",
        "recording_sessions",
        "summary_templates",
        "user_credentials",
        "users",
    ):
        op.drop_table(table)
