"""Supabase row-level security (PostgreSQL only; a no-op on SQLite).

A client that reads Supabase directly with a user's access token (role ``authenticated``) sees and
changes only that user's rows; ``anon`` gets nothing; credentials and API keys are not reachable at
all. The api itself connects as the tables' owner and scopes every query to the caller itself.

On plain PostgreSQL the ``auth`` schema, ``auth.uid()`` and the roles ``anon``/``authenticated`` do
not exist: they are created here only when absent, so a real Supabase project keeps its own. What
this migration creates is marked by a comment; the downgrade removes only what carries the mark
(roles are cluster-wide and stay).

Revision ID: 0003_row_level_security
Revises: 0002_system_templates
Create Date: 2025-01-01
"""

from __future__ import annotations

from alembic import op

revision = "0003_row_level_security"
down_revision = "0002_system_templates"
branch_labels = None
depends_on = None

SHIM_MARK = "created by intrascribe (absent before); safe to drop"

_OWN_SESSION = (
    "EXISTS (SELECT 1 FROM recording_sessions s WHERE s.id = session_id AND s.user_id = (SELECT auth.uid()))"
)
_UID = "(SELECT auth.uid())"

# table -> (privileges granted to authenticated, [(policy name, command, USING, WITH CHECK)])
POLICIES: dict[str, tuple[str, list[tuple[str, str, str | None, str | None]]]] = {
    "users": (
        "SELECT, UPDATE",
        [
            ("users_select_own", "SELECT", f"id = {_UID}", None),
            ("users_update_own", "UPDATE", f"id = {_UID}", f"id = {_UID}"),
        ],
    ),
    "recording_sessions": (
        "SELECT, INSERT, UPDATE, DELETE",
        [("recording_sessions_own", "ALL", f"user_id = {_UID}", f"user_id = {_UID}")],
    ),
    "audio_files": (
        "SELECT, INSERT, UPDATE, DELETE",
        [("audio_files_own", "ALL", f"user_id = {_UID}", f"user_id = {_UID} AND {_OWN_SESSION}")],
    ),
    "transcriptions": (
        "SELECT, INSERT, UPDATE, DELETE",
        [("transcriptions_own_session", "ALL", _OWN_SESSION, _OWN_SESSION)],
    ),
    "ai_summaries": (
        "SELECT, INSERT, UPDATE, DELETE",
        [("ai_summaries_own_session", "ALL", _OWN_SESSION, _OWN_SESSION)],
    ),
    "summary_templates": (
        "SELECT, INSERT, UPDATE, DELETE",
        [
            ("summary_templates_select", "SELECT", f"user_id = {_UID} OR is_system_template", None),
            ("summary_templates_insert_own", "INSERT", None, f"user_id = {_UID} AND NOT is_system_template"),
            (
                "summary_templates_update_own",
                "UPDATE",
                f"user_id = {_UID}",
                f"user_id = {_UID} AND NOT is_system_template",
            ),
            ("summary_templates_delete_own", "DELETE", f"user_id = {_UID}", None),
        ],
    ),
    "jobs": ("SELECT", [("jobs_select_own", "SELECT", f"user_id = {_UID}", None)]),
    "job_events": (
        "SELECT",
        [
            (
                "job_events_select_own",
                "SELECT",
                f"EXISTS (SELECT 1 FROM jobs j WHERE j.id = job_id AND j.user_id = {_UID})",
                None,
            )
        ],
    ),
    # RLS on, no grant, no policy: reachable only by the owner (the api) and service_role.
    "api_keys": ("", []),
    "user_credentials": ("", []),
}

_GUARDED_AUTH = f"""
DO $$
BEGIN
    BEGIN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
        CREATE SCHEMA auth;
        COMMENT ON SCHEMA auth IS '{SHIM_MARK}';
        GRANT USAGE ON SCHEMA auth TO anon, authenticated;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
    ) THEN
        -- Supabase's definition: the sub claim of the request's JWT, as PostgREST sets it.
        CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
            SELECT nullif(coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
            ), '')::uuid
        $f$;
        COMMENT ON FUNCTION auth.uid() IS '{SHIM_MARK}';
        GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated;
    END IF;
END
$$;
"""

_DROP_SHIMS = f"""
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
          AND obj_description(p.oid, 'pg_proc') = '{SHIM_MARK}'
    ) THEN
        DROP FUNCTION auth.uid();
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_namespace WHERE nspname = 'auth'
          AND obj_description(oid, 'pg_namespace') = '{SHIM_MARK}'
    ) THEN
        DROP SCHEMA auth RESTRICT;
    END IF;
END
$$;
"""


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _is_postgres():
        return
    op.execute(_GUARDED_AUTH)
    for table, (privileges, policies) in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        # Supabase's default privileges grant every new table to anon: take that back explicitly.
        op.execute(f"REVOKE ALL ON {table} FROM anon, PUBLIC")
        op.execute(f"REVOKE ALL ON {table} FROM authenticated")
        if privileges:
            op.execute(f"GRANT {privileges} ON {table} TO authenticated")
        for name, command, using, check in policies:
            sql = f"CREATE POLICY {name} ON {table} FOR {command} TO authenticated"
            if using:
                sql += f" USING ({using})"
            if check:
                sql += f" WITH CHECK ({check})"
            op.execute(sql)
    op.execute("REVOKE ALL ON SEQUENCE job_events_id_seq FROM anon, PUBLIC")


def downgrade() -> None:
    if not _is_postgres():
        return
    for table, (_privileges, policies) in POLICIES.items():
        for name, *_ in policies:
            op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
        op.execute(f"REVOKE ALL ON {table} FROM authenticated")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(_DROP_SHIMS)
