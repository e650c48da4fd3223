"""Error bodies (request id, never exception text) and CORS (none unless configured)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import make_settings, register


def _boom():
    raise RuntimeError("password=hunter2 at /srv/secret/path")


def test_5xx_carries_request_id_not_exception_text(app, client, caplog):
    app.add_api_route("/api/v1/boom", _boom)
    a = register(client)
    r = client.get("/api/v1/boom", headers={**a["headers"], "X-Request-ID": "trace-123"})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error", "request_id": "trace-123"}
    assert r.headers["x-request-id"] == "trace-123"
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert any("trace-123" in rec.getMessage() for rec in caplog.records)  # the log has it, for operators
    generated = client.get("/api/v1/boom", headers=a["headers"]).json()["request_id"]
    assert generated and len(generated) == 32


def test_every_response_has_a_request_id(client):
    r = client.get("/health/live")
    assert len(r.headers["x-request-id"]) == 32
    assert (
        client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
        != "bad id with spaces"
    )
    assert client.get("/api/v1/sessions/").headers["x-request-id"]


def test_no_cors_by_default(client):
    r = client.options(
        "/api/v1/sessions/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_from_settings(tmp_path, sqlite_url):
    app = create_app(
        make_settings(
            tmp_path, database_url=sqlite_url, cors_origins="https://app.example, https://b.example"
        )
    )
    with TestClient(app) as c:
        pre = c.options(
            "/api/v1/sessions/",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://app.example"
        denied = c.options(
            "/api/v1/sessions/",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert denied.headers.get("access-control-allow-origin") is None
        # a 401 still carries CORS headers, so a browser can read it
        r = c.get("/api/v1/sessions/", headers={"Origin": "https://b.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://b.example"
