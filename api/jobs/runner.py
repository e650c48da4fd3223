"""Run one job inside a worker: claim it, keep its lease alive, run its handler, record the end."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.jobs.kinds import JobCancelled, JobError, JobHandler, LeaseLost
from api.jobs.store import JobStore, job_error, make_progress

if TYPE_CHECKING:
    from api.blobstore import BlobStore
    from api.core.config import Settings
    from api.db.session import Database
    from api.inference import WorkerInference

log = logging.getLogger("api.jobs")


@dataclass
class JobServices:
    """What a handler may use besides its job: the worker's settings, database, blob store and its
    one Triton client (:class:`api.inference.WorkerInference`, shared by every job of the process)."""

    settings: Settings
    db: Database
    blobs: BlobStore
    inference: WorkerInference


class RetryLater(Exception):
    """The job went back to ``queued``: the task queue should deliver it again after its delay."""


class JobContext:
    """What a handler sees of its job. All writes are guarded by the lease."""

    def __init__(self, store: JobStore, job: Any, owner: str, services: JobServices | None = None):
        self._store = store
        self.services = services  # None only where a worker was built without them (tests' kinds)
        self._owner = owner
        self.job_id: uuid.UUID = job.id
        self.kind: str = job.kind
        self.params: dict[str, Any] = dict(job.params or {})
        self.checkpoint: dict[str, Any] | None = job.checkpoint
        self.attempt: int = job.attempt
        self.max_attempts: int = job.max_attempts
        self.user_id: uuid.UUID | None = job.user_id
        self.session_id: uuid.UUID | None = job.session_id
        self.cancel_seen = threading.Event()  # set by the heartbeat thread too
        self.lease_lost = threading.Event()

    def check(self) -> None:
        """Call before each chunk: raises JobCancelled or LeaseLost when the job must stop."""
        if not self.lease_lost.is_set() and not self.cancel_seen.is_set():
            state = self._store.lease_state(self.job_id, self._owner)
            if not state.alive:
                self.lease_lost.set()
            if state.cancel_requested:
                self.cancel_seen.set()
        if self.lease_lost.is_set():
            raise LeaseLost(str(self.job_id))
        if self.cancel_seen.is_set():
            raise JobCancelled(str(self.job_id))

    def report(self, done: int, total: int | None = None, stage: str | None = None) -> None:
        """Progress without a checkpoint (e.g. inside a long chunk)."""
        if not self._store.save_progress(self.job_id, self._owner, make_progress(done, total, stage)):
            self.lease_lost.set()
            raise LeaseLost(str(self.job_id))

    def save(
        self, checkpoint: dict[str, Any], done: int, total: int | None = None, stage: str | None = None
    ) -> None:
        """Persist a checkpoint with its progress: after this returns, the chunk is never redone."""
        if not self._store.save_progress(
            self.job_id, self._owner, make_progress(done, total, stage), checkpoint
        ):
            self.lease_lost.set()
            raise LeaseLost(str(self.job_id))
        self.checkpoint = checkpoint


class _Heartbeat(threading.Thread):
    def __init__(self, store: JobStore, ctx: JobContext, owner: str, interval: float):
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.store, self.ctx, self.owner, self.interval = store, ctx, owner, interval
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                lease = self.store.heartbeat(self.ctx.job_id, self.owner)
            except Exception:  # a database blip: try again next beat; the lease has slack
                log.warning("heartbeat for job %s failed", self.ctx.job_id, exc_info=True)
                continue
            if not lease.alive:
                self.ctx.lease_lost.set()
                return
            if lease.cancel_requested:
                self.ctx.cancel_seen.set()


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobExecutor:
    """Executes jobs by id. One per worker process; thread-safe."""

    def __init__(
        self,
        store: JobStore,
        handlers: dict[str, JobHandler],
        heartbeat_seconds: float = 10.0,
        on_finish: Any = None,
        services: JobServices | None = None,
    ):
        self.store = store
        self.services = services
        self.handlers = handlers
        self.heartbeat_seconds = heartbeat_seconds
        self.on_finish = on_finish  # callback(kind, status, seconds) for metrics
        self.identity = worker_identity()
        self._active: dict[uuid.UUID, str] = {}  # job id -> lease owner, jobs running in this process
        self._active_lock = threading.Lock()

    def release_all(self) -> list[uuid.UUID]:
        """Shutdown: give every job this process runs back to the queue (their threads then find
        the lease gone at their next write and stop). Returns the released ids."""
        with self._active_lock:
            active = list(self._active.items())
        return [job_id for job_id, owner in active if self.store.release(job_id, owner)]

    def run(self, job_id: str | uuid.UUID) -> str:
        """Returns what happened: not_claimed, completed, cancelled, failed, lease_lost; raises
        RetryLater when the job was re-queued for another attempt."""
        job_id = uuid.UUID(str(job_id))
        owner = f"{self.identity}:{uuid.uuid4().hex[:8]}"
        job = self.store.claim(job_id, owner)
        if job is None:
            return "not_claimed"
        ctx = JobContext(self.store, job, owner, self.services)
        handler = self.handlers.get(job.kind)
        started = time.monotonic()
        heartbeat = _Heartbeat(self.store, ctx, owner, self.heartbeat_seconds)
        heartbeat.start()
        with self._active_lock:
            self._active[job_id] = owner
        outcome = "failed"
        try:
            if handler is None:
                self.store.fail(
                    job_id,
                    owner,
                    job_error("unknown_kind", f"no handler for job kind {job.kind!r}"),
                    retryable=False,
                )
                return "failed"
            log.info("job %s (%s) attempt %d started by %s", job_id, job.kind, job.attempt, owner)
            try:
                result = handler(ctx)
            except JobCancelled:
                outcome = "cancelled" if self.store.cancelled(job_id, owner) else "lease_lost"
                return outcome
            except LeaseLost:
                outcome = "lease_lost"
                log.warning("job %s: lease lost, another worker owns it now", job_id)
                return outcome
            except JobError as e:
                log.info("job %s (%s) failed: %s %s", job_id, job.kind, e.code, e.message)
                new = self.store.fail(job_id, owner, job_error(e.code, e.message), retryable=e.retryable)
                outcome = self._outcome_of_failure(new)
            except Exception:
                ref = uuid.uuid4().hex[:12]
                log.exception("job %s (%s) crashed [ref %s]", job_id, job.kind, ref)
                err = job_error("internal_error", f"the job failed unexpectedly (worker log ref {ref})")
                new = self.store.fail(job_id, owner, err, retryable=True)
                outcome = self._outcome_of_failure(new)
            else:
                if self.store.complete(job_id, owner, result):
                    outcome = "completed"
                else:
                    outcome = "lease_lost"
                    log.warning("job %s finished but its lease was gone; result discarded", job_id)
            if outcome == "retry":
                raise RetryLater(str(job_id))
            return outcome
        finally:
            heartbeat.stop.set()
            with self._active_lock:
                self._active.pop(job_id, None)
            if self.on_finish is not None:
                try:
                    self.on_finish(job.kind, outcome, time.monotonic() - started)
                except Exception:
                    log.debug("on_finish callback failed", exc_info=True)

    @staticmethod
    def _outcome_of_failure(new_status: str | None) -> str:
        return {"queued": "retry", "failed": "failed"}.get(new_status or "", "lease_lost")
