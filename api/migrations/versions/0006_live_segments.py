"""Live session data in the database (the embedded default; Redis when REDIS_URL is set):
``live_sessions`` (status, revision counter, segment count, last activity, expiry; one row per
session with live data) and ``live_segments`` (one row per (session, segment id), upserted; the
revision of its last write). api/live.py; docs/interfaces.md "Live sessions".

On PostgreSQL both get row-level security with no grant and no policy (as ``api_keys``): only the
api (the owner) and service_role reach them; clients read live data through the api.

Revision ID: 0006_live_segments
Revises: 0005_summary_history
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.db.types import JSONType, UTCDateTime

revision = "0006_live_segments"
down_revision = "0005_summary_history"
branch_labels = None
depends_on = None

TABLES = ("live_sessions", "live_segments")


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("status", JSONType, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("segment_count", sa.Integer, nullable=False),
        sa.Column("last_activity", UTCDateTime),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_live_sessions"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="CASCADE",
            name="fk_live_sessions_session_id_recording_sessions",
        ),
    )
    op.create_index("ix_live_sessions_expires_at", "live_sessions", ["expires_at"])
    op.create_table(
        "live_segments",
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("segment_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("is_final", sa.Boolean, nullable=False),
        sa.Column("data", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("session_id", "segment_id", name="pk_live_segments"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["live_sessions.session_id"],
            ondelete="CASCADE",
            name="fk_live_segments_session_id_live_sessions",
        ),
    )
    op.create_index("ix_live_segments_session_id_revision", "live_segments", ["session_id", "revision"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"REVOKE ALL ON {table} FROM anon, PUBLIC")
            op.execute(f"REVOKE ALL ON {table} FROM authenticated")


def downgrade() -> None:
    op.drop_table("live_segments")
    op.drop_table("live_sessions")
