"""The database and Redis fixtures of conftest.py do what they promise, cleanup included."""

from __future__ import annotations

import secrets

import psycopg
import pytest
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


# -- the skip policy (tests/skips.py) --------------------------------------------------------------

_POLICY_CONFTEST = (
    "from tests.conftest import pytest_runtest_logreport, pytest_runtest_setup, pytest_sessionfinish\n"
    "import pytest\n"
    "def pytest_configure(config):\n"
    "    config.addinivalue_line('markers', 'export: needs the export environment')\n"
)


def _run_inner(pytester, source: str, *args: str):
    pytester.makeconftest(_POLICY_CONFTEST)
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", *args)


def test_a_skip_on_the_list_keeps_the_run_green(pytester):
    result = _run_inner(
        pytester,
        "import pytest\nfrom tests.skips import skip_unavailable\n"
        "def test_ok():\n    pass\n"
        "def test_gpu():\n    pytest.skip(skip_unavailable('gpu', 'CUDA graphs'))\n",
    )
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1, skipped=1)


def test_any_other_skip_fails_the_run_and_is_named(pytester):
    result = _run_inner(
        pytester,
        "import pytest\n"
        "def test_ok():\n    pass\n"
        "def test_missing_module():\n    pytest.importorskip('no_such_module_here')\n",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*not allowed by tests/skips.py*", "*test_missing_module*no_such_module_here*"]
    )


def test_export_tests_fail_without_the_export_environment(pytester):
    # the inner run's conftest finds no export env when the checkout's .envs/export is missing; here
    # the check is exercised directly: an export-marked test in a run whose EXPORT_PYTHON is absent
    result = _run_inner(
        pytester,
        "import pytest\nimport tests.conftest as c\nfrom pathlib import Path\n"
        "c.EXPORT_PYTHON = Path('/nonexistent/python')\n"
        "@pytest.mark.export\ndef test_needs_export():\n    pass\n",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs the export environment*make env-export*"])
