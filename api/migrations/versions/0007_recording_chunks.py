"""Live recording chunks: ``recording_tracks`` (one per participant of a session: its start offset on
the session's timeline and the chunk length in force) and ``recording_chunks`` (one uploaded Ogg/Opus
chunk per (track, seq): blob path, size, SHA-256, measured duration).

On PostgreSQL both get row-level security with no grant and no policy (as ``api_keys``): only the
api (the owner) and service_role reach them; clients read recordings through the api.

Revision ID: 0007_recording_chunks
Revises: 0006_live_segments
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.db.types import UTCDateTime

revision = "0007_recording_chunks"
down_revision = "0006_live_segments"  # after H2's live tables (set by the lead: two heads otherwise)
branch_labels = None
depends_on = None

TABLES = ("recording_tracks", "recording_chunks")


def _created_at() -> sa.Column:
    return sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP"))


def upgrade() -> None:
    op.create_table(
        "recording_tracks",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("participant", sa.String(255), nullable=False),
        sa.Column("offset_seconds", sa.Float, nullable=False),
        sa.Column("chunk_seconds", sa.Float, nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="CASCADE",
            name="fk_recording_tracks_session_id_recording_sessions",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_recording_tracks_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recording_tracks"),
        sa.UniqueConstraint("session_id", "participant", name="uq_recording_tracks_session_id_participant"),
    )
    op.create_index("ix_recording_tracks_session_id", "recording_tracks", ["session_id"])
    op.create_index("ix_recording_tracks_user_id", "recording_tracks", ["user_id"])
    op.create_table(
        "recording_chunks",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("track_id", sa.Uuid, nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("storage_backend", sa.String(16), nullable=False),
        sa.Column("storage_bucket", sa.String(100), nullable=False),
        sa.Column("storage_path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("duration_seconds", sa.Float, nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["recording_tracks.id"],
            ondelete="CASCADE",
            name="fk_recording_chunks_track_id_recording_tracks",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["recording_sessions.id"],
            ondelete="CASCADE",
            name="fk_recording_chunks_session_id_recording_sessions",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_recording_chunks_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recording_chunks"),
        sa.UniqueConstraint("track_id", "seq", name="uq_recording_chunks_track_id_seq"),
    )
    op.create_index("ix_recording_chunks_session_id", "recording_chunks", ["session_id"])
    op.create_index("ix_recording_chunks_user_id", "recording_chunks", ["user_id"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"REVOKE ALL ON {table} FROM anon, PUBLIC")
            op.execute(f"REVOKE ALL ON {table} FROM authenticated")


def downgrade() -> None:
    op.drop_table("recording_chunks")
    op.drop_table("recording_tracks")
