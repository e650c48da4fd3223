"""Column types that mean the same on PostgreSQL (Supabase) and SQLite (embedded)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

# jsonb on Postgres (indexable, what Supabase clients expect), JSON text on SQLite.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")

# text[] on Postgres (the original's tags column), a JSON list on SQLite.
TagList = JSON().with_variant(postgresql.ARRAY(Text()), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """timestamptz on Postgres; on SQLite a naive UTC string. Always aware UTC in Python.

    Every write is converted to UTC first, so string comparisons on SQLite (lease expiry, filters)
    order correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
