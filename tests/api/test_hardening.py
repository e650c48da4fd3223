"""Regression tests for issue 11's findings: inputs that gave 500s, bodies and uploads that were
read whole, brute force, SSE, stored JSON, and the smaller doors. Real app, real databases."""

from __future__ import annotations

import os
import socket
import stat
import time
import uuid

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import text

from api.core.config import Settings
from api.db.session import Database
from api.main import create_app
from tests.api.conftest import JWT_SECRET, LoopbackServer, make_settings, register
from tests.api.test_sessions import wav_bytes

S = "/api/v1/sessions/"


@pytest.fixture
def pg_client(tmp_path, api_pg_url):
    with TestClient(
        create_app(make_settings(tmp_path, database_url=api_pg_url)), raise_server_exceptions=False
    ) as c:
        yield c


# ------------------------------------------------------------------------- inputs that were 500s
@pytest.mark.parametrize(
    "body",
    [
        {"tags": None},
        {"metadata": None},
        {"status": None},
        {"language": None},
        {"duration_seconds": "Infinity"},
        {"started_at": "2026-01-01T10:00:00"},  # no timezone
        {"ended_at": "9999-12-31T23:59:59-05:00"},  # past year 9999 in UTC
        {"started_at": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
        {"title": "nul\u0000byte"},
        {"metadata": {"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}},
        {"metadata": {"big": "x" * 20000}},
        {"tags": ["x" * 100]},
    ],
)
def test_bad_session_updates_are_422_and_nothing_is_stored(pg_client, body):
    user = register(pg_client)
    created = pg_client.post(S, json={"title": "t", "tags": ["a"]}, headers=user["headers"]).json()
    for method in ("PATCH", "PUT"):
        raw = httpx.Request(method, "http://x", json=body).content.replace(b'"Infinity"', b"Infinity")
        r = pg_client.request(
            method,
            f"{S}{created['id']}",
            content=raw,
            headers={**user["headers"], "Content-Type": "application/json"},
        )
        assert r.status_code == 422, r.text
    assert pg_client.get(f"{S}{created['id']}", headers=user["headers"]).json() == created
    assert pg_client.get(S, headers=user["headers"]).status_code == 200


@pytest.mark.parametrize("body", [{"default_language": None}, {"auto_summary": None}, {"x": "y" * 9000}])
def test_bad_preferences_are_422(client, user_a, body):
    r = client.put("/api/v1/users/preferences", json=body, headers=user_a["headers"])
    assert r.status_code == 422, r.text
    assert client.get("/api/v1/users/profile", headers=user_a["headers"]).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"offset": 2**63},
        {"created_after": "2026-01-01T00:00:00"},
        {"created_before": "9999-12-31T23:59:59-05:00"},
        {"tag": "a\u0000"},
    ],
)
def test_bad_list_queries_are_422(pg_client, query):
    user = register(pg_client)
    assert pg_client.get(S, params=query, headers=user["headers"]).status_code == 422
    if "offset" in query:
        assert pg_client.get("/api/v1/jobs", params=query, headers=user["headers"]).status_code == 422


def test_stored_odd_session_never_breaks_its_owners_list(tmp_path, api_pg_url, pg_client):
    """Rows written before these checks (or by hand) read back leniently."""
    user = register(pg_client)
    sid = pg_client.post(S, json={"title": "odd"}, headers=user["headers"]).json()["id"]
    db = Database(api_pg_url)
    with db.session() as s:
        s.execute(
            text(
                "UPDATE recording_sessions SET metadata = 'null'::jsonb, duration_seconds = 'Infinity', "
                "tags = '{}' WHERE id = :id"
            ),
            {"id": sid},
        )
    db.dispose()
    listed = pg_client.get(S, headers=user["headers"])
    assert listed.status_code == 200, listed.text
    one = pg_client.get(f"{S}{sid}", headers=user["headers"]).json()
    assert one["metadata"] == {} and one["duration_seconds"] is None and one["tags"] == []


def test_tag_filter_runs_in_sql_on_both_databases(any_db_url, tmp_path):
    with TestClient(create_app(make_settings(tmp_path, database_url=any_db_url))) as c:
        user = register(c)
        for tags in (["a", "b"], ["b"], []):
            c.post(S, json={"tags": tags}, headers=user["headers"])
        r = c.get(S, params={"tag": "b", "limit": 1}, headers=user["headers"])
        assert r.headers["X-Total-Count"] == "2" and len(r.json()) == 1
        assert c.get(S, params={"tag": "a"}, headers=user["headers"]).headers["X-Total-Count"] == "1"


def test_sse_last_event_id_out_of_range_and_finished_job_ends(client, app, user_a):
    from api.jobs.store import JobStore
    from api.models import JobStatus

    ctx = app.state.ctx
    with ctx.db.session() as s:
        job = JobStore.create(s, "sleep_chunks", {}, user_id=user_a["id"])
        s.flush()
        JobStore.request_cancel(s, job.id)
        job_id = job.id
    with ctx.db.session() as s:
        assert ctx.jobs.last_event_id(s, job_id) >= 0
    for last in ("1e20", "99999999999999999999999", "-5", "12"):
        started = time.monotonic()
        with client.stream(
            "GET", f"/api/v1/jobs/{job_id}/events", headers={**user_a["headers"], "Last-Event-ID": last}
        ) as r:
            assert r.status_code == 200
            body = b"".join(r.iter_bytes())
        assert time.monotonic() - started < 5, f"stream of a finished job did not end (Last-Event-ID {last})"
        assert JobStatus.cancelled.value.encode() in body or last == "12"


def test_sse_streams_per_user_are_capped(tmp_path, sqlite_url):
    app = create_app(make_settings(tmp_path, database_url=sqlite_url, sse_max_streams_per_user=1))
    from api.jobs.store import JobStore

    with LoopbackServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        user = register(c)
        with app.state.ctx.db.session() as s:
            job_id = JobStore.create(s, "sleep_chunks", {}, user_id=user["id"]).id
        with c.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=user["headers"]) as first:
            assert first.status_code == 200
            second = c.get(f"/api/v1/jobs/{job_id}/events", headers=user["headers"])
            assert second.status_code == 429 and second.headers["Retry-After"]


# ------------------------------------------------------------------------- bodies and uploads
def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _raw_post(port: int, path: str, headers: dict[str, str], chunks, chunked: bool) -> tuple[int, int]:
    """POST with a socket (client memory stays flat); returns (status, bytes sent before it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    sock.sendall((head + "\r\n").encode())
    sent = 0
    try:
        for chunk in chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = b""
    try:
        while b"\r\n" not in response:
            data = sock.recv(4096)
            if not data:
                break
            response += data
    except ConnectionResetError:
        pass
    sock.close()
    return int(response.split(b" ", 2)[1]), sent


def test_oversized_json_body_is_refused_without_reading_it(tmp_path, sqlite_url):
    app = create_app(make_settings(tmp_path, database_url=sqlite_url))
    block = b"x" * (1024 * 1024)
    with LoopbackServer(app) as server:
        before = _rss_kib()
        # declared: refused on the header, nothing read
        status, _ = _raw_post(
            server.port,
            "/api/v1/auth/register",
            {"Content-Type": "application/json", "Content-Length": str(300 * 1024**2)},
            iter([block]),
            chunked=False,
        )
        assert status == 413
        # undeclared (chunked): refused once the count passes 1 MiB; we offer 64 MiB
        status, sent = _raw_post(
            server.port,
            "/api/v1/auth/register",
            {"Content-Type": "application/json"},
            (block for _ in range(64)),
            True,
        )
        assert status == 413
        grown_mib = (_rss_kib() - before) / 1024
    assert grown_mib < 8, f"server memory grew {grown_mib:.1f} MiB for a refused body"


def _blob_files(settings: Settings) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(settings.resolved_blob_dir) for f in files]


def test_upload_over_limit_or_wrong_scope_is_refused_before_disk(tmp_path, sqlite_url):
    settings = make_settings(tmp_path, database_url=sqlite_url, max_upload_bytes=64 * 1024)
    app = create_app(settings)
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        user = register(c)
        sid = c.post(S, json={}, headers=user["headers"]).json()["id"]
        key = c.post(
            "/api/v1/api-keys", json={"name": "ro", "scopes": ["sessions:read"]}, headers=user["headers"]
        ).json()["key"]
        url = f"{S}{sid}/audio_files"
        files = {"audio_file": ("a.wav", b"\0" * (200 * 1024), "audio/wav")}
        small = {"audio_file": ("a.wav", b"\0" * 1024, "audio/wav")}
        assert c.post(url, files=small, headers={"X-API-Key": key}).status_code == 403
        assert c.post(url, files=files, headers={"X-API-Key": key}).status_code == 413  # by its length
        assert c.post(url, files=files, headers=user["headers"]).status_code == 413  # Content-Length
        boundary = "b0undary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio_file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        status, _ = _raw_post(  # chunked, no length: the blob store's byte cap stops it
            server.port,
            url,
            {**user["headers"], "Content-Type": f"multipart/form-data; boundary={boundary}"},
            iter([head, *(b"\0" * 16384 for _ in range(16)), f"\r\n--{boundary}--\r\n".encode()]),
            chunked=True,
        )
        assert status == 413
        assert _blob_files(settings) == []
        audio = wav_bytes(0.2)
        ok = c.post(url, files={"audio_file": ("a.wav", audio, "text/html")}, headers=user["headers"])
        assert ok.status_code == 201, ok.text
        download = c.get(f"/api/v1/audio-files/{ok.json()['id']}/download", headers=user["headers"])
        assert download.headers["content-type"] == "application/octet-stream"
        assert download.headers["x-content-type-options"] == "nosniff"
        assert download.content == audio


# ------------------------------------------------------------------------- brute force
def test_login_backs_off_after_ten_failures_then_lets_the_right_user_in(tmp_path, sqlite_url):
    app = create_app(
        make_settings(tmp_path, database_url=sqlite_url, login_failure_limits="10/30 seconds;1000/day")
    )
    with TestClient(app) as c:
        user = register(c, password="correct horse battery")
        bad = {"email": user["email"], "password": "wrong horse battery"}
        for _ in range(10):
            assert c.post("/api/v1/auth/login", json=bad).status_code == 401
        refused = c.post("/api/v1/auth/login", json={**bad, "password": "correct horse battery"})
        assert refused.status_code == 429
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 30
        # another account from the same address is not locked by these failures
        other = register(c)
        assert (
            c.post(
                "/api/v1/auth/login", json={"email": other["email"], "password": "correct horse battery"}
            ).status_code
            == 200
        )
        deadline = time.monotonic() + 45
        while True:
            r = c.post("/api/v1/auth/login", json={**bad, "password": "correct horse battery"})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert r.status_code == 200, r.text


def test_login_failures_are_counted_in_redis(tmp_path, sqlite_url, redis_url, redis_prefix):
    """Two api processes (two apps here) share the counts through Redis."""
    kw = dict(
        database_url=sqlite_url,
        redis_url=redis_url,
        redis_prefix=f"{redis_prefix}rl:",
        queue_backend="sqlite",
    )
    one = create_app(make_settings(tmp_path, login_failure_limits="3/minute", **kw))
    two = create_app(make_settings(tmp_path, login_failure_limits="3/minute", **kw))
    with TestClient(one) as a, TestClient(two) as b:
        user = register(a)
        bad = {"email": user["email"], "password": "nope nope nope"}
        for c in (a, b, a):
            assert c.post("/api/v1/auth/login", json=bad).status_code == 401
        assert b.post("/api/v1/auth/login", json=bad).status_code == 429


def test_registration_is_rate_limited_and_weak_passwords_refused(tmp_path, sqlite_url):
    with TestClient(create_app(make_settings(tmp_path, database_url=sqlite_url))) as c:
        weak = c.post("/api/v1/auth/register", json={"email": "w@example.com", "password": " " * 8})
        assert weak.status_code == 422 and "too weak" in weak.text
        assert "input" not in weak.json()["detail"][0]
        short = c.post("/api/v1/auth/register", json={"email": "w@example.com", "password": "hunter2"})
        assert short.status_code == 422 and "hunter2" not in short.text  # no echo of the password
    app = create_app(make_settings(tmp_path, database_url=sqlite_url, register_limits="3/minute"))
    with TestClient(app) as c:
        for i in range(3):
            r = c.post(
                "/api/v1/auth/register",
                json={"email": f"w{i}@example.com", "password": "correct horse battery"},
            )
            assert r.status_code == 201
        r = c.post(
            "/api/v1/auth/register", json={"email": "w9@example.com", "password": "correct horse battery"}
        )
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


# ------------------------------------------------------------------------- smaller doors
def test_cors_wildcard_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        make_settings(tmp_path, cors_origins=["*"])


def test_avatar_url_must_be_http(client, user_a):
    for bad in ("javascript:alert(1)", "data:text/html,x", "file:///etc/passwd"):
        assert (
            client.patch(
                "/api/v1/users/profile", json={"avatar_url": bad}, headers=user_a["headers"]
            ).status_code
            == 422
        )
    ok = client.patch(
        "/api/v1/users/profile", json={"avatar_url": "https://e.example/a.png"}, headers=user_a["headers"]
    )
    assert ok.status_code == 200


def test_api_keys_expire_by_default(client, user_a):
    key = client.post("/api/v1/api-keys", json={"name": "k"}, headers=user_a["headers"]).json()
    assert key["expires_at"] is not None


def test_embedded_tokens_need_our_issuer_and_a_bounded_lifetime(client, user_a):
    now = int(time.time())
    base = {"sub": str(user_a["id"]), "aud": "authenticated", "iat": now, "exp": now + 600}
    for claims in (
        {**base, "iss": "someone-else"},
        {**base},  # no issuer
        {**base, "iss": "intrascribe", "exp": now + 400 * 24 * 3600},  # a year-long token
    ):
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        assert (
            client.get("/api/v1/users/profile", headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )
    token = jwt.encode({**base, "iss": "intrascribe"}, JWT_SECRET, algorithm="HS256")
    assert (
        client.get("/api/v1/users/profile", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )


def test_generated_secret_and_data_dir_are_private(tmp_path, sqlite_url):
    data = tmp_path / "data"
    settings = make_settings(data, database_url=sqlite_url, jwt_secret="")
    with TestClient(create_app(settings)):
        pass
    assert stat.S_IMODE((data / "jwt_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(settings.resolved_blob_dir.stat().st_mode) & 0o077 == 0


def test_openapi_states_the_error_statuses(app):
    doc = app.openapi()
    listed = doc["paths"]["/api/v1/sessions/"]["get"]["responses"]
    assert {"401", "404", "413", "422"} <= set(listed)
    assert {"409", "429", "503"} <= set(doc["paths"]["/api/v1/auth/register"]["post"]["responses"])
    tags = doc["components"]["schemas"]["SessionCreate"]["properties"]["tags"]
    assert tags["maxItems"] == 50 and tags["items"]["maxLength"] == 64
    _ = uuid  # (ids in paths are format: uuid, as FastAPI states them)
