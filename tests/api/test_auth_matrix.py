"""The auth matrix: every route of the app (walked from app.routes and the OpenAPI document, so a new
route is covered the day it is added) against every bad credential, plus owner scoping.

If this fails for a route you added: it is either missing authentication (every path outside
api.core.auth.PUBLIC_PATHS needs it — that is automatic), or its path parameter is not in OWNED
below (add a resource of user A for it so the "another user's resource" check can run).
"""

from __future__ import annotations

import re
import time
import uuid

import jwt
import pytest
from fastapi.testclient import TestClient

from api.core.auth import LIVE_WRITE_PATHS, OPERATOR_PATHS, PUBLIC_PATHS
from api.crud import transcriptions as tcrud
from api.jobs.store import JobStore
from api.main import create_app
from api.models import RecordingSession
from api.routes.ops import app_routes
from speechlib.transcript import Segment, Transcript
from tests.api.conftest import JWT_SECRET, make_settings, register
from tests.api.live_helpers import LIVE_SETTINGS, agent_headers, job_token, room_of
from tests.api.test_sessions import wav_bytes

OPERATOR_TOKEN = "operator-token-for-tests"
EXPECTED_PUBLIC = {
    "/health",
    "/health/live",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/api/v1/auth/login",
    "/api/v1/auth/register",
    "/api/v1/agent/token",
    "/api/v1/livekit/webhook",
}
# Public for the middleware, but the route authenticates the caller itself (LiveKit job token or
# agent session token): every credential checked below is refused there too.
SELF_AUTHENTICATED = {"/api/v1/agent/token", "/api/v1/livekit/webhook"}  # the webhook: LiveKit's signature
# Live-write paths an agent reads too (the recording's resume listing).
AGENT_READS = {("/api/v1/sessions/{session_id}/recording", "GET")}
PARAM = re.compile(r"{([^}]+)}")
# Request bodies for routes where an empty JSON object is not valid (owner checks need a valid body).
BODIES: dict[tuple[str, str], dict] = {
    ("/api/v1/sessions/{session_id}/audio_files", "POST"): {
        "files": {"audio_file": ("a.wav", b"RIFF", "audio/wav")}
    },
    ("/api/v1/sessions/{session_id}/speakers/rename", "POST"): {
        "json": {"speaker": "SPEAKER_00", "name": "Alice"}
    },
    ("/api/v1/sessions/{session_id}/summaries", "POST"): {"json": {"summary": "an edited summary"}},
    ("/api/v1/sessions/{session_id}/transcription", "PATCH"): {
        "json": {"segments": [{"index": 1, "text": "edited"}]}
    },
    ("/api/v1/sessions/{session_id}/transcription", "PUT"): {
        "json": {"segments": [{"start_time": 0.0, "end_time": 1.0, "text": "edited"}]}
    },
    ("/api/v1/realtime/sessions/{session_id}/segments", "POST"): {
        "json": {"segments": [{"segment_id": "s1", "speaker": "alice", "start_time": 0.0, "end_time": 1.0}]}
    },
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    from api.db.migrate import upgrade

    url = f"sqlite:///{tmp}/m.db"
    upgrade(url)
    app = create_app(make_settings(tmp, database_url=url, operator_token=OPERATOR_TOKEN, **LIVE_SETTINGS))
    with TestClient(app, raise_server_exceptions=False) as client:
        a, b = register(client), register(client)
        ctx = app.state.ctx
        session = client.post("/api/v1/sessions/", json={}, headers=a["headers"]).json()
        audio = client.post(
            f"/api/v1/sessions/{session['id']}/audio_files",
            files={"audio_file": ("a.wav", wav_bytes(0.2), "audio/wav")},
            headers=a["headers"],
        ).json()
        with ctx.db.session() as s:
            job_id = JobStore.create(s, "sleep_chunks", {}, user_id=a["id"]).id
            transcription_id = tcrud.save_transcription(
                s,
                session=s.get(RecordingSession, uuid.UUID(session["id"])),
                transcript=Transcript.from_segments([Segment(1, 0.0, 1.0, "hello", "SPEAKER_00", "en")]),
                source="batch",
            ).id
        template = client.post(
            "/api/v1/templates/",
            json={"name": "mine", "template_content": "## Notes"},
            headers=a["headers"],
        ).json()
        key = client.post("/api/v1/api-keys", json={"name": "k"}, headers=a["headers"]).json()
        revoked = client.post("/api/v1/api-keys", json={"name": "revoked"}, headers=a["headers"]).json()
        client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=a["headers"])
        owned = {
            "session_id": session["id"],
            "job_id": str(job_id),
            "task_id": str(job_id),
            "key_id": key["id"],
            "file_id": audio["id"],
            "transcription_id": str(transcription_id),
            "template_id": template["id"],
            "participant": "alice",
            "seq": "0",
            "room": room_of(session["id"]),
        }
        # user B's agent: a valid agent session token, scoped to a session that is B's, not A's
        b_session = client.post("/api/v1/sessions/", json={}, headers=b["headers"]).json()
        agent_b = agent_headers(client, b_session["id"])["Authorization"].removeprefix("Bearer ")
        yield {
            "app": app,
            "client": client,
            "a": a,
            "b": b,
            "owned": owned,
            "revoked_key": revoked["key"],
            "agent_b": agent_b,
        }


def routes(app) -> list[tuple[str, str]]:
    found = {(path, method) for path, methods in app_routes(app) for method in methods}
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            found.add((path, method.upper()))
    return sorted(found)


def bad_tokens(a: dict, revoked_key: str) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": str(a["id"]),
        "aud": "authenticated",
        "role": "authenticated",
        "email": a["email"],
        "iat": now,
        "exp": now + 600,
    }
    return {
        "alg_none": jwt.encode(claims, None, algorithm="none"),
        "wrong_signature": jwt.encode(claims, "another-secret-" * 4, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": now - 60}, JWT_SECRET, algorithm="HS256"),
        "wrong_audience": jwt.encode({**claims, "aud": "anon"}, JWT_SECRET, algorithm="HS256"),
        "unknown_user": jwt.encode({**claims, "sub": str(uuid.uuid4())}, JWT_SECRET, algorithm="HS256"),
        "revoked_api_key": revoked_key,
        "garbage": "not.a.token",
        # LiveKit tokens are not api credentials: a participant's and an agent's job token
        "livekit_participant": job_token(room_of(uuid.uuid4()), kind=None, agent_grant=False),
        "livekit_job": job_token("a-room-that-is-no-session"),
    }


def fill(path: str, values: dict[str, str] | None = None) -> str:
    return PARAM.sub(lambda m: (values or {}).get(m.group(1), str(uuid.uuid4())), path)


def test_public_set_is_explicit():
    assert set(PUBLIC_PATHS) == EXPECTED_PUBLIC
    assert set(OPERATOR_PATHS) == {"/metrics", "/info"}


def test_every_other_route_rejects_bad_credentials(world):
    client, a = world["client"], world["a"]
    tokens = bad_tokens(a, world["revoked_key"])
    # an agent session token for another session (B's) is refused on every path but its own
    # session's live-write paths (the random ids filled in below are not B's session)
    tokens["agent_other_session"] = world["agent_b"]
    checked = 0
    for path, method in routes(world["app"]):
        url = fill(path)
        if path in SELF_AUTHENTICATED:
            for name, token in {**tokens, "user": a["token"]}.items():
                if name == "agent_other_session":
                    continue  # a renewal of its own token: tests/api/test_live.py
                r = client.request(method, url, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 401, f"{method} {path} with {name} -> {r.status_code}"
            continue
        if path in EXPECTED_PUBLIC:
            assert client.request(method, url).status_code != 401, (method, path)
            continue
        r = client.request(method, url)
        assert r.status_code == 401, f"{method} {path} without credentials -> {r.status_code}"
        assert "request_id" in r.json()
        for name, token in tokens.items():
            r = client.request(method, url, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, f"{method} {path} with {name} -> {r.status_code}"
        # auth before validation: a forged token with a malformed body is 401, not 422
        r = client.request(
            method,
            url,
            content=b"{not json",
            headers={
                "Authorization": f"Bearer {tokens['wrong_signature']}",
                "Content-Type": "application/json",
            },
        )
        assert r.status_code == 401, f"{method} {path} forged token + bad body -> {r.status_code}"
        checked += 1
    assert checked >= 20


def test_agent_token_only_on_its_sessions_live_write_paths(world):
    """B's agent session token, with B's session id filled in: accepted (not 401) exactly on the
    live-write paths, 401 on every other route."""
    client, owned = world["client"], world["owned"]
    b_session = [s["id"] for s in client.get("/api/v1/sessions/", headers=world["b"]["headers"]).json()]
    assert len(b_session) == 1
    headers = {"Authorization": f"Bearer {world['agent_b']}"}
    live_write = 0
    for path, method in routes(world["app"]):
        if path in EXPECTED_PUBLIC:
            continue
        url = fill(path, {**owned, "session_id": b_session[0]})
        body = BODIES.get((path, method), {"json": {}})
        r = client.request(method, url, headers=headers, **body)
        writes = method in ("POST", "PUT", "PATCH") or (path, method) in AGENT_READS
        if any(p.match(url) for p in LIVE_WRITE_PATHS) and writes:
            assert r.status_code not in (401, 403, 404, 500), (
                f"{method} {path} as B's agent -> {r.status_code}"
            )
            live_write += 1
        else:
            assert r.status_code in (401, 403), f"{method} {path} as B's agent -> {r.status_code}"
    assert live_write >= 2


def test_operator_endpoints_take_the_operator_token_only(world):
    client, a = world["client"], world["a"]
    for path in OPERATOR_PATHS:
        assert client.get(path).status_code == 401
        assert client.get(path, headers=a["headers"]).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).status_code == 200


def test_another_users_resource_is_404(world):
    client, b, owned = world["client"], world["b"], world["owned"]
    scoped = 0
    for path, method in routes(world["app"]):
        params = PARAM.findall(path)
        if not params or path in EXPECTED_PUBLIC:
            continue
        missing = [p for p in params if p not in owned]
        assert not missing, f"{method} {path}: add a resource of user A for {missing} to OWNED"
        body = BODIES.get((path, method), {"json": {}})
        r = client.request(method, fill(path, owned), headers=b["headers"], **body)
        assert r.status_code != 422, f"{method} {path}: add a valid request body to BODIES ({r.text})"
        assert r.status_code == 404, f"{method} {path} as another user -> {r.status_code}"
        scoped += 1
    assert scoped >= 10


def test_valid_credentials_pass_on_unparameterized_routes(world):
    client, b = world["client"], world["b"]
    for path, method in routes(world["app"]):
        if PARAM.search(path) or path in EXPECTED_PUBLIC or path in OPERATOR_PATHS:
            continue
        r = client.request(method, path, headers=b["headers"])
        assert r.status_code not in (401, 500), (method, path, r.status_code)


def test_route_walk_sees_every_openapi_path(world):
    walked = {path for path, _ in app_routes(world["app"])}
    assert set(world["app"].openapi()["paths"]) <= walked
