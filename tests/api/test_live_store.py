"""The live stores themselves (api/live.py): expiry after LIVE_TTL_SECONDS without writes, and
concurrent writers of one session getting distinct, gap-free revisions — the database store on
SQLite and PostgreSQL, and Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from api.db.session import Database
from api.live import LiveSegmentRow, LiveSessionRow, LiveStoreFull, RedisLiveStore, SqlLiveStore
from api.models import RecordingSession, User


def _session(db: Database) -> uuid.UUID:
    with db.session() as s:
        user = User(email=None)
        s.add(user)
        s.flush()
        session = RecordingSession(user_id=user.id)
        s.add(session)
        s.flush()
        return session.id


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def make_store(request, sqlite_url, redis_url, redis_prefix):
    """make_store(ttl_seconds, max_segments) -> (store, session id of an existing session)."""
    url = request.getfixturevalue("api_pg_url") if request.param == "postgresql" else sqlite_url
    db = Database(url)
    clients = []

    def make(ttl_seconds: int = 3600, max_segments: int = 1000):
        sid = _session(db)
        if request.param == "redis":
            client = redis_lib.Redis.from_url(redis_url)
            clients.append(client)
            return RedisLiveStore(
                client, f"{redis_prefix}store-{uuid.uuid4().hex[:6]}:", ttl_seconds, max_segments
            ), sid
        return SqlLiveStore(db, ttl_seconds, max_segments), sid

    yield make
    for c in clients:
        c.close()
    db.dispose()


def _seg(segment_id: str, final: bool = True) -> dict:
    return {
        "segment_id": segment_id,
        "speaker": "s",
        "start_time": 0.0,
        "end_time": 1.0,
        "text": segment_id,
        "is_final": final,
    }


def test_live_data_expires_after_the_ttl_without_writes(make_store):
    store, sid = make_store(ttl_seconds=2)
    store.upsert_segments(sid, [_seg("a")])
    store.update_status(sid, {"recording": True})
    time.sleep(1.2)
    store.upsert_segments(sid, [_seg("b")])  # a write renews the whole session's TTL
    time.sleep(1.2)
    assert [s["segment_id"] for s in store.segments(sid)] == ["a", "b"]
    assert store.status(sid)["recording"] is True
    time.sleep(2.3)
    assert store.segments(sid) == [] and store.changes_after(sid, 0) == [] and store.status(sid) is None
    # a new write after expiry starts afresh (the bound counts from zero again)
    assert store.upsert_segments(sid, [_seg("c")]).segment_count == 1


def test_concurrent_writers_get_distinct_revisions(make_store):
    store, sid = make_store(max_segments=1000)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(8):
                store.upsert_segments(sid, [_seg(f"w{w}-{i}", final=False)])
                store.upsert_segments(sid, [_seg(f"w{w}-{i}", final=True)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    segments = store.segments(sid)
    assert len(segments) == 32 and all(s["is_final"] for s in segments)
    assert sorted(s["revision"] for s in segments) == sorted(set(s["revision"] for s in segments))
    assert max(s["revision"] for s in segments) == 64  # every accepted write, no gap, no duplicate
    status = store.status(sid)
    assert status["revision"] == 64 and status["segment_count"] == 32
    # a segment's latest write only (an interim superseded by its final is not sent again)
    changes = store.changes_after(sid, 56)
    expected = sorted((s["revision"], s["segment_id"]) for s in segments if s["revision"] > 56)
    assert [(c["revision"], c["segment_id"]) for c in changes] == expected
    assert expected[-1][0] == 64 and len(expected) >= 4


def test_the_bound_refuses_a_whole_write(make_store):
    store, sid = make_store(max_segments=2)
    store.upsert_segments(sid, [_seg("a")])
    with pytest.raises(LiveStoreFull):
        store.upsert_segments(sid, [_seg("a"), _seg("b"), _seg("c")])
    assert [s["segment_id"] for s in store.segments(sid)] == ["a"]  # nothing of it stored
    # the same id twice in one write counts once
    assert store.upsert_segments(sid, [_seg("b", False), _seg("b")]).segment_count == 2


def test_expired_rows_are_purged_from_the_database(sqlite_url):
    db = Database(sqlite_url)
    try:
        old, other = _session(db), _session(db)
        SqlLiveStore(db, ttl_seconds=1).upsert_segments(old, [_seg("a"), _seg("b")])
        time.sleep(1.3)
        SqlLiveStore(db, ttl_seconds=1).update_status(
            other, {"recording": True}
        )  # a new process' first write
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(LiveSegmentRow)) == 0
            assert s.scalars(select(LiveSessionRow.session_id)).all() == [other]
    finally:
        db.dispose()
