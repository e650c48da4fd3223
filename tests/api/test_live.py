"""Live sessions, part A: LiveKit connection details, agent authentication, live segments and status,
realtime reads and SSE — on the embedded default (database store: SQLite and PostgreSQL) and on Redis.
LiveKit itself is not needed: its tokens are minted with livekit-api's own AccessToken, with the
claims its server gives an agent's job (tests/api/live_helpers.py)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from livekit.api import TokenVerifier

from api.core.security import agent_signing_key
from api.main import create_app
from tests.api.conftest import JWT_SECRET, make_settings, register
from tests.api.live_helpers import (
    LIVE_SETTINGS,
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    agent_headers,
    job_token,
    room_of,
)
from tests.api.test_jobs import _iter_sse

CD = "/api/v1/livekit/connection-details"
AGENT = "/api/v1/agent/token"
RT = "/api/v1/realtime/sessions"


def seg(segment_id: str, start: float, text: str, *, final: bool, speaker: str = "u-alice", **extra) -> dict:
    return {
        "segment_id": segment_id,
        "speaker": speaker,
        "speaker_name": "Alice",
        "start_time": start,
        "end_time": start + 1.5,
        "text": text,
        "language": "en",
        "is_final": final,
        **extra,
    }


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def live(request, tmp_path, sqlite_url, redis_url, redis_prefix):
    """(client, settings) with the live store of each backend: the database (the embedded default)
    on SQLite or PostgreSQL, or Redis."""
    overrides: dict = dict(LIVE_SETTINGS, live_max_segments=5, sse_max_stream_seconds=3.0)
    if request.param == "sqlite":
        overrides["database_url"] = sqlite_url
    elif request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("api_pg_url")
    else:
        overrides.update(
            database_url=sqlite_url,
            redis_url=redis_url,
            redis_prefix=f"{redis_prefix}live-{uuid.uuid4().hex[:6]}:",
        )
        overrides["queue_backend"] = "sqlite"
    settings = make_settings(tmp_path, **overrides)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, settings


@pytest.fixture
def plain(tmp_path, sqlite_url):
    """LiveKit settings, SQLite, the database live store: for the token tests."""
    settings = make_settings(tmp_path, database_url=sqlite_url, **LIVE_SETTINGS)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, settings


def new_live_session(client, user) -> dict:
    r = client.post(CD, json={"title": "standup"}, headers=user["headers"])
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------- connection details
def test_connection_details_token_grants_the_room_and_dispatches_the_agent(plain):
    client, settings = plain
    a = register(client)
    body = new_live_session(client, a)
    sid = body["sessionId"]
    assert set(body) == {
        "serverUrl",
        "roomName",
        "participantName",
        "participantIdentity",
        "participantToken",
        "sessionId",
    }
    assert body["serverUrl"] == LIVE_SETTINGS["livekit_url"]
    assert body["roomName"] == room_of(sid)
    session = client.get(f"/api/v1/sessions/{sid}", headers=a["headers"]).json()
    assert session["title"] == "standup" and session["status"] == "recording"

    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(body["participantToken"])
    assert claims.identity == body["participantIdentity"] and claims.name == body["participantName"]
    assert claims.video.room_join is True and claims.video.room == room_of(sid)
    for grant in ("room_create", "room_list", "room_record", "room_admin", "agent", "hidden", "recorder"):
        assert getattr(claims.video, grant) is None, grant
    assert claims.kind == "" and claims.metadata == ""
    dispatches = list(claims.room_config.agents)
    assert len(dispatches) == 1
    assert dispatches[0].agent_name == LIVE_SETTINGS["livekit_agent_name"]
    assert json.loads(dispatches[0].metadata) == {"session_id": sid}  # only the session id
    raw = jwt.decode(body["participantToken"], options={"verify_signature": False})
    assert set(raw) == {"sub", "iss", "nbf", "exp", "name", "video", "roomConfig"}
    assert raw["exp"] - raw["nbf"] == settings.livekit_token_ttl_seconds
    assert set(raw["roomConfig"]) == {"agents"}
    # another participant joins the same meeting: same room, another identity
    again = client.post(CD, json={"sessionId": sid, "participantName": "Bob"}, headers=a["headers"]).json()
    assert again["sessionId"] == sid and again["roomName"] == room_of(sid)
    assert again["participantName"] == "Bob" and again["participantIdentity"] != body["participantIdentity"]


def test_connection_details_foreign_or_missing_session_and_unconfigured(plain, tmp_path):
    client, _ = plain
    a, b = register(client), register(client)
    sid = new_live_session(client, a)["sessionId"]
    assert client.post(CD, json={"sessionId": sid}, headers=b["headers"]).status_code == 404
    assert client.post(CD, json={"sessionId": str(uuid.uuid4())}, headers=a["headers"]).status_code == 404
    assert client.post(CD, json={"sessionId": "nope"}, headers=a["headers"]).status_code == 422
    assert (
        client.post(
            CD, content=b"{not json", headers={**a["headers"], "Content-Type": "application/json"}
        ).status_code
        == 422
    )
    client.patch(f"/api/v1/sessions/{sid}", json={"status": "completed"}, headers=a["headers"])
    assert client.post(CD, json={"sessionId": sid}, headers=a["headers"]).status_code == 409

    url = f"sqlite:///{tmp_path}/api.db"
    unconfigured = make_settings(tmp_path / "u", database_url=url)
    with TestClient(create_app(unconfigured), raise_server_exceptions=False) as c2:
        u = register(c2)
        r = c2.post(CD, json={}, headers=u["headers"])
        assert r.status_code == 503 and "LIVEKIT" in r.json()["detail"]
        assert (
            c2.post(AGENT, headers={"Authorization": f"Bearer {job_token(room_of(sid))}"}).status_code == 503
        )


# ------------------------------------------------------------------------------ agent tokens
def test_job_token_exchange_scopes_the_agent_to_its_session(plain):
    client, settings = plain
    a = register(client)
    sid_a = new_live_session(client, a)["sessionId"]
    sid_b = new_live_session(client, a)["sessionId"]  # the same owner's other session
    r = client.post(
        AGENT, headers={"Authorization": f"Bearer {job_token(room_of(sid_a), identity='agent-A')}"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["session_id"] == sid_a and body["room_name"] == room_of(sid_a) and body["identity"] == "agent-A"
    )
    assert body["token_type"] == "bearer" and body["expires_in"] == settings.agent_token_ttl_seconds
    agent = {"Authorization": f"Bearer {body['access_token']}"}

    ok = client.post(
        f"{RT}/{sid_a}/segments", json={"segments": [seg("s1", 0.0, "hi", final=True)]}, headers=agent
    )
    assert ok.status_code == 200, ok.text
    assert client.patch(f"{RT}/{sid_a}/status", json={"recording": True}, headers=agent).status_code == 200
    # session B: refused, whichever live-write path
    assert (
        client.post(
            f"{RT}/{sid_b}/segments", json={"segments": [seg("s1", 0.0, "x", final=True)]}, headers=agent
        ).status_code
        == 401
    )
    assert client.patch(f"{RT}/{sid_b}/status", json={"recording": True}, headers=agent).status_code == 401
    # everything else: refused, its own session's reads included
    for method, path in [
        ("GET", f"{RT}/{sid_a}/transcription"),
        ("GET", f"{RT}/{sid_a}/status"),
        ("GET", f"/api/v1/sessions/{sid_a}"),
        ("DELETE", f"/api/v1/sessions/{sid_a}"),
        ("GET", "/api/v1/sessions/"),
        ("GET", "/api/v1/users/profile"),
        ("POST", CD),
    ]:
        # 403: GET on a live-write path passes authentication, then lacks the readers' scope
        assert client.request(method, path, headers=agent).status_code in (401, 403), (method, path)
    assert client.get(f"/api/v1/sessions/{sid_a}", headers=a["headers"]).status_code == 200  # still there
    # the owner reads what the agent wrote
    t = client.get(f"{RT}/{sid_a}/transcription", headers=a["headers"]).json()
    assert [s["text"] for s in t["segments"]] == ["hi"]


def test_agent_token_renewal(plain):
    client, settings = plain
    a = register(client)
    sid = new_live_session(client, a)["sessionId"]
    first = client.post(
        AGENT, headers={"Authorization": f"Bearer {job_token(room_of(sid), identity='agent-R')}"}
    ).json()
    renewed = client.post(AGENT, headers={"Authorization": f"Bearer {first['access_token']}"})
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()
    assert second["access_token"] != first["access_token"]
    assert second["session_id"] == sid and second["identity"] == "agent-R"
    c1 = jwt.decode(first["access_token"], options={"verify_signature": False})
    c2 = jwt.decode(second["access_token"], options={"verify_signature": False})
    assert c2["auth_time"] == c1["auth_time"] and c2["jti"] != c1["jti"]
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.patch(f"{RT}/{sid}/status", json={"recording": True}, headers=headers).status_code == 200
    # a renewal chain ends MAX_TOKEN_LIFETIME_SECONDS after the job token was first exchanged
    now = int(time.time())
    key = agent_signing_key(LIVEKIT_SECRET)
    stale = {**c2, "iat": now, "exp": now + 60, "auth_time": now - settings.max_token_lifetime_seconds - 10}
    r = client.post(AGENT, headers={"Authorization": f"Bearer {jwt.encode(stale, key, algorithm='HS256')}"})
    assert r.status_code == 401


def test_forged_expired_and_non_agent_tokens_are_refused(plain):
    client, settings = plain
    a = register(client)
    sid = new_live_session(client, a)["sessionId"]
    room = room_of(sid)
    participant = client.post(CD, json={"sessionId": sid}, headers=a["headers"]).json()["participantToken"]
    now = int(time.time())
    agent_claims = {
        "iss": settings.token_issuer,
        "aud": "intrascribe:live-agent",
        "sub": "agent-X",
        "sid": sid,
        "room": room,
        "iat": now,
        "exp": now + 60,
        "auth_time": now,
        "jti": "x",
    }
    key = agent_signing_key(LIVEKIT_SECRET)
    refused = {
        "forged job token": job_token(room, secret="another-livekit-secret-" + "z" * 20),
        "job token of another api key": job_token(room, key="APIotherkey"),
        "expired job token": job_token(room, ttl=timedelta(minutes=-5)),
        "participant token": participant,
        "job token without kind agent": job_token(room, kind=None),
        "job token of a standard participant": job_token(room, kind="standard"),
        "job token without the agent grant": job_token(room, agent_grant=False),
        "job token of a room that is no session": job_token("someone-elses-room"),
        "user access token": a["token"],
        "forged agent token": jwt.encode(agent_claims, "not-the-key-" + "k" * 30, algorithm="HS256"),
        "expired agent token": jwt.encode(
            {**agent_claims, "iat": now - 600, "exp": now - 300}, key, algorithm="HS256"
        ),
        "agent token with alg none": jwt.encode(agent_claims, None, algorithm="none"),
        "garbage": "a.b.c",
    }
    for name, token in refused.items():
        r = client.post(AGENT, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, f"{name} -> {r.status_code} {r.text}"
        seg_r = client.post(
            f"{RT}/{sid}/segments",
            json={"segments": [seg("s1", 0.0, "x", final=True)]},
            headers={"Authorization": f"Bearer {token}"},
        )
        if name != "user access token":  # the owner may write their own session's live data
            assert seg_r.status_code == 401, f"{name} on segments -> {seg_r.status_code}"
    assert client.post(AGENT).status_code == 401
    assert client.post(AGENT, headers={"Authorization": "Basic abc"}).status_code == 401
    # a valid job token whose room names a session that does not exist
    assert (
        client.post(
            AGENT, headers={"Authorization": f"Bearer {job_token(room_of(uuid.uuid4()))}"}
        ).status_code
        == 404
    )
    # a user's token signed with the agent key (aud authenticated) is not an agent token either
    user_claims = jwt.decode(a["token"], JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    r = client.post(
        AGENT, headers={"Authorization": f"Bearer {jwt.encode(user_claims, key, algorithm='HS256')}"}
    )
    assert r.status_code == 401
    # deleting the session ends its agent's token
    agent = agent_headers(client, sid)
    client.delete(f"/api/v1/sessions/{sid}", headers=a["headers"])
    r = client.patch(f"{RT}/{sid}/status", json={"recording": False}, headers=agent)
    assert r.status_code == 401


# ------------------------------------------------------------------------ live data, 3 stores
def test_segments_upsert_status_and_reads(live):
    client, settings = live
    a, b = register(client), register(client)
    sid = new_live_session(client, a)["sessionId"]
    agent = agent_headers(client, sid, identity="agent-L")
    url = f"{RT}/{sid}/segments"

    empty = client.get(f"{RT}/{sid}/transcription", headers=a["headers"]).json()
    assert empty == {"session_id": sid, "segments": [], "segment_count": 0, "revision": 0}
    st = client.get(f"{RT}/{sid}/status", headers=a["headers"]).json()
    assert st["recording"] is False and st["participants"] == [] and st["last_activity"] is None

    r = client.post(url, json={"segments": [seg("b", 2.0, "how are", final=False)]}, headers=agent)
    assert r.status_code == 200 and r.json() == {
        "session_id": sid,
        "accepted": 1,
        "ignored": 0,
        "segment_count": 1,
        "revision": 1,
    }
    r = client.post(
        url,
        json={"segments": [seg("a", 0.5, "Hello.", final=True), seg("b", 2.0, "How are you?", final=True)]},
        headers=agent,
    )
    assert r.json() == {"session_id": sid, "accepted": 2, "ignored": 0, "segment_count": 2, "revision": 3}
    # a late interim never replaces its final; the owner writes too
    r = client.post(url, json={"segments": [seg("b", 2.0, "how", final=False)]}, headers=a["headers"])
    assert r.json()["ignored"] == 1 and r.json()["revision"] == 3
    r = client.post(
        url, json={"segments": [seg("c", 1.0, "Hi", final=False, speaker="u-bob")]}, headers=a["headers"]
    )
    assert r.json()["revision"] == 4

    t = client.get(f"{RT}/{sid}/transcription", headers=a["headers"]).json()
    assert [(s["segment_id"], s["text"], s["is_final"]) for s in t["segments"]] == [
        ("a", "Hello.", True),
        ("c", "Hi", False),
        ("b", "How are you?", True),
    ]
    assert t["segment_count"] == 3 and t["revision"] == 4
    b_seg = t["segments"][2]
    assert b_seg["speaker"] == "u-alice" and b_seg["speaker_name"] == "Alice" and b_seg["language"] == "en"
    assert b_seg["start_time"] == 2.0 and b_seg["end_time"] == 3.5 and b_seg["revision"] == 3

    before = time.time()
    people = [{"identity": "u-alice", "name": "Alice", "joined_at": "2026-12-06T14:00:00Z"}]
    r = client.patch(f"{RT}/{sid}/status", json={"recording": True, "participants": people}, headers=agent)
    assert r.status_code == 200, r.text
    st = client.get(f"{RT}/{sid}/status", headers=a["headers"]).json()
    assert st["session_id"] == sid and st["room_name"] == room_of(sid)
    assert st["recording"] is True and st["segment_count"] == 3 and st["revision"] == 4
    assert [p["identity"] for p in st["participants"]] == ["u-alice"]
    from datetime import datetime

    assert datetime.fromisoformat(st["last_activity"]).timestamp() >= before - 1
    # a partial update keeps the rest
    client.patch(f"{RT}/{sid}/status", json={"recording": False}, headers=agent)
    st = client.get(f"{RT}/{sid}/status", headers=a["headers"]).json()
    assert st["recording"] is False and [p["identity"] for p in st["participants"]] == ["u-alice"]

    # users read only their own sessions' live data
    for path in ("transcription", "status"):
        assert client.get(f"{RT}/{sid}/{path}", headers=b["headers"]).status_code == 404
        assert client.get(f"{RT}/{uuid.uuid4()}/{path}", headers=a["headers"]).status_code == 404
    assert (
        client.post(url, json={"segments": [seg("z", 0, "x", final=True)]}, headers=b["headers"]).status_code
        == 404
    )
    assert client.patch(f"{RT}/{sid}/status", json={}, headers=b["headers"]).status_code == 404
    assert client.get(f"{RT}/{sid}/events", headers=b["headers"]).status_code == 404

    # bounded: LIVE_MAX_SEGMENTS = 5 distinct ids; updates of stored ids still pass
    r = client.post(
        url, json={"segments": [seg(f"n{i}", 5.0 + i, "x", final=True) for i in range(3)]}, headers=agent
    )
    assert r.status_code == 413
    assert client.get(f"{RT}/{sid}/transcription", headers=a["headers"]).json()["segment_count"] == 3
    r = client.post(
        url,
        json={"segments": [seg("n0", 5.0, "x", final=True), seg("n1", 6.0, "y", final=True)]},
        headers=agent,
    )
    assert r.status_code == 200 and r.json()["segment_count"] == 5
    assert (
        client.post(
            url, json={"segments": [seg("c", 1.0, "Hi there", final=True)]}, headers=agent
        ).status_code
        == 200
    )
    assert (
        client.post(url, json={"segments": [seg("n9", 9.0, "z", final=True)]}, headers=agent).status_code
        == 413
    )

    # bad input: 422, never 500
    for bad in (
        {"segments": []},
        {"segments": [seg("bad id", 0, "x", final=True)]},
        {"segments": [seg("x", -1, "x", final=True)]},
        {"segments": [{**seg("x", 5, "x", final=True), "end_time": 1}]},
        {"segments": [{**seg("x", 0, "x", final=True), "unknown": 1}]},
        {"segments": [seg("x", 0, "nul \x00", final=True)]},
        {"segments": [seg("x", 0, "x", final=True)] * 101},
    ):
        assert client.post(url, json=bad, headers=agent).status_code == 422, bad


def test_sse_snapshot_new_and_updated_segments_and_resume(live):
    client, _ = live
    a = register(client)
    sid = new_live_session(client, a)["sessionId"]
    agent = agent_headers(client, sid)
    url = f"{RT}/{sid}/segments"
    client.post(url, json={"segments": [seg("a", 0.0, "one", final=False)]}, headers=agent)
    events = []
    with client.stream("GET", f"{RT}/{sid}/events", headers=a["headers"]) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for event in _iter_sse(r):
            events.append(event)
            if len(events) == 1:  # written while we watch
                client.post(url, json={"segments": [seg("a", 0.0, "One.", final=True)]}, headers=agent)
                client.post(url, json={"segments": [seg("b", 1.0, "two", final=False)]}, headers=agent)
            if len(events) == 3:
                break
    assert events[0]["event"] == "snapshot" and events[0]["id"] == "1"
    assert [s["text"] for s in events[0]["data"]["segments"]] == ["one"]
    assert [(e["event"], e["id"], e["data"]["segment_id"], e["data"]["text"]) for e in events[1:]] == [
        ("segment", "2", "a", "One."),
        ("segment", "3", "b", "two"),
    ]
    # reconnect after id 2: only what changed after it, no snapshot (the stream ends after
    # SSE_MAX_STREAM_SECONDS = 3 s here)
    with client.stream("GET", f"{RT}/{sid}/events", headers={**a["headers"], "Last-Event-ID": "2"}) as r:
        rest = list(_iter_sse(r))
    assert [(e["event"], e["id"], e["data"]["segment_id"]) for e in rest] == [("segment", "3", "b")]
