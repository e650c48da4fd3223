"""The database and Redis fixtures of conftest.py do what they promise, cleanup included."""

from __future__ import annotations

import secrets

import psycopg
import redis

from tests.conftest import (
    TEST_DB_PREFIX,
    _admin_connect,
    libpq_url,
    redis_key_prefix,
    temporary_database,
)


def _database_exists(name: str) -> bool:
    conn, _ = _admin_connect()
    with conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _user_tables(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(libpq_url(url), connect_timeout=5) as conn:
        return conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()


def test_pg_url_is_a_fresh_empty_database(pg_url):
    assert pg_url.startswith("postgresql+psycopg://")
    name = pg_url.rsplit("/", 1)[1]
    assert name.startswith(TEST_DB_PREFIX) and name not in ("postgres", "test", "root")
    assert _database_exists(name)
    assert _user_tables(pg_url) == []
    with psycopg.connect(libpq_url(pg_url)) as conn:  # usable: the URL's user may create and write
        conn.execute("CREATE TABLE harness_probe (id int PRIMARY KEY)")
        conn.execute("INSERT INTO harness_probe VALUES (1)")
        assert conn.execute("SELECT count(*) FROM harness_probe").fetchone() == (1,)
        conn.execute("DROP TABLE harness_probe")


def test_each_session_gets_its_own_database_and_it_is_dropped(pg_url):
    with temporary_database() as a, temporary_database() as b:
        names = {u.rsplit("/", 1)[1] for u in (a, b, pg_url)}
        assert len(names) == 3
        with psycopg.connect(libpq_url(a)) as conn:
            conn.execute("CREATE TABLE only_in_a (x int)")
        assert _user_tables(b) == []
        # An open connection must not stop the drop (WITH (FORCE)).
        lingering = psycopg.connect(libpq_url(a))
    try:
        for url in (a, b):
            assert not _database_exists(url.rsplit("/", 1)[1])
    finally:
        lingering.close()
    assert _database_exists(pg_url.rsplit("/", 1)[1])


def test_redis_prefix_is_unique_and_namespaced(redis_prefix, redis_url):
    assert redis_prefix.startswith("intrascribe-test:") and redis_prefix.endswith(":")
    with redis_key_prefix(redis_url) as other:
        assert other != redis_prefix
    r = redis.Redis.from_url(redis_url)
    try:
        r.set(redis_prefix + "probe", "1")  # removed at session end by the fixture
        assert r.get(redis_prefix + "probe") == b"1"
    finally:
        r.close()


def test_redis_cleanup_deletes_only_its_own_keys(redis_url):
    r = redis.Redis.from_url(redis_url)
    token = secrets.token_hex(6)
    # Outside every test prefix, and one that shares the prefix's text without its trailing colon.
    outside = [f"intrascribe-harness-outside:{token}", None]
    try:
        with redis_key_prefix(redis_url) as prefix:
            outside[1] = prefix.rstrip(":") + "-sibling"
            for k in outside:
                r.set(k, "keep")
            own = [prefix + f"k{i}" for i in range(1200)]  # more than one SCAN/DEL batch
            r.mset({k: "x" for k in own})
            r.hset(prefix + "hash", mapping={"a": "1"})
            assert r.exists(*own) == len(own)
        assert r.exists(*own, prefix + "hash") == 0
        for k in outside:
            assert r.get(k) == b"keep", f"{k} outside the prefix was deleted"
    finally:
        r.delete(*[k for k in outside if k])
        r.close()
