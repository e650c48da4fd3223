"""Summary history: ``decisions``, ``language``, ``source`` (generated | edit), ``job_id`` (unique:
one summary per job, so a retried job stores nothing twice) and ``parent_id`` (the summary an edit
came from). Every generation or edit adds a row; none is ever overwritten.

Revision ID: 0005_summary_history
Revises: 0004_transcription_versions
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.db.types import JSONType

revision = "0005_summary_history"
down_revision = "0004_transcription_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ai_summaries") as batch:
        batch.add_column(sa.Column("decisions", JSONType, nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("language", sa.String(16)))
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="generated"))
        batch.add_column(sa.Column("job_id", sa.Uuid))
        batch.add_column(sa.Column("parent_id", sa.Uuid))
    with op.batch_alter_table("ai_summaries") as batch:
        batch.create_check_constraint(op.f("ck_ai_summaries_source"), "source IN ('generated', 'edit')")
        batch.create_unique_constraint("uq_ai_summaries_job_id", ["job_id"])
        batch.create_foreign_key(
            "fk_ai_summaries_job_id_jobs", "jobs", ["job_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_foreign_key(
            "fk_ai_summaries_parent_id_ai_summaries",
            "ai_summaries",
            ["parent_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("ai_summaries") as batch:
        batch.drop_constraint("fk_ai_summaries_parent_id_ai_summaries", type_="foreignkey")
        batch.drop_constraint("fk_ai_summaries_job_id_jobs", type_="foreignkey")
        batch.drop_constraint("uq_ai_summaries_job_id", type_="unique")
        batch.drop_constraint(op.f("ck_ai_summaries_source"), type_="check")
        for column in ("parent_id", "job_id", "source", "language", "decisions"):
            batch.drop_column(column)
