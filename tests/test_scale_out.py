"""Scale-out on one machine, as docs/deployment.md ("Beyond one machine") describes it for several:

- two api processes (``python -m api``: two uvicorn servers on loopback ports) and two worker
  processes (``python -m api.worker``) on one PostgreSQL database and the Redis job queue
  (``QUEUE_BACKEND=redis``, one ``REDIS_PREFIX``), sharing one ``DATA_DIR`` for the uploads;
- each worker pointed at its own Triton replica (``TRITON_GRPC_URL``): the session's tritonserver
  serving model_repository/ and a second tritonserver serving the four models a transcription needs
  from the same repository (``triton_models``).

Batch transcription jobs (the real job kind: upload, VAD, ASR, diarization, stored transcript) are
submitted alternately through both apis by one user (a token from the first api works on the
second: same database and secret). Checked: every job completed, each ran exactly once (attempt 1,
one ``running`` and one ``completed`` status event, one transcription version per session), none was
lost, both workers finished some (each worker's own metrics endpoint), the two counts add up to
the jobs submitted, and each Triton replica served inference requests during the run (its
``nv_inference_request_success`` rose), so each worker really used its own address.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from api.db.migrate import upgrade
from api.db.session import Database
from api.models import Job, JobEvent
from tests.api.conftest import JWT_SECRET
from tests.api.sync_helpers import speech, wav_bytes
from tests.conftest import temporary_database

REPO = Path(__file__).resolve().parents[1]
JOBS = 12
TRANSCRIPTION_MODELS = ("vad", "asr", "segmentation", "speaker_embedding")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Child processes with their logs; stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, module: str, env: dict[str, str]) -> subprocess.Popen:
        workdir = self.logdir / name  # no .env of the checkout is read
        workdir.mkdir()
        log = open(self.logdir / f"{name}.log", "wb")
        p = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=workdir,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((name, p))
        return p

    def stop(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (exit {p.poll()}):\n"
            + (self.logdir / f"{name}.log").read_text(errors="replace")[-2500:]
            for name, p in self.procs
        )


def wait_for(predicate, timeout: float, what: str, procs: Processes):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        dead = [name for name, p in procs.procs if p.poll() is not None]
        assert not dead, f"{dead} exited while waiting for {what}\n{procs.logs()}"
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")


def counter(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels`` (0 when there are none)."""
    text = httpx.get(metrics_url, timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # the parser names every counter sample *_total (Triton's counters have no suffix)
            same = s.name.removesuffix("_total") == name.removesuffix("_total")
            if same and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture
def database() -> str:
    with temporary_database() as url:
        upgrade(url)
        yield url


def test_two_apis_two_workers_two_triton_replicas(
    database, redis_url, redis_prefix, triton, triton_models, tmp_path
):
    replicas = [triton, triton_models(*TRANSCRIPTION_MODELS)]
    assert replicas[0].ports.grpc_url != replicas[1].ports.grpc_url
    logdir = tmp_path / "logs"
    logdir.mkdir()
    shared = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"{redis_prefix}scale-{secrets.token_hex(3)}:",
        "QUEUE_BACKEND": "redis",
        "DATA_DIR": str(tmp_path / "data"),
        "BLOB_BACKEND": "local",
        "AUTH_MODE": "embedded",
        "JWT_SECRET": JWT_SECRET,
        "JWT_ISSUER": "",
        "TRITON_HTTP_URL": "",
        "EXTRA_JOB_MODULES": "",
        "MAX_ACTIVE_JOBS_PER_USER": str(JOBS),
        "LOG_LEVEL": "INFO",
    }
    procs = Processes(logdir)
    try:
        apis = []
        for i in range(2):
            port = free_port()
            procs.start(
                f"api-{i}",
                "api",
                {
                    **shared,
                    "API_HOST": "127.0.0.1",
                    "API_PORT": str(port),
                    "TRITON_GRPC_URL": replicas[i].ports.grpc_url,
                },
            )
            apis.append(f"http://127.0.0.1:{port}")
        worker_metrics = []
        for i in range(2):
            port = free_port()
            procs.start(
                f"worker-{i}",
                "api.worker",
                {
                    **shared,
                    "TRITON_GRPC_URL": replicas[i].ports.grpc_url,
                    "WORKER_CONCURRENCY": "1",
                    "WORKER_METRICS_PORT": str(port),
                    "WORKER_METRICS_HOST": "127.0.0.1",
                },
            )
            worker_metrics.append(f"http://127.0.0.1:{port}/metrics")

        def answers(url: str) -> bool:
            try:
                return httpx.get(url, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(lambda: all(answers(f"{u}/openapi.json") for u in apis), 120, "both apis", procs)
        wait_for(lambda: all(answers(u) for u in worker_metrics), 120, "both workers' metrics", procs)

        def served(replica) -> float:
            return sum(
                counter(replica.ports.metrics_url, "nv_inference_request_success", model=m)
                for m in TRANSCRIPTION_MODELS
            )

        before = [served(r) for r in replicas]

        # one user, registered on the first api; its token works on the second
        r = httpx.post(
            f"{apis[0]}/api/v1/auth/register",
            json={"email": f"scale-{secrets.token_hex(4)}@example.com", "password": "correct horse battery"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        audio = wav_bytes(speech([0.5, 1.0, 0.5])[0])
        submitted = []  # (job id, session id, api index)
        for n in range(JOBS):
            i = n % 2
            r = httpx.post(
                f"{apis[i]}/api/v1/transcriptions/batch",
                files={"audio_file": (f"meeting-{n}.wav", audio, "audio/wav")},
                headers=headers,
                timeout=60,
            )
            assert r.status_code == 202, f"api-{i}: {r.status_code} {r.text}"
            submitted.append((uuid.UUID(r.json()["job_id"]), uuid.UUID(r.json()["session_id"]), i))
        assert len({j for j, _, _ in submitted}) == JOBS

        def finished() -> list[dict] | None:
            jobs = []
            for n, (job_id, _, _) in enumerate(submitted):
                # read through the other api than the one that took it
                r = httpx.get(f"{apis[(n + 1) % 2]}/api/v1/jobs/{job_id}", headers=headers, timeout=30)
                assert r.status_code == 200, r.text
                jobs.append(r.json())
            if any(j["status"] not in ("completed", "failed", "cancelled") for j in jobs):
                return None
            return jobs

        jobs = wait_for(finished, 420, f"{JOBS} transcription jobs", procs)
        assert [j["status"] for j in jobs] == ["completed"] * JOBS, f"{jobs}\n{procs.logs()}"

        # each exactly once: one attempt, one running and one completed event, one stored version
        db = Database(database)
        try:
            with db.session() as s:
                ids = [j for j, _, _ in submitted]
                rows = s.scalars(select(Job).where(Job.id.in_(ids))).all()
                assert sorted(r.id for r in rows) == sorted(ids)
                assert all(r.attempt == 1 for r in rows), [(r.id, r.attempt) for r in rows]
                events = s.scalars(
                    select(JobEvent).where(JobEvent.job_id.in_(ids), JobEvent.type == "status")
                ).all()
                running = Counter(e.job_id for e in events if e.data["status"] == "running")
                completed = Counter(e.job_id for e in events if e.data["status"] == "completed")
                assert running == Counter(ids) and completed == Counter(ids), (running, completed)
        finally:
            db.dispose()
        for n, (_, session_id, _) in enumerate(submitted):
            r = httpx.get(
                f"{apis[n % 2]}/api/v1/sessions/{session_id}/transcriptions", headers=headers, timeout=30
            )
            assert r.status_code == 200 and len(r.json()) == 1, r.text

        # both workers did work, and together exactly the jobs submitted
        done = [
            counter(u, "intrascribe_worker_jobs_finished_total", kind="transcribe", outcome="completed")
            for u in worker_metrics
        ]
        assert sum(done) == JOBS and all(d >= 1 for d in done), f"jobs per worker {done}"
        # each worker used its own replica
        after = [served(r) for r in replicas]
        print(
            f"jobs per worker {done}; inference requests per replica {[a - b for a, b in zip(after, before, strict=False)]}"
        )
        assert all(a > b for a, b in zip(after, before, strict=True)), (
            f"requests per replica {before} -> {after}"
        )
    finally:
        procs.stop()
