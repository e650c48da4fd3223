"""Live data is seen by every process of a deployment: an api in a uvicorn subprocess takes the
agent's writes; this process (a second api, and a worker-style reader of the store) sees them, as
JSON and over SSE. The embedded default (the SQLite database) and Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.context import AppContext
from api.main import create_app
from tests.api.conftest import JWT_SECRET, make_settings, register
from tests.api.live_helpers import LIVE_SETTINGS, LIVEKIT_KEY, LIVEKIT_SECRET, job_token, room_of
from tests.api.test_jobs import _iter_sse

pytestmark = pytest.mark.slow  # an api subprocess per backend

REPO = Path(__file__).resolve().parents[2]
RT = "/api/v1/realtime/sessions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["sqlite", "redis"])
def deployment(request, tmp_path, sqlite_url, redis_url, redis_prefix):
    """(api subprocess base URL, settings of this process' api over the same stores)."""
    prefix = f"{redis_prefix}livep-{uuid.uuid4().hex[:6]}:"
    redis = redis_url if request.param == "redis" else ""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATA_DIR": str(tmp_path / "data-sub"),
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": redis,
        "REDIS_PREFIX": prefix,
        "QUEUE_BACKEND": "sqlite",
        "JWT_SECRET": JWT_SECRET,
        "JWT_ISSUER": "",
        "LIVEKIT_URL": LIVE_SETTINGS["livekit_url"],
        "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
        "TRITON_HTTP_URL": "",
        "TRITON_MODELS": "",
        "LLM_HEALTH_URL": "",
        "LOGIN_ATTEMPT_LIMITS": "100000/minute",
        "REGISTER_LIMITS": "100000/minute",
    }
    log = open(tmp_path / "api-sub.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "api subprocess did not start:\n" + (tmp_path / "api-sub.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        settings = make_settings(
            tmp_path / "data-here",
            database_url=sqlite_url,
            redis_url=redis,
            redis_prefix=prefix,
            sse_max_stream_seconds=5.0,
            **LIVE_SETTINGS,
        )
        yield base, settings
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_writes_in_one_api_process_are_read_in_another(deployment):
    base, settings = deployment
    with httpx.Client(base_url=base, timeout=30) as sub:
        user = register(sub)
        details = sub.post("/api/v1/livekit/connection-details", json={}, headers=user["headers"])
        assert details.status_code == 200, details.text
        sid = details.json()["sessionId"]
        r = sub.post("/api/v1/agent/token", headers={"Authorization": f"Bearer {job_token(room_of(sid))}"})
        assert r.status_code == 200, r.text
        agent = {"Authorization": f"Bearer {r.json()['access_token']}"}

        def write(segment_id: str, start: float, text: str, final: bool) -> None:
            body = {
                "segments": [
                    {
                        "segment_id": segment_id,
                        "speaker": "u-alice",
                        "speaker_name": "Alice",
                        "start_time": start,
                        "end_time": start + 1.0,
                        "text": text,
                        "is_final": final,
                    }
                ]
            }
            w = sub.post(f"{RT}/{sid}/segments", json=body, headers=agent)
            assert w.status_code == 200, w.text

        write("a", 0.0, "hello", False)
        assert sub.patch(f"{RT}/{sid}/status", json={"recording": True}, headers=agent).status_code == 200

        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as here:
            t = here.get(f"{RT}/{sid}/transcription", headers=user["headers"]).json()
            assert [(s["segment_id"], s["text"]) for s in t["segments"]] == [("a", "hello")]
            assert here.get(f"{RT}/{sid}/status", headers=user["headers"]).json()["recording"] is True

            # SSE here, writes there
            events: list[dict] = []

            def writer() -> None:
                time.sleep(0.5)
                write("a", 0.0, "Hello.", True)
                write("b", 1.0, "Bye.", True)

            thread = threading.Thread(target=writer)
            with here.stream("GET", f"{RT}/{sid}/events", headers=user["headers"]) as stream:
                for event in _iter_sse(stream):
                    events.append(event)
                    if len(events) == 1:
                        thread.start()
                    if len(events) == 3:
                        break
            thread.join()
            assert [(e["event"], e["data"].get("text")) for e in events[1:]] == [
                ("segment", "Hello."),
                ("segment", "Bye."),
            ]
        # what a worker that finalizes sees: the store built from the same settings, no api around it
        ctx = AppContext.from_settings(settings)
        try:
            assert [s["text"] for s in ctx.live.segments(uuid.UUID(sid))] == ["Hello.", "Bye."]
        finally:
            ctx.close()
