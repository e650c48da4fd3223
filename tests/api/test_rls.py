"""Row-level security on PostgreSQL, as a Supabase client sees it: role ``authenticated`` with the
user's id in ``request.jwt.claims`` (what PostgREST sets); ``anon`` sees nothing."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.conftest import libpq_url


@pytest.fixture
def conn(api_pg_url):
    with psycopg.connect(libpq_url(api_pg_url), autocommit=True) as c:
        yield c


@pytest.fixture
def two_users(conn):
    a, b = uuid.uuid4(), uuid.uuid4()
    ids = {}
    for name, uid in (("a", a), ("b", b)):
        conn.execute(
            "INSERT INTO users (id, email, preferences) VALUES (%s, %s, '{}')", (uid, f"{uid}@rls.test")
        )
        sid = uuid.uuid4()
        conn.execute(
            "INSERT INTO recording_sessions (id, user_id, title, tags) VALUES (%s, %s, %s, '{}')",
            (sid, uid, f"{name}'s"),
        )
        tid = uuid.uuid4()
        conn.execute(
            "INSERT INTO transcriptions (id, session_id, content) VALUES (%s, %s, 'secret')", (tid, sid)
        )
        conn.execute(
            "INSERT INTO audio_files (id, session_id, user_id, storage_backend, storage_path) VALUES (%s, %s, %s, 'local', 'p')",
            (uuid.uuid4(), sid, uid),
        )
        conn.execute(
            "INSERT INTO jobs (id, kind, user_id, session_id, progress) VALUES (%s, 'x', %s, %s, '{}')",
            (uuid.uuid4(), uid, sid),
        )
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash) VALUES (%s, %s, 'k', 'p', %s)",
            (uuid.uuid4(), uid, uuid.uuid4().hex * 2),
        )
        conn.execute(
            "INSERT INTO summary_templates (id, user_id, name, template_content) VALUES (%s, %s, 'mine', '#')",
            (uuid.uuid4(), uid),
        )
        ids[name] = {"user": uid, "session": sid, "transcription": tid}
    yield ids
    conn.execute("DELETE FROM users WHERE id IN (%s, %s)", (a, b))


def as_user(conn, uid):
    conn.execute("RESET ROLE")
    conn.execute(
        "SELECT set_config('request.jwt.claims', %s, false)",
        (json.dumps({"sub": str(uid), "role": "authenticated"}),),
    )
    conn.execute("SET ROLE authenticated")


def test_user_sees_and_changes_only_own_rows(conn, two_users):
    a, b = two_users["a"], two_users["b"]
    try:
        as_user(conn, a["user"])
        assert conn.execute("SELECT auth.uid()").fetchone()[0] == a["user"]
        assert [r[0] for r in conn.execute("SELECT id FROM users")] == [a["user"]]
        assert [r[0] for r in conn.execute("SELECT id FROM recording_sessions")] == [a["session"]]
        assert [r[0] for r in conn.execute("SELECT id FROM transcriptions")] == [a["transcription"]]
        for table in ("audio_files", "jobs"):
            assert {r[0] for r in conn.execute(f"SELECT user_id FROM {table}")} == {a["user"]}
        names = {r[0] for r in conn.execute("SELECT name FROM summary_templates")}
        assert "mine" in names and len(names) == 4  # own + the three system templates
        # writes to B's rows touch nothing
        assert (
            conn.execute(
                "UPDATE recording_sessions SET title = 'pwned' WHERE id = %s", (b["session"],)
            ).rowcount
            == 0
        )
        assert conn.execute("DELETE FROM transcriptions WHERE id = %s", (b["transcription"],)).rowcount == 0
        assert conn.execute("UPDATE users SET full_name = 'x' WHERE id = %s", (b["user"],)).rowcount == 0
        assert conn.execute("UPDATE summary_templates SET name = 'x' WHERE is_system_template").rowcount == 0
        # and rows cannot be created for B or attached to B's session
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO recording_sessions (id, user_id, tags) VALUES (%s, %s, '{}')",
                (uuid.uuid4(), b["user"]),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO transcriptions (id, session_id) VALUES (%s, %s)", (uuid.uuid4(), b["session"])
            )
        # own writes work
        conn.execute("UPDATE recording_sessions SET title = 'renamed' WHERE id = %s", (a["session"],))
        conn.execute(
            "INSERT INTO recording_sessions (id, user_id, tags) VALUES (%s, %s, '{}')",
            (uuid.uuid4(), a["user"]),
        )
        # secrets are out of reach entirely
        for table in ("api_keys", "user_credentials"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE jobs SET status = 'completed'")
    finally:
        conn.execute("RESET ROLE")
    assert (
        conn.execute("SELECT title FROM recording_sessions WHERE id = %s", (b["session"],)).fetchone()[0]
        == "b's"
    )


def test_anon_has_no_access(conn, two_users):
    try:
        conn.execute("SET ROLE anon")
        for table in (
            "users",
            "recording_sessions",
            "audio_files",
            "transcriptions",
            "ai_summaries",
            "summary_templates",
            "jobs",
            "api_keys",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {table} LIMIT 1")
    finally:
        conn.execute("RESET ROLE")


def test_no_views_bypass_rls(conn):
    views = conn.execute(
        "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'"
    ).fetchall()
    assert views == []
    tables = conn.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity AND relname <> 'alembic_version'"
    ).fetchall()
    assert tables == []  # every table has RLS on


def test_guarded_shims_leave_an_existing_auth_schema_alone(api_pg_url):
    """On a database that already has auth.uid() (a real Supabase), the migration keeps it; the
    downgrade removes only what it created."""
    from api.db.migrate import downgrade, upgrade
    from tests.conftest import temporary_database

    with temporary_database() as url, psycopg.connect(libpq_url(url), autocommit=True) as c:
        c.execute("CREATE SCHEMA auth")
        c.execute("CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT NULL::uuid $$")
        upgrade(url)
        downgrade(url, "base")
        assert (
            c.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname='auth'"
            ).fetchone()[0]
            == 1
        )
    with temporary_database() as url, psycopg.connect(libpq_url(url), autocommit=True) as c:
        upgrade(url)
        downgrade(url, "base")
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'").fetchone()[0] == 0
