"""The job machinery in one process, on SQLite and PostgreSQL: claims, leases, reaper, checkpoints,
cancel, retries; the jobs API (status, cancel, SSE, the v2 alias)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.db.session import Database
from api.db.types import utcnow
from api.jobs.kinds import load_job_modules
from api.jobs.runner import JobExecutor, RetryLater
from api.jobs.service import submit_job
from api.jobs.store import JobStore
from api.main import create_app
from api.models import Job, JobEvent, User
from tests.api.conftest import TEST_JOB_MODULES, make_settings, register


@pytest.fixture
def store(any_db_url):
    db = Database(any_db_url)
    yield JobStore(db, lease_seconds=30)
    db.dispose()


def _new_job(store: JobStore, kind="sleep_chunks", params=None, user_id=None, max_attempts=3) -> uuid.UUID:
    with store.db.session() as s:
        if user_id is None:
            user = User(email=None)
            s.add(user)
            s.flush()
            user_id = user.id
        return store.create(s, kind, params or {}, user_id=user_id, max_attempts=max_attempts).id


def _events(store, job_id):
    return [(e.type, e.data.get("status")) for e in store.events_after(job_id, 0)]


def test_claim_is_exclusive(store):
    job_id = _new_job(store)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: store.claim(job_id, f"w{i}"), range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].attempt == 1
    assert _events(store, job_id) == [("status", "queued"), ("status", "running")]


def test_only_the_owner_writes_and_completes_once(store):
    job_id = _new_job(store)
    assert store.claim(job_id, "a") is not None
    assert store.claim(job_id, "b") is None
    assert not store.save_progress(job_id, "b", {"done": 1, "total": 2, "stage": "x"}, {"next": 1})
    assert store.save_progress(job_id, "a", {"done": 1, "total": 2, "stage": "x"}, {"next": 1})
    assert store.complete(job_id, "a", {"ok": True})
    assert not store.complete(job_id, "a", {"ok": True})
    job = store.get(job_id)
    assert job.status == "completed" and job.checkpoint == {"next": 1} and job.progress["done"] == 2
    assert [e for e in _events(store, job_id) if e[1] == "completed"] == [("status", "completed")]


def test_reaper_requeues_expired_lease_and_fences_the_old_owner(store):
    job_id = _new_job(store, max_attempts=2)
    store.claim(job_id, "dead")
    later = utcnow() + timedelta(seconds=31)
    assert job_id in store.reap_expired(later)
    job = store.get(job_id)
    assert job.status == "queued" and job.error["code"] == "lease_expired" and job.lease_owner is None
    assert not store.save_progress(job_id, "dead", {"done": 1, "total": 1, "stage": None})
    assert store.claim(job_id, "alive").attempt == 2
    # out of attempts: the next expiry fails the job instead of re-queuing it
    assert job_id not in store.reap_expired(utcnow() + timedelta(seconds=31))
    assert store.get(job_id).status == "failed"


def test_reaper_ends_cancelled_orphans(store):
    job_id = _new_job(store)
    store.claim(job_id, "dead")
    with store.db.session() as s:
        assert JobStore.request_cancel(s, job_id)
    store.reap_expired(utcnow() + timedelta(seconds=31))
    assert store.get(job_id).status == "cancelled"


def test_stale_queued_wakeups_are_resent_once(store):
    job_id = _new_job(store)
    assert job_id not in store.stale_queued(timedelta(seconds=60))
    future = utcnow() + timedelta(seconds=61)
    assert job_id in store.stale_queued(timedelta(seconds=60), now=future)
    assert job_id not in store.stale_queued(timedelta(seconds=60), now=future)


def test_executor_checkpoints_retries_and_resumes(store, tmp_path):
    log = tmp_path / "chunks.log"
    job_id = _new_job(store, params={"chunks": 4, "seconds": 0.01, "log_path": str(log), "fail_at": 2})
    executor = JobExecutor(store, load_job_modules(TEST_JOB_MODULES), heartbeat_seconds=5)
    with pytest.raises(RetryLater):
        executor.run(job_id)
    job = store.get(job_id)
    assert job.status == "queued" and job.error == {
        "code": "chunk_failed",
        "message": "chunk 2 failed (attempt 1)",
    }
    assert executor.run(job_id) == "completed"
    job = store.get(job_id)
    assert job.result == {"chunks": 4, "resumed_from": 2} and job.attempt == 2 and job.error is None
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [int(c) for _, c, _ in lines] == [0, 1, 2, 3]  # no chunk computed twice
    assert executor.run(job_id) == "not_claimed"


def test_unknown_kind_and_crash_become_job_errors(store):
    job_id = _new_job(store, kind="no_such_kind")
    executor = JobExecutor(store, load_job_modules(TEST_JOB_MODULES), heartbeat_seconds=5)
    assert executor.run(job_id) == "failed"
    assert store.get(job_id).error["code"] == "unknown_kind"

    def boom(ctx):
        raise RuntimeError("secret internals /etc/passwd")

    job_id = _new_job(store, kind="boom", max_attempts=1)
    assert JobExecutor(store, {"boom": boom}).run(job_id) == "failed"
    err = store.get(job_id).error
    assert err["code"] == "internal_error" and "passwd" not in err["message"]


def test_cancel_running_job_stops_at_next_chunk(store):
    job_id = _new_job(store, params={"chunks": 200, "seconds": 0.02})
    executor = JobExecutor(store, load_job_modules(TEST_JOB_MODULES), heartbeat_seconds=5)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("outcome", executor.run(job_id)))
    t.start()
    deadline = time.time() + 10
    while store.get(job_id).progress.get("done", 0) < 3 and time.time() < deadline:
        time.sleep(0.02)
    with store.db.session() as s:
        assert JobStore.request_cancel(s, job_id)
    t.join(10)
    assert result["outcome"] == "cancelled"
    job = store.get(job_id)
    assert job.status == "cancelled" and job.progress["done"] < 200


# ------------------------------------------------------------------------------------- the API
@pytest.fixture
def api(tmp_path, any_db_url):
    app = create_app(make_settings(tmp_path, database_url=any_db_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, app.state.ctx


def _job_for(ctx, user_id, **params) -> uuid.UUID:
    with ctx.db.session() as s:
        job = submit_job(ctx, s, "sleep_chunks", params, user_id=user_id)
    ctx.queue.flush()  # no worker in these tests: the executor is called directly
    return job.id


def test_job_status_cancel_and_alias(api):
    client, ctx = api
    a, b = register(client), register(client)
    job_id = _job_for(ctx, a["id"], chunks=3)
    r = client.get(f"/api/v1/jobs/{job_id}", headers=a["headers"])
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "queued" and body["progress"] == {"done": 0, "total": None, "stage": "queued"}
    assert body["error"] is None and body["attempt"] == 0
    assert client.get(f"/api/v1/jobs/{job_id}", headers=b["headers"]).status_code == 404
    assert client.get(f"/api/v2/tasks/{job_id}/status", headers=b["headers"]).status_code == 404
    legacy = client.get(f"/api/v2/tasks/{job_id}/status", headers=a["headers"]).json()
    assert legacy["task_id"] == str(job_id) and legacy["success"] is True and legacy["status"] == "queued"
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=a["headers"]).json()] == [str(job_id)]
    assert client.get("/api/v1/jobs", headers=b["headers"]).json() == []
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=b["headers"]).status_code == 404
    r = client.delete(f"/api/v1/jobs/{job_id}", headers=a["headers"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=a["headers"]).status_code == 409
    assert client.delete(f"/api/v2/tasks/{job_id}", headers=a["headers"]).status_code == 409


def _iter_sse(response):
    current = {}
    for line in response.iter_lines():
        if not line:
            if current:
                yield current
                current = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        current[key] = json.loads(value) if key == "data" else value
    if current:
        yield current


def _read_sse(response) -> list[dict]:
    return list(_iter_sse(response))


def test_sse_streams_progress_to_the_end_and_resumes(api):
    client, ctx = api
    a = register(client)
    job_id = _job_for(ctx, a["id"], chunks=5, seconds=0.05)
    executor = JobExecutor(ctx.jobs, load_job_modules(TEST_JOB_MODULES), heartbeat_seconds=5)
    runner = threading.Thread(target=executor.run, args=(job_id,))
    events = []
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=a["headers"]) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for event in _iter_sse(r):
            events.append(event)
            if len(events) == 1:
                runner.start()  # the job runs while we watch
    runner.join()
    assert events[0]["event"] == "snapshot" and events[0]["data"]["status"] == "queued"
    kinds = [(e["event"], e["data"].get("status") or e["data"].get("done")) for e in events[1:]]
    assert kinds == [("status", "running"), *[("progress", i) for i in range(1, 6)], ("status", "completed")]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    # reconnect after the 3rd event: exactly the rest, no snapshot
    with client.stream(
        "GET", f"/api/v1/jobs/{job_id}/events", headers={**a["headers"], "Last-Event-ID": events[3]["id"]}
    ) as r:
        rest = _read_sse(r)
    assert [e["id"] for e in rest] == [e["id"] for e in events[4:]]
    # a finished job: the snapshot alone, then the stream ends
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=a["headers"]) as r:
        only = _read_sse(r)
    assert [e["event"] for e in only] == ["snapshot"] and only[0]["data"]["status"] == "completed"
    b = register(client)
    assert client.get(f"/api/v1/jobs/{job_id}/events", headers=b["headers"]).status_code == 404


def test_events_are_recorded_per_transition(store):
    job_id = _new_job(store, params={"chunks": 2, "seconds": 0})
    JobExecutor(store, load_job_modules(TEST_JOB_MODULES)).run(job_id)
    with store.db.session() as s:
        rows = s.query(JobEvent).filter(JobEvent.job_id == job_id).order_by(JobEvent.id).all()
        assert [r.type for r in rows] == ["status", "status", "progress", "progress", "status"]
        assert s.get(Job, job_id).finished_at is not None
