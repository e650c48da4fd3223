"""Jobs across real processes: worker processes (``python -m api.worker``) that get killed with
SIGKILL, several enqueuing processes, cancel through the api. PostgreSQL + Redis (production) and
SQLite + huey's SQLite queue (embedded)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.session import Database
from api.jobs.queue import JobQueue
from api.jobs.store import JobStore
from api.main import create_app
from api.models import Job, JobEvent, User
from tests.api.conftest import JWT_SECRET, TEST_JOB_MODULES, make_settings, register

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 3.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(params=["postgres+redis", "sqlite"])
def backend(request, tmp_path):
    """Environment (as a deployment sets it) and matching Settings for the test's own api side."""
    if request.param == "postgres+redis":
        prefix = f"{request.getfixturevalue('redis_prefix')}{secrets.token_hex(3)}:"
        env = {
            "DATABASE_URL": request.getfixturevalue("api_pg_url"),
            "REDIS_URL": request.getfixturevalue("redis_url"),
            "REDIS_PREFIX": prefix,
            "QUEUE_BACKEND": "redis",
        }
    else:
        from api.db.migrate import upgrade

        url = f"sqlite:///{tmp_path}/jobs.db"
        upgrade(url)
        env = {"DATABASE_URL": url, "REDIS_URL": "", "QUEUE_BACKEND": "sqlite"}
    env |= {
        "DATA_DIR": str(tmp_path / "data"),
        "AUTH_MODE": "embedded",
        "JWT_SECRET": JWT_SECRET,
        "TRITON_HTTP_URL": "",
        "JOB_LEASE_SECONDS": str(LEASE_S),
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_REAPER_INTERVAL_SECONDS": "0.5",
        "JOB_RETRY_DELAY_SECONDS": "0.2",
        "WORKER_CONCURRENCY": "2",
        "LOG_LEVEL": "INFO",
        "EXTRA_JOB_MODULES": ",".join(TEST_JOB_MODULES),  # sleep_chunks is the tests' own kind
    }
    settings = make_settings(
        tmp_path / "data",
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_prefix=env.get("REDIS_PREFIX", "intrascribe:"),
        queue_backend=env["QUEUE_BACKEND"],
        job_lease_seconds=LEASE_S,
    )
    queue = JobQueue(settings)
    yield env, settings, queue
    queue.flush()


class Workers:
    def __init__(self, env: dict[str, str], logdir: Path):
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int = 1) -> list[subprocess.Popen]:
        started = []
        for _ in range(n):
            log = open(self.logdir / f"worker-{len(self.procs)}.log", "wb")
            p = subprocess.Popen(
                [sys.executable, "-m", "api.worker"],
                cwd=self.logdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.procs.append(p)
            started.append(p)
        return started

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def logs(self) -> str:
        return "\n".join(
            f.read_text(errors="replace")[-3000:] for f in sorted(self.logdir.glob("worker-*.log"))
        )


@pytest.fixture
def workers(backend, tmp_path):
    env, _, _ = backend
    logdir = tmp_path / "logs"
    logdir.mkdir()
    w = Workers(env, logdir)
    yield w
    w.stop()


def _user(db: Database) -> uuid.UUID:
    with db.session() as s:
        u = User(email=None)
        s.add(u)
        s.flush()
        return u.id


def _wait(predicate, timeout: float, what: str, workers: Workers | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out waiting for {what}" + (f"\nworker logs:\n{workers.logs()}" if workers else "")
    )


def _chunks(log: Path, job_id: uuid.UUID) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith(str(job_id))]


def test_kill_9_worker_mid_job(backend, workers, tmp_path):
    env, settings, queue = backend
    db = Database(settings.resolved_database_url)
    store = JobStore(db)
    log = tmp_path / "chunks.log"
    workers.start(2)
    with db.session() as s:
        job_id = JobStore.create(
            s, "sleep_chunks", {"chunks": 12, "seconds": 0.3, "log_path": str(log)}, user_id=_user(db)
        ).id
    queue.dispatch(job_id)

    job = _wait(
        lambda: (j := store.get(job_id)) and j.progress.get("done", 0) >= 3 and j, 30, "3 chunks", workers
    )
    victim_pid = int(job.lease_owner.split(":")[1])
    victim = next(p for p in workers.procs if p.pid == victim_pid)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    saved = store.get(job_id).checkpoint["next"]  # chunks [0, saved) are checkpointed

    done = _wait(
        lambda: (j := store.get(job_id)).status == "completed" and j,
        LEASE_S + 10 + 12 * 0.3,
        "completion",
        workers,
    )
    assert time.monotonic() - killed_at <= LEASE_S + 10
    assert done.attempt == 2 and done.result["resumed_from"] >= saved
    counts = Counter(_chunks(log, job_id))
    assert sorted(counts) == list(range(12))
    assert all(counts[c] == 1 for c in range(saved)), counts  # checkpointed chunks never recomputed
    assert all(n <= 2 for n in counts.values())  # at most the in-flight chunk ran twice
    with db.session() as s:
        statuses = [
            e.data["status"]
            for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "status"))
        ]
    assert statuses.count("completed") == 1
    assert statuses == ["queued", "running", "queued", "running", "completed"]
    db.dispose()


def test_two_enqueuers_two_workers_never_run_a_job_twice(backend, workers, tmp_path):
    env, settings, _ = backend
    db = Database(settings.resolved_database_url)
    user_id = _user(db)
    log = tmp_path / "chunks.log"
    workers.start(2)
    penv = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.api.job_client", str(user_id), "8", "3", "0.02", str(log)]
    apis = [
        subprocess.Popen(cmd, cwd=tmp_path, env=penv, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    job_ids = [uuid.UUID(line) for p in apis for line in p.communicate(timeout=60)[0].split()]
    assert len(job_ids) == 16

    def all_done():
        with db.session() as s:
            return (
                s.scalars(select(Job).where(Job.id.in_(job_ids))).all()
                if all(j.status == "completed" for j in s.scalars(select(Job).where(Job.id.in_(job_ids))))
                else None
            )

    jobs = _wait(all_done, 60, "16 jobs", workers)
    assert all(j.attempt == 1 for j in jobs)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert Counter((jid, c) for jid, c, _ in lines) == Counter(
        (str(j), str(c)) for j in job_ids for c in range(3)
    )
    with db.session() as s:
        running = Counter(
            e.job_id
            for e in s.scalars(
                select(JobEvent).where(JobEvent.job_id.in_(job_ids), JobEvent.type == "status")
            )
            if e.data["status"] == "running"
        )
    assert set(running.values()) == {1}
    db.dispose()


def test_cancel_through_api_stops_a_running_job(backend, workers, tmp_path):
    env, settings, queue = backend
    workers.start(1)
    app = create_app(settings)
    with TestClient(app) as client:
        user = register(client)
        ctx = app.state.ctx
        log = tmp_path / "chunks.log"
        with ctx.db.session() as s:
            job_id = JobStore.create(
                s, "sleep_chunks", {"chunks": 100, "seconds": 0.1, "log_path": str(log)}, user_id=user["id"]
            ).id
        ctx.queue.dispatch(job_id)
        _wait(lambda: ctx.jobs.get(job_id).progress.get("done", 0) >= 2, 30, "2 chunks", workers)
        r = client.delete(f"/api/v1/jobs/{job_id}", headers=user["headers"])
        assert r.status_code == 202 and r.json()["cancel_requested"] is True
        job = _wait(lambda: (j := ctx.jobs.get(job_id)).status == "cancelled" and j, 10, "cancelled", workers)
        n = len(_chunks(log, job_id))
        time.sleep(0.5)
        assert len(_chunks(log, job_id)) == n < 100
        assert job.progress["done"] < 100


def test_sigterm_hands_running_jobs_back(backend, workers, tmp_path):
    env, settings, queue = backend
    db = Database(settings.resolved_database_url)
    store = JobStore(db)
    log = tmp_path / "chunks.log"
    (first,) = workers.start(1)
    with db.session() as s:
        job_id = JobStore.create(
            s, "sleep_chunks", {"chunks": 10, "seconds": 0.2, "log_path": str(log)}, user_id=_user(db)
        ).id
    queue.dispatch(job_id)
    _wait(lambda: store.get(job_id).progress.get("done", 0) >= 2, 30, "2 chunks", workers)
    first.send_signal(signal.SIGTERM)
    first.wait(10)
    # no worker is left, so no reaper: only the shutting-down worker can have re-queued it
    job = _wait(lambda: (j := store.get(job_id)).status == "queued" and j, 5, "release", workers)
    assert job.error["code"] == "worker_shutdown" and job.attempt == 0
    workers.start(1)
    done = _wait(lambda: (j := store.get(job_id)).status == "completed" and j, 30, "completion", workers)
    assert done.attempt == 1 and done.result["resumed_from"] >= 2
    assert sorted(set(_chunks(log, job_id))) == list(range(10))
    db.dispose()
