"""Migrations run up and down on SQLite and PostgreSQL and produce exactly the models' schema."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from api.db.migrate import downgrade, head_revision, upgrade
from api.models import Base, JobStatus, SessionStatus
from tests.conftest import temporary_database

TABLES = {
    "users",
    "user_credentials",
    "recording_sessions",
    "audio_files",
    "transcriptions",
    "ai_summaries",
    "summary_templates",
    "api_keys",
    "jobs",
    "job_events",
    "live_sessions",
    "live_segments",
    "recording_tracks",
    "recording_chunks",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/m.db"
    else:
        with temporary_database() as url:
            yield url


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_up_down_up(empty_db):
    upgrade(empty_db)
    assert _tables(empty_db) == TABLES
    downgrade(empty_db, "base")
    assert _tables(empty_db) == set()
    upgrade(empty_db)
    assert _tables(empty_db) == TABLES
    engine = sa.create_engine(empty_db)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        # the three system templates of the original, seeded once
        names = set(
            conn.execute(sa.text("SELECT name FROM summary_templates WHERE is_system_template")).scalars()
        )
        assert names == {"通用会议纪要", "访谈要点提炼", "技术评审结论"}
    engine.dispose()


def _diff(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_migrations_match_models(any_db_url):
    """Nothing to autogenerate: the migrations create what the models declare."""
    assert _diff(any_db_url) == []


def test_status_check_constraints(any_db_url):
    engine = sa.create_engine(any_db_url)
    uid = uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO users (id, preferences) VALUES (:id, '{}')"), {"id": _uid(conn, uid)}
            )
        for value in [s.value for s in SessionStatus]:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO recording_sessions (id, user_id, status, tags) VALUES (:id, :u, :s, :t)"
                    ),
                    {"id": _uid(conn, uuid.uuid4()), "u": _uid(conn, uid), "s": value, "t": _tags(conn)},
                )
        for bad in ("draft", "done", ""):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO recording_sessions (id, user_id, status, tags) VALUES (:id, :u, :s, :t)"
                    ),
                    {"id": _uid(conn, uuid.uuid4()), "u": _uid(conn, uid), "s": bad, "t": _tags(conn)},
                )
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO jobs (id, kind, status, progress) VALUES (:id, 'x', 'pending', '{}')"),
                {"id": _uid(conn, uuid.uuid4())},
            )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": _uid(conn, uid)})
        engine.dispose()


def test_enums_are_the_issue_lists():
    assert [s.value for s in SessionStatus] == [
        "created", "recording", "processing", "completed", "failed", "cancelled", "archived"
    ]  # fmt: skip
    assert [s.value for s in JobStatus] == ["queued", "running", "completed", "failed", "cancelled"]


def _uid(conn, u: uuid.UUID):
    # raw SQL: Postgres takes the uuid text, SQLite stores Uuid as 32 hex chars
    return u.hex if conn.dialect.name == "sqlite" else str(u)


def _tags(conn):
    return "[]" if conn.dialect.name == "sqlite" else []
