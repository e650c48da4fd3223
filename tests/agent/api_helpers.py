"""The real api for the agent's api-client and recorder tests: the app under uvicorn on a loopback
port that can be stopped and started again on the same port (an api outage), a registered user, a
live session created the browser's way (``POST /api/v1/livekit/connection-details``) and the job
token LiveKit would give the agent for its room (tests.api.live_helpers)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from api.core.config import Settings
from api.db.migrate import upgrade
from api.main import create_app
from tests.api.conftest import make_settings
from tests.api.live_helpers import LIVE_SETTINGS, job_token, room_of


def live_api_settings(tmp_path: Path, **overrides) -> Settings:
    """Embedded-mode settings on a fresh migrated SQLite file, with live sessions on."""
    url = f"sqlite:///{tmp_path}/api.db"
    upgrade(url)
    return make_settings(tmp_path, database_url=url, **{**LIVE_SETTINGS, **overrides})


class RestartableApi:
    """``create_app(settings)`` served by uvicorn in a thread on a fixed loopback port; :meth:`stop`
    and :meth:`start` again (a new app on the same database and port) make an outage."""

    def __init__(self, settings: Settings):
        self.settings = settings
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> RestartableApi:
        config = uvicorn.Config(
            create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=30)
            assert not self.thread.is_alive(), "uvicorn did not stop"
        self.server = self.thread = None

    def __enter__(self) -> RestartableApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class LiveSession:
    """A user's live session on the running api, and its agent's job token."""

    api_url: str
    user_headers: dict[str, str]
    session_id: str
    room: str
    job_token: str

    def get(self, path: str) -> dict:
        r = httpx.get(self.api_url + path, headers=self.user_headers, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def transcription(self) -> list[dict]:
        return self.get(f"/api/v1/realtime/sessions/{self.session_id}/transcription")["segments"]

    def recording(self) -> dict:
        return self.get(f"/api/v1/sessions/{self.session_id}/recording")


def live_session(api_url: str, agent_identity: str = "agent-AJ_test") -> LiveSession:
    """Register a user, open a live session as a browser does, mint the agent's job token."""
    with httpx.Client(base_url=api_url, timeout=60) as c:
        email = f"user-{secrets.token_hex(4)}@example.com"
        r = c.post("/api/v1/auth/register", json={"email": email, "password": "correct horse battery"})
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = c.post("/api/v1/livekit/connection-details", json={"title": "standup"}, headers=headers)
        assert r.status_code == 200, r.text
        sid = r.json()["sessionId"]
    room = room_of(sid)
    assert r.json()["roomName"] == room
    return LiveSession(api_url, headers, sid, room, job_token(room, identity=agent_identity))


class CountingTransport(httpx.AsyncHTTPTransport):
    """Real HTTP, with every request the client sends written down (method, path, body)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sent: list[tuple[str, str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.sent.append((request.method, request.url.path, body))
        return await super().handle_async_request(request)


class FlakyProxyTransport(httpx.AsyncHTTPTransport):
    """Real HTTP behind a proxy that answers the next requests itself with the statuses in
    ``failures`` (a load balancer's 503 during a deploy, a 429 from a rate limiter), and loses the
    api's answers to the next ``lose_answers[method]`` requests (a connection reset after the api
    did the work); the rest reach the api and come back."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.failures: list[int] = []  # statuses still to answer, first first
        self.answered = 0  # requests the api itself answered
        self.lose_answers: dict[str, int] = {}  # method -> how many of the api's answers to lose
        self.lost: list[str] = []  # paths whose answer was lost

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            return httpx.Response(self.failures.pop(0), json={"detail": "proxy says no"}, request=request)
        self.answered += 1
        response = await super().handle_async_request(request)
        if self.lose_answers.get(request.method, 0) > 0:  # the api did it; its answer never arrives
            self.lose_answers[request.method] -= 1
            await response.aread()
            await response.aclose()
            self.lost.append(request.url.path)
            raise httpx.ReadError("connection reset before the answer", request=request)
        return response
