"""Sessions CRUD (original shapes + additions), pagination and filters, preferences, and deleting a
session with everything that belongs to it. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.jobs.store import JobStore
from api.main import create_app
from api.models import AISummary, AudioFile, Job, Transcription
from tests.api.conftest import make_settings, register

S = "/api/v1/sessions/"


@pytest.fixture
def api(tmp_path, any_db_url):
    app = create_app(make_settings(tmp_path, database_url=any_db_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, app.state.ctx


def wav_bytes(seconds: float = 1.5, rate: int = 16000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    data = 0.1 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(buf, np.stack([data] * channels, axis=1) if channels > 1 else data, rate, format="WAV")
    return buf.getvalue()


def test_create_get_update(api):
    client, _ = api
    a = register(client)
    r = client.post(
        S, json={"title": "Weekly sync", "language": "en", "tags": ["team"]}, headers=a["headers"]
    )
    assert r.status_code == 201
    s = r.json()
    for key in ("id", "title", "status", "language", "template_id", "created_at", "updated_at"):
        assert key in s  # the original's SessionResponse fields
    assert s["status"] == "created" and s["duration_seconds"] is None and s["tags"] == ["team"]
    assert client.get(f"{S}{s['id']}", headers=a["headers"]).json() == s
    r = client.put(
        f"{S}{s['id']}", json={"title": "Weekly sync (renamed)", "status": "completed"}, headers=a["headers"]
    )
    assert r.status_code == 200
    assert r.json()["title"] == "Weekly sync (renamed)" and r.json()["status"] == "completed"
    assert r.json()["language"] == "en"  # untouched fields stay
    r = client.patch(
        f"{S}{s['id']}",
        json={
            "duration_seconds": 61.5,
            "metadata": {"stt_model": "sensevoice"},
            "started_at": "2025-01-02T03:04:05Z",
        },
        headers=a["headers"],
    )
    assert r.json()["duration_seconds"] == 61.5 and r.json()["metadata"] == {"stt_model": "sensevoice"}
    assert r.json()["started_at"].startswith("2025-01-02T03:04:05")
    assert client.put(f"{S}{s['id']}", json={"status": "draft"}, headers=a["headers"]).status_code == 422
    assert client.post(S, json={"language": "not a language"}, headers=a["headers"]).status_code == 422


def test_defaults_come_from_preferences(api):
    client, _ = api
    a = register(client)
    s = client.post(S, json={}, headers=a["headers"]).json()
    assert s["title"] == "未命名录音" and s["language"] == "zh-CN"
    prefs = client.put(
        "/api/v1/users/preferences",
        json={"default_language": "yue", "auto_summary": True},
        headers=a["headers"],
    )
    assert prefs.status_code == 200 and prefs.json()["preferences"]["auto_summary"] is True
    assert client.post(S, json={}, headers=a["headers"]).json()["language"] == "yue"


def test_auto_summary_stays_unset_until_the_user_sets_it(api):
    """Saving another preference must not write auto_summary=false: unset, AUTO_SUMMARY_DEFAULT decides."""
    from api.models import User
    from api.summaries import auto_summary_wanted

    client, ctx = api
    a = register(client)
    r = client.put("/api/v1/users/preferences", json={"default_language": "yue"}, headers=a["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["preferences"]["auto_summary"] is None
    with ctx.db.session() as s:
        user = s.get(User, a["id"])
        assert auto_summary_wanted(user, True) is True and auto_summary_wanted(user, False) is False
    r = client.put("/api/v1/users/preferences", json={"auto_summary": False}, headers=a["headers"])
    assert r.json()["preferences"]["auto_summary"] is False
    with ctx.db.session() as s:
        assert auto_summary_wanted(s.get(User, a["id"]), True) is False


def test_templates_must_be_visible(api):
    client, ctx = api
    a = register(client)
    with ctx.db.session() as s:
        from api.models import SummaryTemplate

        system_id = s.scalar(
            select(SummaryTemplate.id).where(SummaryTemplate.is_system_template.is_(True)).limit(1)
        )
    ok = client.post(S, json={"template_id": str(system_id)}, headers=a["headers"])
    assert ok.status_code == 201 and ok.json()["template_id"] == str(system_id)
    assert client.post(S, json={"template_id": str(uuid.uuid4())}, headers=a["headers"]).status_code == 404


def test_list_pagination_and_filters(api):
    client, _ = api
    a, b = register(client), register(client)
    ids = []
    for i in range(7):
        body = {
            "title": f"meeting {i}" if i % 2 else f"standup {i}",
            "language": "en" if i < 4 else "zh-CN",
            "tags": ["x"] if i == 3 else [],
        }
        ids.append(client.post(S, json=body, headers=a["headers"]).json()["id"])
    client.post(S, json={"title": "b's"}, headers=b["headers"])
    client.put(f"{S}{ids[0]}", json={"status": "archived"}, headers=a["headers"])

    r = client.get(S, params={"limit": 3}, headers=a["headers"])
    assert r.headers["x-total-count"] == "7" and [s["id"] for s in r.json()] == ids[::-1][:3]  # newest first
    page2 = client.get(S, params={"limit": 3, "offset": 3}, headers=a["headers"]).json()
    assert [s["id"] for s in page2] == ids[::-1][3:6]

    def titles(**params):
        return sorted(s["title"] for s in client.get(S, params=params, headers=a["headers"]).json())

    assert titles(language="en") == ["meeting 1", "meeting 3", "standup 0", "standup 2"]
    assert titles(q="STAND") == ["standup 0", "standup 2", "standup 4", "standup 6"]
    assert titles(status="archived") == ["standup 0"]
    assert len(titles(status=["created", "archived"])) == 7
    assert titles(tag="x") == ["meeting 3"]
    assert titles(q="100%") == []
    assert client.get(S, params={"limit": 101}, headers=a["headers"]).status_code == 422
    assert client.get(S, params={"status": "draft"}, headers=a["headers"]).status_code == 422


def test_owner_scoping_returns_404(api):
    client, _ = api
    a, b = register(client), register(client)
    sid = client.post(S, json={}, headers=a["headers"]).json()["id"]
    for method, path, body in [
        ("GET", f"{S}{sid}", None),
        ("PUT", f"{S}{sid}", {"title": "x"}),
        ("PATCH", f"{S}{sid}", {"title": "x"}),
        ("DELETE", f"{S}{sid}", None),
        ("GET", f"{S}{sid}/audio_files", None),
    ]:
        r = client.request(method, path, json=body, headers=b["headers"])
        assert r.status_code == 404, (method, path, r.status_code)
    assert client.get(f"{S}{uuid.uuid4()}", headers=a["headers"]).status_code == 404
    assert client.get(S, headers=b["headers"]).json() == []


def test_upload_audio_records_metadata(api):
    client, ctx = api
    a = register(client)
    sid = client.post(S, json={}, headers=a["headers"]).json()["id"]
    data = wav_bytes(1.5, 16000, 2)
    r = client.post(
        f"{S}{sid}/audio_files",
        files={"audio_file": ("meeting.wav", data, "audio/wav")},
        headers=a["headers"],
    )
    assert r.status_code == 201, r.text
    f = r.json()
    import hashlib

    assert f["storage_backend"] == "local" and f["storage_bucket"] == "audio-recordings"
    assert f["file_size_bytes"] == len(data) and f["file_hash"] == hashlib.sha256(data).hexdigest()
    assert f["duration_seconds"] == 1.5 and f["sample_rate"] == 16000 and f["channels"] == 2
    assert f["storage_path"].startswith(f"{a['id']}/{sid}/") and f["public_url"] is None
    assert client.get(f"{S}{sid}/audio_files", headers=a["headers"]).json() == [f]
    down = client.get(f"/api/v1/audio-files/{f['id']}/download", headers=a["headers"])
    assert down.status_code == 200 and down.content == data
    b = register(client)
    assert client.get(f"/api/v1/audio-files/{f['id']}/download", headers=b["headers"]).status_code == 404
    assert (
        client.get(f"/api/v1/audio-files/{f['id']}/url", headers=a["headers"])
        .json()["url"]
        .endswith("/download")
    )
    # not audio: refused, nothing kept (every case: tests/api/test_bad_audio.py)
    r = client.post(
        f"{S}{sid}/audio_files",
        files={"audio_file": ("x.webm", b"\x1aE\xdf\xa3junk", "audio/webm")},
        headers=a["headers"],
    )
    assert r.status_code == 415 and r.json()["detail"].startswith("not_audio: "), r.text
    assert client.get(f"{S}{sid}/audio_files", headers=a["headers"]).json() == [f]


def test_delete_session_removes_everything(api):
    client, ctx = api
    a = register(client)
    sid = client.post(S, json={}, headers=a["headers"]).json()["id"]
    other = client.post(S, json={}, headers=a["headers"]).json()["id"]
    files = [
        client.post(
            f"{S}{x}/audio_files",
            files={"audio_file": ("a.wav", wav_bytes(0.2), "audio/wav")},
            headers=a["headers"],
        ).json()
        for x in (sid, sid, other)
    ]
    sid_u = uuid.UUID(sid)
    with ctx.db.session() as s:
        t = Transcription(session_id=sid_u, content="hello", segments=[])
        s.add(t)
        s.flush()
        s.add(AISummary(session_id=sid_u, transcription_id=t.id, summary="hi"))
        queued = JobStore.create(s, "sleep_chunks", {}, user_id=a["id"], session_id=sid_u).id
        running = JobStore.create(s, "sleep_chunks", {}, user_id=a["id"], session_id=sid_u).id
    assert ctx.jobs.claim(running, "w")
    ctx.live.upsert_segments(
        sid_u, [{"segment_id": "s0", "text": "live", "start_time": 0.0, "end_time": 1.0}]
    )
    ctx.live.update_status(sid_u, {"recording": True})
    assert ctx.live.segments(sid_u) and ctx.live.status(sid_u)["recording"] is True

    r = client.delete(f"{S}{sid}", headers=a["headers"])
    assert r.status_code == 200 and r.json() == {"message": "Session deleted successfully"}
    assert client.get(f"{S}{sid}", headers=a["headers"]).status_code == 404
    with ctx.db.session() as s:
        for model in (AudioFile, Transcription, AISummary):
            assert s.scalar(select(func.count()).select_from(model).where(model.session_id == sid_u)) == 0
        assert s.get(Job, queued).status == "cancelled"
        assert s.get(Job, running).cancel_requested is True  # its worker stops at the next chunk
        assert s.get(Job, queued).session_id is None
    assert not ctx.blobs.exists(files[0]["storage_path"]) and not ctx.blobs.exists(files[1]["storage_path"])
    assert ctx.blobs.exists(files[2]["storage_path"])  # the other session keeps its audio
    assert ctx.live.segments(sid_u) == [] and ctx.live.status(sid_u) is None
    assert client.get(f"/api/v1/jobs/{queued}", headers=a["headers"]).json()["status"] == "cancelled"


def test_live_data_deleted_from_redis(tmp_path, sqlite_url, redis_url, redis_prefix):
    prefix = f"{redis_prefix}live-{uuid.uuid4().hex[:6]}:"
    settings = make_settings(
        tmp_path, database_url=sqlite_url, redis_url=redis_url, redis_prefix=prefix, queue_backend="sqlite"
    )
    app = create_app(settings)
    with TestClient(app) as client:
        ctx = app.state.ctx
        a = register(client)
        sid = client.post(S, json={}, headers=a["headers"]).json()["id"]
        ctx.live.upsert_segments(uuid.UUID(sid), [{"segment_id": "s0", "text": "x", "start_time": 0.0}])
        ctx.live.update_status(uuid.UUID(sid), {"recording": True})
        # segments (hash), their revisions (sorted set), status (hash)
        assert len(list(ctx.redis.scan_iter(match=f"{prefix}live:{sid}:*"))) == 3
        client.delete(f"{S}{sid}", headers=a["headers"])
        assert list(ctx.redis.scan_iter(match=f"{prefix}live:{sid}:*")) == []
