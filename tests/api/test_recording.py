"""Live recording chunks: PUT /api/v1/sessions/{id}/recording/{participant}/{seq} and
GET /api/v1/sessions/{id}/recording, on SQLite and PostgreSQL, with real Ogg/Opus chunks of speech."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from inference_client.audio import SAMPLE_RATE
from tests.api.conftest import make_settings
from tests.api.live_helpers import agent_headers
from tests.api.recording_helpers import CHUNK_S, chunk_url, chunked, live_settings, ogg_opus, speech
from tests.audio import write_wav

REC = "/api/v1/sessions/{}/recording"


@pytest.fixture
def settings(tmp_path, any_db_url):
    return make_settings(tmp_path, database_url=any_db_url, **live_settings())


@pytest.fixture(scope="module")
def meeting_chunks() -> list[bytes]:
    """Three chunks of one participant: speech, then silence (kept: it is part of the timeline)."""
    x = speech("hello everyone, thank you for joining", 3 * CHUNK_S - 0.5)
    return chunked(x)


def _session(client, user) -> str:
    r = client.post("/api/v1/sessions/", json={"title": "standup"}, headers=user["headers"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_chunks_out_of_order_duplicated_and_resumed(client, user_a, meeting_chunks):
    sid = _session(client, user_a)
    h = user_a["headers"]
    # out of order: 2 first, then 0
    for seq in (2, 0):
        r = client.put(chunk_url(sid, "alice", seq), content=meeting_chunks[seq], headers=h)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["created"] is True
        assert body["sha256"] == hashlib.sha256(meeting_chunks[seq]).hexdigest()
        assert body["start_seconds"] == pytest.approx(body["offset_seconds"] + seq * CHUNK_S)
    assert r.json()["duration_seconds"] == pytest.approx(CHUNK_S, abs=1e-3)
    # the same bytes again: 200, nothing changes
    again = client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[0], headers=h)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    # other bytes for a stored seq: 409
    clash = client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[1], headers=h)
    assert clash.status_code == 409, clash.text
    # a reconnecting uploader asks what is stored: seq 1 is the gap
    listing = client.get(REC.format(sid), headers=h)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["chunk_seconds"] == CHUNK_S and body["finalized"] is False
    (track,) = body["participants"]
    assert track["participant"] == "alice"
    assert track["seqs"] == [0, 2] and track["missing"] == [1] and track["next_seq"] == 3
    # it re-sends what is missing (and, not knowing, a chunk that was already stored)
    assert client.put(chunk_url(sid, "alice", 1), content=meeting_chunks[1], headers=h).status_code == 201
    assert client.put(chunk_url(sid, "alice", 2), content=meeting_chunks[2], headers=h).status_code == 200
    (track,) = client.get(REC.format(sid), headers=h).json()["participants"]
    assert track["seqs"] == [0, 1, 2] and track["missing"] == []
    assert track["recorded_seconds"] == pytest.approx(3 * CHUNK_S - 0.5, abs=2e-3)
    assert track["end_seconds"] == pytest.approx(track["offset_seconds"] + 3 * CHUNK_S - 0.5, abs=2e-3)
    # the session is recording now
    assert client.get(f"/api/v1/sessions/{sid}", headers=h).json()["status"] == "recording"


def test_late_joiner_offset(client, user_a, meeting_chunks):
    sid = _session(client, user_a)
    h = user_a["headers"]
    assert client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[0], headers=h).status_code == 201
    r = client.put(chunk_url(sid, "bob", 0) + "?offset=4.5", content=meeting_chunks[1], headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["offset_seconds"] == 4.5 and r.json()["start_seconds"] == 4.5
    # the offset is fixed by the first chunk: a later one's query does not move it
    r = client.put(chunk_url(sid, "bob", 1) + "?offset=99", content=meeting_chunks[2], headers=h)
    assert r.status_code == 201
    assert r.json()["offset_seconds"] == 4.5 and r.json()["start_seconds"] == 4.5 + CHUNK_S
    tracks = {t["participant"]: t for t in client.get(REC.format(sid), headers=h).json()["participants"]}
    assert tracks["alice"]["offset_seconds"] == 0.0
    assert tracks["bob"]["offset_seconds"] == 4.5


def test_offset_measured_from_arrival(client, user_a, meeting_chunks):
    """Without ``offset`` a joiner's start is measured: arrival - session start - audio it sent."""
    sid = _session(client, user_a)
    h = user_a["headers"]
    assert client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[0], headers=h).status_code == 201
    r = client.put(chunk_url(sid, "carol", 0), content=meeting_chunks[1], headers=h)
    assert r.status_code == 201
    # carol's chunk 0 arrived right after alice's: she started (about) when alice did
    assert 0.0 <= r.json()["offset_seconds"] < 1.0


def test_other_users_session_is_404(client, user_a, user_b, meeting_chunks):
    sid = _session(client, user_a)
    r = client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[0], headers=user_b["headers"])
    assert r.status_code == 404
    assert client.get(REC.format(sid), headers=user_b["headers"]).status_code == 404
    # and nothing was stored for the owner
    assert client.get(REC.format(sid), headers=user_a["headers"]).json()["participants"] == []
    missing = "00000000-0000-4000-8000-000000000000"
    assert (
        client.put(
            chunk_url(missing, "a", 0), content=meeting_chunks[0], headers=user_a["headers"]
        ).status_code
        == 404
    )


def test_bad_chunks_are_refused(client, user_a, tmp_path):
    sid = _session(client, user_a)
    h = user_a["headers"]
    # not audio
    r = client.put(chunk_url(sid, "alice", 0), content=b"this is not audio" * 100, headers=h)
    assert r.status_code == 415, r.text
    assert client.put(chunk_url(sid, "alice", 0), content=b"", headers=h).status_code == 415
    # audio, but not Ogg: a WAV file
    wav = write_wav(tmp_path / "a.wav", speech("hello", 1.0))
    r = client.put(chunk_url(sid, "alice", 0), content=wav.read_bytes(), headers=h)
    assert r.status_code == 415 and "not_ogg" in r.text
    # longer than a chunk may be
    r = client.put(chunk_url(sid, "alice", 0), content=ogg_opus(speech("hello", CHUNK_S + 1.0)), headers=h)
    assert r.status_code == 422 and "chunk_too_long" in r.text
    # bad seq / participant / offset
    ok = ogg_opus(speech("hello", 1.0))
    assert client.put(chunk_url(sid, "alice", -1), content=ok, headers=h).status_code == 422
    assert client.put(chunk_url(sid, "alice", "x"), content=ok, headers=h).status_code == 422
    assert client.put(chunk_url(sid, "a%01b", 0), content=ok, headers=h).status_code == 422
    assert client.put(chunk_url(sid, "alice", 0) + "?offset=-1", content=ok, headers=h).status_code == 422
    # nothing of that was kept
    assert client.get(REC.format(sid), headers=h).json()["participants"] == []


def test_chunk_over_the_byte_limit_is_413(tmp_path, sqlite_url):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from tests.api.conftest import register

    settings = make_settings(
        tmp_path, database_url=sqlite_url, **live_settings(recording_max_chunk_bytes=4096)
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        user = register(client)
        sid = _session(client, user)
        noise = np.random.default_rng(1).uniform(-0.5, 0.5, round(CHUNK_S * SAMPLE_RATE)).astype(np.float32)
        big = ogg_opus(noise)
        assert len(big) > 4096
        r = client.put(chunk_url(sid, "alice", 0), content=big, headers=user["headers"])
        assert r.status_code == 413, r.text
        assert client.get(REC.format(sid), headers=user["headers"]).json()["participants"] == []


def test_the_agent_uploads_lists_and_finalizes_its_own_session_only(client, user_a, meeting_chunks):
    sid, other = _session(client, user_a), _session(client, user_a)
    agent = agent_headers(client, sid)  # a LiveKit job token exchanged for the session's agent token
    r = client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[0], headers=agent)
    assert r.status_code == 201, r.text
    listing = client.get(REC.format(sid), headers=agent)
    assert listing.status_code == 200 and listing.json()["participants"][0]["seqs"] == [0]
    # another session (the same owner's): refused, nothing stored there
    assert (
        client.put(chunk_url(other, "alice", 0), content=meeting_chunks[0], headers=agent).status_code == 401
    )
    assert client.get(REC.format(other), headers=agent).status_code == 401
    assert client.post(f"/api/v1/sessions/{other}/finalize", headers=agent).status_code == 401
    assert client.get(REC.format(other), headers=user_a["headers"]).json()["participants"] == []
    # not a route of the agent's: the session itself
    assert client.get(f"/api/v1/sessions/{sid}", headers=agent).status_code == 401
    r = client.post(f"/api/v1/sessions/{sid}/finalize", headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["created"] is True


def test_deleting_the_session_deletes_its_chunks(client, user_a, meeting_chunks):
    sid = _session(client, user_a)
    for seq in (0, 1):
        assert (
            client.put(
                chunk_url(sid, "alice", seq), content=meeting_chunks[seq], headers=user_a["headers"]
            ).status_code
            == 201
        )
    root = client.app.state.ctx.blobs.root
    stored = [p for p in root.rglob("*.ogg") if sid in str(p) and "/recording/" in str(p)]
    assert len(stored) == 2
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in stored} == {
        hashlib.sha256(c).hexdigest() for c in meeting_chunks[:2]
    }
    assert client.delete(f"/api/v1/sessions/{sid}", headers=user_a["headers"]).status_code == 200
    assert [p for p in stored if p.exists()] == []
    assert client.get(REC.format(sid), headers=user_a["headers"]).status_code == 404


def test_concurrent_uploads_of_new_tracks_and_same_seqs(settings, meeting_chunks):
    """Real HTTP, uploads racing: two participants' first chunks (their tracks created at once) and
    the same chunk sent twice at once. Every request is 201 or 200 (never 500), each seq stored once."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from api.main import create_app
    from tests.api.conftest import LoopbackServer, register

    with LoopbackServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        user = register(c)
        sid = c.post("/api/v1/sessions/", json={}, headers=user["headers"]).json()["id"]
        jobs = [(p, seq) for p in ("alice", "bob") for seq in (0, 1, 2)] * 2  # each one twice

        def put(job):
            participant, seq = job
            return c.put(
                chunk_url(sid, participant, seq), content=meeting_chunks[seq], headers=user["headers"]
            )

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(put, jobs))
        assert sorted(r.status_code for r in answers) == [200] * 6 + [201] * 6, [r.text for r in answers]
        tracks = c.get(REC.format(sid), headers=user["headers"]).json()["participants"]
        assert sorted((t["participant"], tuple(t["seqs"])) for t in tracks) == [
            ("alice", (0, 1, 2)),
            ("bob", (0, 1, 2)),
        ]


def test_chunks_count_toward_the_stored_audio_limit(tmp_path, sqlite_url, meeting_chunks):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from tests.api.conftest import register

    quota = len(meeting_chunks[0]) + len(meeting_chunks[1]) // 2  # room for one chunk, not two
    settings = make_settings(
        tmp_path, database_url=sqlite_url, max_stored_bytes_per_user=quota, **live_settings()
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        user = register(client)
        sid = _session(client, user)
        h = user["headers"]
        assert client.put(chunk_url(sid, "alice", 0), content=meeting_chunks[0], headers=h).status_code == 201
        r = client.put(chunk_url(sid, "alice", 1), content=meeting_chunks[1], headers=h)
        assert r.status_code == 413 and "MAX_STORED_BYTES_PER_USER" in r.text
        # an upload sees the chunks' bytes as used too
        r = client.post(
            f"/api/v1/sessions/{sid}/audio_files",
            files={"audio_file": ("a.ogg", meeting_chunks[1], "audio/ogg")},
            headers=h,
        )
        assert r.status_code == 413, r.text
        (track,) = client.get(REC.format(sid), headers=h).json()["participants"]
        assert track["seqs"] == [0]
