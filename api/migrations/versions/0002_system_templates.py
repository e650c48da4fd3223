"""Seed the three system summary templates of the original (stable ids, so re-seeding is idempotent).

Revision ID: 0002_system_templates
Revises: 0001_initial
Create Date: 2025-01-01
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002_system_templates"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_NAMESPACE = uuid.UUID("6f1c1f8e-3f0b-4b8e-9a57-7c1f3c0d2a10")

SYSTEM_TEMPLATES = [
    {
        "name": "通用会议纪要",
        "description": "General meeting minutes: topics, decisions, action items.",
        "category": "meeting",
        "tags": ["meeting", "minutes"],
        "is_default": True,
        "template_content": (
            "# 会议纪要\n\n## 会议概要\n\n## 讨论要点\n\n## 决议事项\n\n## 待办事项（负责人 / 截止时间）\n"
        ),
    },
    {
        "name": "访谈要点提炼",
        "description": "Interview key points: the interviewee's main statements and notable quotes.",
        "category": "interview",
        "tags": ["interview"],
        "is_default": False,
        "template_content": "# 访谈要点\n\n## 受访者背景\n\n## 核心观点\n\n## 重要引述\n\n## 后续跟进\n",
    },
    {
        "name": "技术评审结论",
        "description": "Technical review conclusions: proposal, risks, decision, follow-ups.",
        "category": "review",
        "tags": ["technical", "review"],
        "is_default": False,
        "template_content": "# 技术评审结论\n\n## 评审对象\n\n## 主要问题与风险\n\n## 评审结论\n\n## 改进项\n",
    },
]


def template_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


def upgrade() -> None:
    from api.db.types import JSONType

    table = sa.table(
        "summary_templates",
        sa.column("id", sa.Uuid),
        sa.column("user_id", sa.Uuid),
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("template_content", sa.Text),
        sa.column("category", sa.String),
        sa.column("tags", JSONType),
        sa.column("is_default", sa.Boolean),
        sa.column("is_active", sa.Boolean),
        sa.column("is_system_template", sa.Boolean),
    )
    op.bulk_insert(
        table,
        [
            {
                **t,
                "id": template_id(t["name"]),
                "user_id": None,
                "is_active": True,
                "is_system_template": True,
            }
            for t in SYSTEM_TEMPLATES
        ],
    )


def downgrade() -> None:
    table = sa.table("summary_templates", sa.column("id", sa.Uuid))
    op.execute(table.delete().where(table.c.id.in_([template_id(t["name"]) for t in SYSTEM_TEMPLATES])))
