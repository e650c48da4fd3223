"""Shared session fixtures: a local Triton server, a throwaway Postgres database, a Redis key prefix.

All are lazy: a test pays for a service only if it asks for the fixture. None of them skips: a
missing service or an unbuilt model repository is a failure with a message that says what to run.

    triton       -> serving.launcher.TritonServer over model_repository/ on free 127.0.0.1 ports
    triton_urls  -> its serving.launcher.TritonPorts (.http_url, .grpc_url, .metrics_url)
    pg_url       -> "postgresql+psycopg://USER@127.0.0.1:5432/intrascribe_test_<random>" (dropped at the end)
    redis_url    -> "redis://127.0.0.1:6379/0"
    redis_prefix -> "intrascribe-test:<random>:" (its keys are deleted at the end, SCAN + DEL)

Environment overrides: INTRASCRIBE_TEST_PG_ADMIN_URL (a libpq URL of a database the test user can
CREATE DATABASE from), INTRASCRIBE_TEST_REDIS_URL, INTRASCRIBE_TRITON_CONFIG_NAME (e.g. ``gpu``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from export_scripts.common import EXPORT_PYTHON
from tests.skips import is_allowed

pytest_plugins = ["pytester"]  # tests/test_harness.py runs inner pytest sessions

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"

PG_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://root@127.0.0.1:5432/postgres",
)
REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_DB_PREFIX = "intrascribe_test_"
REDIS_TEST_NAMESPACE = "intrascribe-test:"

# Models that legitimately have nothing but model.py in their version folder (e.g. a BLS model that
# only calls other models). Every other model needs files that the build writes next to model.py.
MODELS_WITHOUT_ARTIFACTS: frozenset[str] = frozenset({"transcribe"})


# --------------------------------------------------------------------------------------------------
# Triton


def unbuilt_models(repository: Path | None = None) -> list[str]:
    """Model folders whose ``1/`` holds nothing besides ``model.py`` (the build has not run)."""
    repository = MODEL_REPOSITORY if repository is None else repository
    missing = []
    for model in sorted(p for p in repository.iterdir() if p.is_dir()):
        if model.name in MODELS_WITHOUT_ARTIFACTS:
            continue
        version = model / "1"
        built = version.is_dir() and any(f.name not in ("model.py", "__pycache__") for f in version.iterdir())
        if not built:
            missing.append(model.name)
    return missing


@pytest.fixture(scope="session")
def triton():
    """A tritonserver serving the repository's model_repository/ on free ports, for the whole session."""
    from serving.launcher import TritonServer

    missing = unbuilt_models()
    if missing:
        pytest.fail(
            f"model_repository/ has models without their built artifacts: {', '.join(missing)}. "
            "Run `make models` first.",
            pytrace=False,
        )
    server = TritonServer(
        MODEL_REPOSITORY, config_name=os.environ.get("INTRASCRIBE_TRITON_CONFIG_NAME") or None
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def triton_models():
    """Factory of tritonservers that load only the named models (explicit model control), one per
    distinct set for the whole session: a family's tests do not depend on other families' builds."""
    from serving.launcher import TritonServer

    servers: dict[tuple[str, ...], TritonServer] = {}

    def start(*models: str) -> TritonServer:
        key = tuple(sorted(models))
        if key not in servers:
            missing = [m for m in unbuilt_models() if m in key]
            if missing:
                pytest.fail(
                    f"models not built: {', '.join(missing)}. Run `make models` first.", pytrace=False
                )
            servers[key] = TritonServer(
                MODEL_REPOSITORY,
                models=list(key),
                config_name=os.environ.get("INTRASCRIBE_TRITON_CONFIG_NAME") or None,
            ).start()
        return servers[key]

    yield start
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def triton_vad(triton_models):
    """A tritonserver with just ``vad`` and ``vad_stream``."""
    return triton_models("vad", "vad_stream")


@pytest.fixture(scope="session")
def triton_urls(triton):
    """``TritonPorts`` of the session's server: ``.http_url``/``.grpc_url`` ("127.0.0.1:PORT"), ``.metrics_url``."""
    return triton.ports


# --------------------------------------------------------------------------------------------------
# PostgreSQL


def _admin_connect():
    import psycopg

    urls = (
        [os.environ["INTRASCRIBE_TEST_PG_ADMIN_URL"]]
        if os.environ.get("INTRASCRIBE_TEST_PG_ADMIN_URL")
        else []
    )
    errors = []
    for url in urls or PG_ADMIN_URLS:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5), url
        except psycopg.OperationalError as e:
            errors.append(f"{url}: {str(e).strip()}")
    raise RuntimeError(
        "cannot reach PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it: "
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start):\n  " + "\n  ".join(errors)
    )


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create ``intrascribe_test_<random>``, yield its SQLAlchemy URL, then drop it (WITH (FORCE))."""
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    conn, admin_url = _admin_connect()
    name = TEST_DB_PREFIX + secrets.token_hex(6)
    info = conninfo_to_dict(admin_url)
    user = info.get("user") or conn.info.user
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    try:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` (for psycopg.connect)."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on the local PostgreSQL, dropped at session end."""
    try:
        with temporary_database() as url:
            yield url
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


# --------------------------------------------------------------------------------------------------
# Redis


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("INTRASCRIBE_TEST_REDIS_URL") or REDIS_URL


def delete_keys_with_prefix(client, prefix: str) -> int:
    """Delete every key that starts with ``prefix`` (SCAN + DEL; never FLUSHDB). Returns the count."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    deleted = 0
    batch: list = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted


@contextmanager
def redis_key_prefix(url: str) -> Iterator[str]:
    """Yield a unique ``intrascribe-test:<random>:`` prefix; delete the keys under it on exit."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as e:
        client.close()
        raise RuntimeError(
            f"cannot reach Redis at {url} ({e}); scripts/test.sh starts it with redis-server --daemonize yes ..."
        ) from e
    prefix = f"{REDIS_TEST_NAMESPACE}{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        try:
            delete_keys_with_prefix(client, prefix)
        finally:
            client.close()


@pytest.fixture(scope="session")
def redis_prefix(redis_url) -> Iterator[str]:
    """A key prefix of this session's own; every key under it is deleted at session end."""
    try:
        with redis_key_prefix(redis_url) as prefix:
            yield prefix
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


# --------------------------------------------------------------------------------------------------
# What a run may leave out: tests marked `export` need the export environment (deselect them with
# -m "not export", as `make test-quick` does, rather than letting them skip), and a skip for any
# reason not in tests/skips.py fails the run — green must mean everything that can run here ran.


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("export") is not None and not EXPORT_PYTHON.is_file():
        pytest.fail(
            f"{item.nodeid} needs the export environment ({EXPORT_PYTHON} is missing): run "
            "`make env-export`, or deselect export tests with -m 'not export' (make test-quick)",
            pytrace=False,
        )


_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not is_allowed(reason):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _unexpected_skips:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [
        f"{len(_unexpected_skips)} test(s) skipped for a reason not allowed by tests/skips.py "
        "(install what they need, or make them fail):",
        *(f"  {line}" for line in _unexpected_skips),
    ]
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:  # pragma: no cover - e.g. run with -p no:terminal
            print(line)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
