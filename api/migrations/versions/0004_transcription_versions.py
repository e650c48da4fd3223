"""Transcription versions: ``version``, ``is_current``, ``source``, ``job_id`` (unique: one
transcription per job), ``audio_file_id``, ``parent_id`` (the version an edit came from).

Existing rows are numbered per session by creation time; the newest of each session becomes
current. Batch mode: SQLite cannot add constraints in place (the table is rebuilt there);
PostgreSQL gets plain ``ALTER TABLE`` (row-level security policies stay).

Revision ID: 0004_transcription_versions
Revises: 0003_row_level_security
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.models import TranscriptionSource, enum_check_sql

revision = "0004_transcription_versions"
down_revision = "0003_row_level_security"
branch_labels = None
depends_on = None

_NUMBER = """
UPDATE transcriptions SET version = (
    SELECT n FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY created_at, id) AS n
        FROM transcriptions
    ) numbered WHERE numbered.id = transcriptions.id
)
"""
_CURRENT = """
UPDATE transcriptions SET is_current = true WHERE version = (
    SELECT MAX(t.version) FROM transcriptions t WHERE t.session_id = transcriptions.session_id
)
"""


def upgrade() -> None:
    with op.batch_alter_table("transcriptions") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")))
        batch.add_column(sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.text("false")))
        batch.add_column(
            sa.Column("source", sa.String(16), nullable=False, server_default=TranscriptionSource.live.value)
        )
        batch.add_column(sa.Column("job_id", sa.Uuid))
        batch.add_column(sa.Column("audio_file_id", sa.Uuid))
        batch.add_column(sa.Column("parent_id", sa.Uuid))
    op.execute(_NUMBER)
    op.execute(_CURRENT)
    with op.batch_alter_table("transcriptions") as batch:
        batch.create_check_constraint(
            op.f("ck_transcriptions_source"), enum_check_sql("source", TranscriptionSource)
        )
        batch.create_unique_constraint("uq_transcriptions_session_id_version", ["session_id", "version"])
        batch.create_unique_constraint("uq_transcriptions_job_id", ["job_id"])
        batch.create_foreign_key(
            "fk_transcriptions_job_id_jobs", "jobs", ["job_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_foreign_key(
            "fk_transcriptions_audio_file_id_audio_files",
            "audio_files",
            ["audio_file_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            "fk_transcriptions_parent_id_transcriptions",
            "transcriptions",
            ["parent_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("transcriptions") as batch:
        batch.drop_constraint("fk_transcriptions_parent_id_transcriptions", type_="foreignkey")
        batch.drop_constraint("fk_transcriptions_audio_file_id_audio_files", type_="foreignkey")
        batch.drop_constraint("fk_transcriptions_job_id_jobs", type_="foreignkey")
        batch.drop_constraint("uq_transcriptions_job_id", type_="unique")
        batch.drop_constraint("uq_transcriptions_session_id_version", type_="unique")
        batch.drop_constraint(op.f("ck_transcriptions_source"), type_="check")
        for column in ("parent_id", "audio_file_id", "job_id", "source", "is_current", "version"):
            batch.drop_column(column)
