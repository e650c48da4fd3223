"""LiveKit's side of a session's end: the room_finished webhook (verified with livekit-api's
WebhookReceiver; tampered -> 401; valid -> the session is finalized) and a room's status / end
through LiveKit's server API, against a loopback server speaking RoomService's Twirp protocol."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from fastapi.testclient import TestClient
from google.protobuf.json_format import MessageToJson
from livekit.api import AccessToken
from livekit.protocol.models import Room
from livekit.protocol.webhook import WebhookEvent

from api.main import create_app
from tests.api.conftest import make_settings, register
from tests.api.live_helpers import LIVEKIT_KEY, LIVEKIT_SECRET
from tests.api.live_helpers import room_of as room_name
from tests.api.livekit_fake import FakeLiveKit
from tests.api.recording_helpers import chunk_url, chunked, live_settings, speech

WEBHOOK = "/api/v1/livekit/webhook"


def signed(body: str, key: str = LIVEKIT_KEY, secret: str = LIVEKIT_SECRET) -> dict[str, str]:
    """LiveKit's webhook signature: a JWT (iss = API key) whose sha256 claim is the body's SHA-256."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return {
        "Authorization": AccessToken(key, secret).with_sha256(digest).to_jwt(),
        "Content-Type": "application/webhook+json",
    }


def event(kind: str, room: str) -> str:
    return MessageToJson(
        WebhookEvent(event=kind, room=Room(name=room, sid="RM_test"), id="EV_1", created_at=1)
    )


@pytest.fixture
def settings(tmp_path, sqlite_url):
    return make_settings(tmp_path, database_url=sqlite_url, **live_settings())


def _recorded_session(client, user) -> str:
    sid = client.post("/api/v1/sessions/", json={}, headers=user["headers"]).json()["id"]
    for seq, piece in enumerate(chunked(speech("hello everyone", 3.0))):
        assert (
            client.put(chunk_url(sid, "alice", seq), content=piece, headers=user["headers"]).status_code
            == 201
        )
    return sid


def test_valid_room_finished_finalizes(client, user_a):
    sid = _recorded_session(client, user_a)
    body = event("room_finished", room_name(uuid.UUID(sid)))
    r = client.post(WEBHOOK, content=body, headers=signed(body))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "event": "room_finished",
        "room": room_name(uuid.UUID(sid)),
        "session_id": sid,
        "finalizing": True,
    }
    # the finalize ran after the answer (TestClient waits for background tasks)
    listing = client.get(f"/api/v1/sessions/{sid}/recording", headers=user_a["headers"]).json()
    assert listing["finalized"] is True and listing["audio_file_id"]
    assert client.get(f"/api/v1/sessions/{sid}", headers=user_a["headers"]).json()["status"] == "completed"
    # LiveKit retries webhooks: a second delivery changes nothing
    r = client.post(WEBHOOK, content=body, headers=signed(body))
    assert r.status_code == 200
    assert len(client.get(f"/api/v1/sessions/{sid}/transcriptions", headers=user_a["headers"]).json()) == 1


def test_other_events_and_rooms_are_acknowledged_and_ignored(client, user_a):
    sid = _recorded_session(client, user_a)
    for body in (
        event("participant_joined", room_name(uuid.UUID(sid))),
        event("room_finished", "some-other-room"),
        event("room_finished", room_name(uuid.uuid4())),  # no such session
    ):
        r = client.post(WEBHOOK, content=body, headers=signed(body))
        assert r.status_code == 200, r.text
        assert r.json()["finalizing"] is False
    assert (
        client.get(f"/api/v1/sessions/{sid}/recording", headers=user_a["headers"]).json()["finalized"]
        is False
    )


def test_tampered_or_unsigned_webhooks_are_401(client, user_a):
    sid = _recorded_session(client, user_a)
    body = event("room_finished", room_name(uuid.UUID(sid)))
    other = event("room_finished", room_name(uuid.uuid4()))
    attempts = [
        (body, {}),  # unsigned
        (body, signed(other)),  # a valid signature of another body
        (body.replace("RM_test", "RM_evil"), signed(body)),  # the body changed after signing
        (body, signed(body, secret="another-secret-" + "z" * 40)),  # signed with another secret
        (body, signed(body, key="another-key")),  # another key's issuer
        (body, {"Authorization": "Bearer not-a-jwt"}),
    ]
    for content, headers in attempts:
        r = client.post(WEBHOOK, content=content, headers=headers)
        assert r.status_code == 401, (headers, r.text)
    assert (
        client.get(f"/api/v1/sessions/{sid}/recording", headers=user_a["headers"]).json()["finalized"]
        is False
    )
    # signed, but not a webhook event
    junk = "{not json"
    assert client.post(WEBHOOK, content=junk, headers=signed(junk)).status_code == 400


def test_webhook_without_livekit_configured_is_503(tmp_path, sqlite_url):
    with TestClient(
        create_app(make_settings(tmp_path, database_url=sqlite_url)), raise_server_exceptions=False
    ) as c:
        body = event("room_finished", room_name(uuid.uuid4()))
        assert c.post(WEBHOOK, content=body, headers=signed(body)).status_code == 503


# ------------------------------------------------------------------------------ room status / end
def test_room_status_and_end_through_roomservice(tmp_path, sqlite_url):
    with FakeLiveKit(LIVEKIT_KEY, LIVEKIT_SECRET) as lk:
        settings = make_settings(tmp_path, database_url=sqlite_url, **live_settings(livekit_api_url=lk.url))
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            owner, other = register(client), register(client)
            sid = client.post("/api/v1/sessions/", json={}, headers=owner["headers"]).json()["id"]
            room = room_name(uuid.UUID(sid))
            status_url, end_url = f"/api/v1/livekit/rooms/{room}/status", f"/api/v1/livekit/rooms/{room}/end"

            # not open yet
            r = client.get(status_url, headers=owner["headers"])
            assert r.status_code == 200, r.text
            assert r.json()["active"] is False and r.json()["participants"] == []

            lk.open_room(room, [("u-alice", "Alice"), ("agent-1", "Intrascribe")])
            r = client.get(status_url, headers=owner["headers"])
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["active"] is True and body["num_participants"] == 2 and body["session_id"] == sid
            assert [(p["identity"], p["name"], p["state"]) for p in body["participants"]] == [
                ("u-alice", "Alice", "ACTIVE"),
                ("agent-1", "Intrascribe", "ACTIVE"),
            ]
            assert body["created_at"].startswith("2025-12-06")

            # another user's room, a room that is no session's: 404 without asking LiveKit
            calls = len(lk.calls)
            assert client.get(status_url, headers=other["headers"]).status_code == 404
            assert client.post(end_url, headers=other["headers"]).status_code == 404
            assert (
                client.get("/api/v1/livekit/rooms/elsewhere/status", headers=owner["headers"]).status_code
                == 404
            )
            assert (
                client.get("/api/v1/livekit/rooms/bad%20name/status", headers=owner["headers"]).status_code
                == 422
            )
            assert len(lk.calls) == calls
            assert room in lk.rooms

            r = client.post(end_url, headers=owner["headers"])
            assert r.status_code == 200, r.text
            assert r.json() == {"room": room, "session_id": sid, "ended": True}
            assert room not in lk.rooms and lk.calls[-1][0] == "DeleteRoom" and lk.calls[-1][1].room == room
            # ending it again: nothing to end
            r = client.post(end_url, headers=owner["headers"])
            assert r.status_code == 200 and r.json()["ended"] is False


def test_room_routes_without_livekit_are_503_and_unreachable_is_502(tmp_path, sqlite_url):
    with TestClient(
        create_app(make_settings(tmp_path, database_url=sqlite_url)), raise_server_exceptions=False
    ) as c:
        user = register(c)
        sid = c.post("/api/v1/sessions/", json={}, headers=user["headers"]).json()["id"]
        room = room_name(uuid.UUID(sid))
        assert c.get(f"/api/v1/livekit/rooms/{room}/status", headers=user["headers"]).status_code == 503
        assert c.post(f"/api/v1/livekit/rooms/{room}/end", headers=user["headers"]).status_code == 503
    # configured, but nothing listens there
    settings = make_settings(
        tmp_path, database_url=sqlite_url, **live_settings(livekit_api_url="http://127.0.0.1:9")
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        user = register(c)
        sid = c.post("/api/v1/sessions/", json={}, headers=user["headers"]).json()["id"]
        r = c.get(f"/api/v1/livekit/rooms/{room_name(uuid.UUID(sid))}/status", headers=user["headers"])
        assert r.status_code == 502, r.text


def test_webhook_over_real_http_finalizes_after_answering(settings):
    """Under uvicorn (as deployed) the finalize runs after the 200: poll until the session is done."""
    import time

    import httpx

    from tests.api.conftest import LoopbackServer

    with LoopbackServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        user = register(c)
        sid = _recorded_session(c, user)
        body = event("room_finished", room_name(uuid.UUID(sid)))
        r = c.post(WEBHOOK, content=body, headers=signed(body))
        assert r.status_code == 200 and r.json()["finalizing"] is True
        deadline = time.monotonic() + 30
        while not c.get(f"/api/v1/sessions/{sid}/recording", headers=user["headers"]).json()["finalized"]:
            assert time.monotonic() < deadline, "the webhook's finalize did not run"
            time.sleep(0.1)
        assert c.get(f"/api/v1/sessions/{sid}", headers=user["headers"]).json()["status"] == "completed"
