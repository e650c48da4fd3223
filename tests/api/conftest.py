"""Fixtures for the api tests: settings on a throwaway SQLite file or PostgreSQL database, an app, a
client, users. Postgres databases come from tests.conftest.temporary_database (dropped at the end);
Redis keys live under the session's redis_prefix (deleted at the end)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.core.config import Settings
from api.db.migrate import upgrade
from api.main import create_app
from tests.conftest import temporary_database

JWT_SECRET = "test-secret-" + "x" * 40
TEST_JOB_MODULES = ["tests.api.job_kinds"]  # sleep_chunks


def make_settings(data_dir: Path, **overrides) -> Settings:
    """Settings that never read .env and default to embedded mode with nothing external."""
    base = dict(
        data_dir=data_dir,
        database_url="",
        redis_url="",
        auth_mode="embedded",
        jwt_secret=JWT_SECRET,
        jwt_issuer="",
        blob_backend="local",
        cors_origins=[],
        operator_token="",
        operator_endpoints_public=False,
        triton_http_url="",
        triton_models=[],
        llm_health_url="",
        llm_config=Path(__file__).with_name("llm_none.yaml"),  # no model: none on 8091 is asked
        supabase_url="",
        supabase_jwks_url="",
        queue_backend="sqlite",
        job_lease_seconds=30,
        job_heartbeat_seconds=10,
        extra_job_modules=TEST_JOB_MODULES,
        # the suite registers and logs in from 127.0.0.1 many times: per-address limits out of the
        # way (tests/api/test_hardening.py sets tight ones); failed logins keep the real tiers
        login_attempt_limits="100000/minute",
        register_limits="100000/minute",
    )
    base.update(overrides)
    return Settings(_env_file=None, **base)


@pytest.fixture(scope="session")
def api_pg_url() -> Iterator[str]:
    """A PostgreSQL database of these tests, migrated to head, shared by the session."""
    with temporary_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request, tmp_path) -> str:
    """Both databases: a fresh migrated SQLite file, or the shared migrated Postgres database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/api.db"
        upgrade(url)
        return url
    return request.getfixturevalue("api_pg_url")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/api.db"
    upgrade(url)
    return url


@pytest.fixture
def settings(tmp_path, sqlite_url) -> Settings:
    return make_settings(tmp_path, database_url=sqlite_url)


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def register(client: TestClient, email: str | None = None, password: str = "correct horse battery") -> dict:
    """Register a user; returns {"id", "email", "token", "headers"}."""
    email = email or f"user-{secrets.token_hex(4)}@example.com"
    r = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    body = r.json()
    token = body["access_token"]
    return {
        "id": uuid.UUID(body["user"]["id"]),
        "email": email,
        "token": token,
        "headers": {"Authorization": f"Bearer {token}"},
    }


@pytest.fixture
def user_a(client) -> dict:
    return register(client)


@pytest.fixture
def user_b(client) -> dict:
    return register(client)


class LoopbackServer:
    """The app under uvicorn on a loopback port, in a thread of this process (as deployed: one
    lifespan, real HTTP; schemathesis' ASGI transport would start and stop the app per request)."""

    def __init__(self, app):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
