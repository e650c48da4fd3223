"""Finalize a live session (POST /api/v1/sessions/{id}/finalize): the timeline-aligned mix of every
participant's chunks becomes the session's audio file, the live transcript its transcription; twice
changes nothing. Real Ogg/Opus chunks of espeak-ng speech; the live segments are written through the
api's live route, as the agent writes them."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from api.models import Job
from api.summaries import KIND as SUMMARY_KIND
from inference_client.audio import SAMPLE_RATE, decode_audio
from tests.api.conftest import make_settings
from tests.api.recording_helpers import CHUNK_S, chunk_url, chunked, live_settings, ogg_opus, speech

BOB_OFFSET = 4.5


@pytest.fixture
def settings(request, tmp_path, any_db_url):
    """SQLite with the live store in the database (the embedded default); PostgreSQL with it in Redis
    (production's)."""
    extra = {}
    if any_db_url.startswith("postgresql"):
        prefix = request.getfixturevalue("redis_prefix")
        extra = dict(
            redis_url=request.getfixturevalue("redis_url"), redis_prefix=f"{prefix}{uuid.uuid4().hex[:8]}:"
        )
    return make_settings(tmp_path, database_url=any_db_url, **live_settings(**extra))


@pytest.fixture(scope="module")
def alice_audio() -> np.ndarray:
    return speech("hello everyone, thank you for joining", 3 * CHUNK_S - 0.5)  # 5.5 s


@pytest.fixture(scope="module")
def bob_audio() -> np.ndarray:
    return speech("good morning, I have a question", 2 * CHUNK_S - 1.0)  # 3.0 s


def _session(client, user) -> str:
    r = client.post("/api/v1/sessions/", json={"title": "weekly"}, headers=user["headers"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _upload(client, user, sid, participant, audio, offset=None, pieces=None) -> list[float]:
    """Every chunk of ``audio`` (last first: order does not matter); their durations as stored."""
    pieces = pieces or chunked(audio)
    durations = {}
    for seq in reversed(range(len(pieces))):
        url = chunk_url(sid, participant, seq) + (f"?offset={offset}" if offset is not None else "")
        r = client.put(url, content=pieces[seq], headers=user["headers"])
        assert r.status_code == 201, r.text
        durations[seq] = r.json()["duration_seconds"]
    return [durations[i] for i in sorted(durations)]


def _segments(client, user, sid, segments):
    r = client.post(
        f"/api/v1/realtime/sessions/{sid}/segments", json={"segments": segments}, headers=user["headers"]
    )
    assert r.status_code == 200, r.text


def _mix_bytes(client, user, sid, audio_file_id) -> bytes:
    r = client.get(f"/api/v1/audio-files/{audio_file_id}/download", headers=user["headers"])
    if r.status_code == 404:  # the route's name differs: the session's file list names the path
        pytest.fail(f"no download route for the mix: {r.text}")
    assert r.status_code == 200, r.text
    return r.content


def _lag_seconds(mix: np.ndarray, clip: np.ndarray) -> float:
    """Where ``clip``'s speech sits in ``mix`` (cross-correlation peak), seconds."""
    n = mix.size + clip.size
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(mix, size) * np.conj(np.fft.rfft(clip, size)), size)[: mix.size]
    return float(np.argmax(corr)) / SAMPLE_RATE


def test_single_track_duration_is_the_sum_of_its_chunks(client, user_a, alice_audio):
    sid = _session(client, user_a)
    durations = _upload(client, user_a, sid, "alice", alice_audio)
    assert len(durations) == 3
    r = client.post(f"/api/v1/sessions/{sid}/finalize", headers=user_a["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] is True and body["participants"] == ["alice"]
    assert body["duration_seconds"] == pytest.approx(sum(durations), abs=1e-3)
    assert sum(durations) == pytest.approx(5.5, abs=1e-3)
    (audio,) = client.get(f"/api/v1/sessions/{sid}/audio_files", headers=user_a["headers"]).json()
    assert audio["id"] == body["audio_file_id"] and audio["format"] == "ogg"
    # the stored file's measured duration (PyAV, its packets), not what finalize computed
    assert audio["duration_seconds"] == pytest.approx(sum(durations), abs=1e-3)
    session = client.get(f"/api/v1/sessions/{sid}", headers=user_a["headers"]).json()
    assert session["status"] == "completed"
    assert session["duration_seconds"] == pytest.approx(sum(durations), abs=1e-3)


def test_mix_transcript_and_finalize_twice(client, user_a, alice_audio, bob_audio, tmp_path):
    h = user_a["headers"]
    sid = _session(client, user_a)
    alice_chunks = chunked(alice_audio)  # (Ogg streams get random serial numbers: keep the bytes)
    alice = _upload(client, user_a, sid, "alice", alice_audio, pieces=alice_chunks)
    bob = _upload(client, user_a, sid, "bob", bob_audio, offset=BOB_OFFSET)
    _segments(
        client,
        user_a,
        sid,
        [
            {
                "segment_id": "a-1",
                "speaker": "alice",
                "speaker_name": "Alice",
                "start_time": 0.1,
                "end_time": 2.2,
                "text": "hello everyone, thank you for joining",
                "is_final": True,
                "language": "en",
            },
            {
                "segment_id": "b-1",
                "speaker": "bob",
                "speaker_name": "Bob",
                "start_time": 4.6,
                "end_time": 5.5,
                "text": "good morning",
                "is_final": False,
            },
            {
                "segment_id": "b-2",
                "speaker": "bob",
                "speaker_name": "Bob",
                "start_time": 6.0,
                "end_time": 6.5,
                "text": "and",
                "is_final": False,
            },
        ],
    )
    # bob's interim becomes final; b-2 stays interim (it is not part of the final transcript)
    _segments(
        client,
        user_a,
        sid,
        [
            {
                "segment_id": "b-1",
                "speaker": "bob",
                "speaker_name": "Bob",
                "start_time": 4.6,
                "end_time": 6.6,
                "text": "good morning, I have a question",
                "is_final": True,
                "language": "en",
            },
        ],
    )
    live = type(client.app.state.ctx.live).__name__
    assert live == ("RedisLiveStore" if client.app.state.ctx.settings.redis_url else "SqlLiveStore")
    r = client.post(f"/api/v1/sessions/{sid}/finalize", json={}, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()
    expected = BOB_OFFSET + sum(bob)  # bob joined late and spoke last: the meeting ends with him
    assert expected > sum(alice)
    assert first["duration_seconds"] == pytest.approx(expected, abs=1e-3)
    assert sorted(first["participants"]) == ["alice", "bob"] and first["segments"] == 2

    # the transcription: the live finals, real times, participants as speakers, the true duration
    t = client.get(f"/api/v1/sessions/{sid}/transcription", headers=h).json()
    assert t["id"] == first["transcription_id"] and t["source"] == "live"
    got = [(s["speaker"], s["start_time"], s["end_time"], s["text"]) for s in t["segments"]]
    assert got == [
        ("alice", 0.1, 2.2, "hello everyone, thank you for joining"),
        ("bob", 4.6, 6.6, "good morning, I have a question"),
    ]
    session = client.get(f"/api/v1/sessions/{sid}", headers=h).json()
    assert session["duration_seconds"] == pytest.approx(expected, abs=1e-3)

    # the mix: bob's speech sits at his offset, alice's at 0 (cross-correlation of the decoded mix)
    (audio,) = client.get(f"/api/v1/sessions/{sid}/audio_files", headers=h).json()
    assert audio["duration_seconds"] == pytest.approx(expected, abs=1e-3)
    blob = client.app.state.ctx.blobs.local_file(audio["storage_path"])
    mix_sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    mix = decode_audio(blob)
    assert mix.size == round(expected * SAMPLE_RATE)
    assert _lag_seconds(mix, bob_audio[: round(2.0 * SAMPLE_RATE)]) == pytest.approx(BOB_OFFSET, abs=0.02)
    assert _lag_seconds(mix, alice_audio[: round(2.0 * SAMPLE_RATE)]) == pytest.approx(0.0, abs=0.02)

    # twice: the same answer, nothing new stored
    again = client.post(f"/api/v1/sessions/{sid}/finalize", headers=h)
    assert again.status_code == 200
    assert again.json() == {**first, "created": False}
    assert len(client.get(f"/api/v1/sessions/{sid}/audio_files", headers=h).json()) == 1
    assert len(client.get(f"/api/v1/sessions/{sid}/transcriptions", headers=h).json()) == 1
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == mix_sha
    # after finalize: a new chunk is refused; a re-sent stored one is still "already stored"
    late = client.put(chunk_url(sid, "carol", 0), content=ogg_opus(speech("late", 1.0)), headers=h)
    assert late.status_code == 409 and "finalized" in late.text
    resent = client.put(chunk_url(sid, "alice", 0), content=alice_chunks[0], headers=h)
    assert resent.status_code == 200
    listing = client.get(f"/api/v1/sessions/{sid}/recording", headers=h).json()
    assert listing["finalized"] is True and listing["audio_file_id"] == first["audio_file_id"]


def test_finalize_refusals(client, user_a, user_b, alice_audio):
    sid = _session(client, user_a)
    # nothing recorded, nothing said
    r = client.post(f"/api/v1/sessions/{sid}/finalize", headers=user_a["headers"])
    assert r.status_code == 409 and "nothing_recorded" in r.text
    _upload(client, user_a, sid, "alice", alice_audio[: round(1.5 * SAMPLE_RATE)])
    # another user's session: 404, and it stays unfinalized
    assert client.post(f"/api/v1/sessions/{sid}/finalize", headers=user_b["headers"]).status_code == 404
    assert (
        client.get(f"/api/v1/sessions/{sid}/recording", headers=user_a["headers"]).json()["finalized"]
        is False
    )
    # a malformed body
    bad = client.post(
        f"/api/v1/sessions/{sid}/finalize", json={"retranscribe": "maybe"}, headers=user_a["headers"]
    )
    assert bad.status_code == 422
    unknown = client.post(f"/api/v1/sessions/{sid}/finalize", json={"nope": 1}, headers=user_a["headers"])
    assert unknown.status_code == 422


def test_retranscribe_starts_one_job_and_auto_summary_waits_for_it(tmp_path, sqlite_url, alice_audio):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from tests.api.conftest import register

    settings = make_settings(tmp_path, database_url=sqlite_url, auto_summary_default=True, **live_settings())
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        user = register(client)
        h = user["headers"]
        # a session finalized without re-transcription: the auto-summary is queued at once
        plain = _session(client, user)
        _upload(client, user, plain, "alice", alice_audio)
        _segments(
            client,
            user,
            plain,
            [
                {
                    "segment_id": "s1",
                    "speaker": "alice",
                    "start_time": 0.1,
                    "end_time": 2.0,
                    "text": "hello everyone",
                    "is_final": True,
                }
            ],
        )
        assert client.post(f"/api/v1/sessions/{plain}/finalize", headers=h).json()["job_id"] is None
        # with re-transcription: one live_transcribe job (twice asked, one job); the summary waits for it
        sid = _session(client, user)
        _upload(client, user, sid, "alice", alice_audio)
        _segments(
            client,
            user,
            sid,
            [
                {
                    "segment_id": "s1",
                    "speaker": "alice",
                    "start_time": 0.1,
                    "end_time": 2.0,
                    "text": "hello everyone",
                    "is_final": True,
                }
            ],
        )
        first = client.post(f"/api/v1/sessions/{sid}/finalize", json={"retranscribe": True}, headers=h)
        assert first.status_code == 200, first.text
        job_id = first.json()["job_id"]
        assert job_id is not None
        second = client.post(f"/api/v1/sessions/{sid}/finalize", json={"retranscribe": True}, headers=h)
        assert second.json()["job_id"] == job_id and second.json()["created"] is False
        job = client.get(f"/api/v1/jobs/{job_id}", headers=h).json()
        assert job["kind"] == "live_transcribe" and job["status"] == "queued"
        with client.app.state.ctx.db.session() as s:
            kinds = {
                (str(j.session_id), j.kind) for j in s.scalars(select(Job).where(Job.user_id == user["id"]))
            }
        assert kinds == {(plain, SUMMARY_KIND), (sid, "live_transcribe")}
