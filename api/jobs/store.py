"""The durable half of the job system: every state change is one conditional UPDATE on the jobs row.

Who may change a running job is decided by the row itself: ``status = 'running' AND lease_owner =
<me>``. A worker that lost its lease (it stalled past the expiry and the reaper handed the job to
someone else) finds that its writes match no row, and stops. So a job is claimed by one worker at a
time, a checkpoint is written only by the current owner, and ``completed`` is reached exactly once.

Each transition and each progress report appends a ``job_events`` row in the same transaction; the
SSE stream replays those rows (their ids are the SSE event ids).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from api.db.session import Database
from api.db.types import utcnow
from api.models import Job, JobEvent, JobStatus

QUEUED, RUNNING = JobStatus.queued.value, JobStatus.running.value
COMPLETED, FAILED, CANCELLED = JobStatus.completed.value, JobStatus.failed.value, JobStatus.cancelled.value


# The statuses of a job that is still to finish (queued or running).
ACTIVE_JOB_STATUSES: tuple[str, ...] = (JobStatus.queued.value, JobStatus.running.value)


def active_job_of_session(s: Session, session_id: uuid.UUID, kind: str) -> uuid.UUID | None:
    """The id of a job of ``kind`` for the session that is queued or running (None if none)."""
    return s.scalar(
        select(Job.id)
        .where(Job.session_id == session_id, Job.kind == kind, Job.status.in_(ACTIVE_JOB_STATUSES))
        .limit(1)
    )


def job_error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def status_event(job_id: uuid.UUID, status: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "type": "status", "data": {"job_id": str(job_id), "status": status, **extra}}


def progress_event(job_id: uuid.UUID, progress: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": job_id, "type": "progress", "data": {"job_id": str(job_id), **progress}}


def make_progress(done: int, total: int | None, stage: str | None) -> dict[str, Any]:
    return {"done": int(done), "total": None if total is None else int(total), "stage": stage}


@dataclass(frozen=True)
class Lease:
    alive: bool
    cancel_requested: bool


class JobStore:
    def __init__(self, db: Database, lease_seconds: float = 30.0):
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)

    # ------------------------------------------------------------------ creation (api side)
    @staticmethod
    def create(
        s: Session,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        user_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        max_attempts: int = 3,
    ) -> Job:
        """Insert a queued job (caller commits, then dispatches it)."""
        job = Job(
            id=uuid.uuid4(),
            kind=kind,
            params=params or {},
            user_id=user_id,
            session_id=session_id,
            status=QUEUED,
            max_attempts=max_attempts,
            progress=make_progress(0, None, "queued"),
            enqueued_at=utcnow(),
        )
        s.add(job)
        s.flush()
        s.execute(insert(JobEvent), [status_event(job.id, QUEUED, attempt=0)])
        return job

    def get(self, job_id: uuid.UUID) -> Job | None:
        with self.db.session() as s:
            return s.get(Job, job_id)

    # ------------------------------------------------------------------ transitions (worker side)
    def _transition(
        self, s: Session, job_id: uuid.UUID, where, values: dict[str, Any], events: list[dict]
    ) -> bool:
        values.setdefault("updated_at", utcnow())
        res = s.execute(update(Job).where(Job.id == job_id, where).values(**values))
        if res.rowcount != 1:
            return False
        if events:
            s.execute(insert(JobEvent), events)
        return True

    def claim(self, job_id: uuid.UUID, owner: str) -> Job | None:
        """Take a queued job: the one atomic step that makes ``owner`` its only runner."""
        now = utcnow()
        with self.db.session() as s:
            ok = self._transition(
                s,
                job_id,
                and_(Job.status == QUEUED, Job.cancel_requested.is_(False)),
                {
                    "status": RUNNING,
                    "lease_owner": owner,
                    "lease_expires_at": now + self.lease,
                    "heartbeat_at": now,
                    "attempt": Job.attempt + 1,
                    "started_at": now,
                    "error": None,
                },
                [],
            )
            if not ok:
                return None
            job = s.get(Job, job_id)
            s.execute(insert(JobEvent), [status_event(job_id, RUNNING, attempt=job.attempt)])
            return job

    def _owned(self, owner: str):
        return and_(Job.status == RUNNING, Job.lease_owner == owner)

    def heartbeat(self, job_id: uuid.UUID, owner: str) -> Lease:
        """Extend the lease; also tells the worker whether a cancel was requested."""
        now = utcnow()
        with self.db.session() as s:
            ok = self._transition(
                s, job_id, self._owned(owner), {"heartbeat_at": now, "lease_expires_at": now + self.lease}, []
            )
            if not ok:
                return Lease(False, False)
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
            return Lease(True, bool(cancel))

    def lease_state(self, job_id: uuid.UUID, owner: str) -> Lease:
        """Read-only check (each chunk): do we still hold the lease, and is a cancel pending?"""
        with self.db.session() as s:
            row = s.execute(
                select(Job.status, Job.lease_owner, Job.cancel_requested).where(Job.id == job_id)
            ).one_or_none()
        if row is None:
            return Lease(False, True)
        return Lease(row.status == RUNNING and row.lease_owner == owner, bool(row.cancel_requested))

    def save_progress(
        self,
        job_id: uuid.UUID,
        owner: str,
        progress: dict[str, Any],
        checkpoint: dict[str, Any] | None = None,
    ) -> bool:
        """Record progress (and a checkpoint, atomically with it). False: the lease is gone."""
        now = utcnow()
        values: dict[str, Any] = {
            "progress": progress,
            "heartbeat_at": now,
            "lease_expires_at": now + self.lease,
        }
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        with self.db.session() as s:
            return self._transition(s, job_id, self._owned(owner), values, [progress_event(job_id, progress)])

    def complete(self, job_id: uuid.UUID, owner: str, result: dict[str, Any] | None) -> bool:
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id)
            progress = dict(job.progress or {}) if job else {}
            if progress.get("total") is not None:
                progress["done"] = progress["total"]
            progress["stage"] = COMPLETED
            return self._transition(
                s,
                job_id,
                self._owned(owner),
                {
                    "status": COMPLETED,
                    "result": result,
                    "progress": progress,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "finished_at": now,
                },
                [status_event(job_id, COMPLETED, attempt=job.attempt if job else None)],
            )

    def cancelled(self, job_id: uuid.UUID, owner: str) -> bool:
        now = utcnow()
        with self.db.session() as s:
            return self._transition(
                s,
                job_id,
                self._owned(owner),
                {"status": CANCELLED, "lease_owner": None, "lease_expires_at": None, "finished_at": now},
                [status_event(job_id, CANCELLED)],
            )

    def fail(self, job_id: uuid.UUID, owner: str, error: dict[str, str], *, retryable: bool) -> str | None:
        """Give the job up: back to ``queued`` if attempts remain and the error is retryable, else
        ``failed``. Returns the new status, or None if the lease was already gone."""
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            again = retryable and job.attempt < job.max_attempts and not job.cancel_requested
            new = QUEUED if again else FAILED
            values: dict[str, Any] = {
                "status": new,
                "error": error,
                "lease_owner": None,
                "lease_expires_at": None,
            }
            if again:
                values["enqueued_at"] = now
            else:
                values["finished_at"] = now
            ok = self._transition(
                s,
                job_id,
                self._owned(owner),
                values,
                [status_event(job_id, new, attempt=job.attempt, error=error)],
            )
            return new if ok else None

    def release(self, job_id: uuid.UUID, owner: str) -> bool:
        """Hand a running job back to the queue now (worker shutting down): no waiting for the lease
        to expire, and the attempt is not counted against the job."""
        now = utcnow()
        err = job_error("worker_shutdown", "the worker running this job shut down; resuming elsewhere")
        with self.db.session() as s:
            return self._transition(
                s,
                job_id,
                self._owned(owner),
                {
                    "status": QUEUED,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "attempt": Job.attempt - 1,
                    "error": err,
                    # no wake-up from a process that is exiting (its own consumer threads could
                    # swallow it): NULL marks the job for the next reaper pass of any worker
                    "enqueued_at": None,
                    "updated_at": now,
                },
                [status_event(job_id, QUEUED, error=err)],
            )

    # ------------------------------------------------------------------ reaper
    def reap_expired(self, now: datetime | None = None) -> list[uuid.UUID]:
        """Running jobs whose lease ran out (their worker died or stalled): re-queue them, or end
        them if cancelled or out of attempts. Returns the ids to dispatch again."""
        now = now or utcnow()
        requeued: list[uuid.UUID] = []
        with self.db.session() as s:
            rows = s.execute(
                select(Job.id, Job.lease_owner, Job.attempt, Job.max_attempts, Job.cancel_requested).where(
                    Job.status == RUNNING, Job.lease_expires_at < now
                )
            ).all()
        for row in rows:
            # Conditional on the owner we saw: if the worker heartbeated meanwhile, nothing happens.
            where = and_(
                Job.status == RUNNING, Job.lease_owner == row.lease_owner, Job.lease_expires_at < now
            )
            base = {"lease_owner": None, "lease_expires_at": None}
            with self.db.session() as s:
                if row.cancel_requested:
                    self._transition(
                        s,
                        row.id,
                        where,
                        {**base, "status": CANCELLED, "finished_at": now},
                        [status_event(row.id, CANCELLED)],
                    )
                elif row.attempt >= row.max_attempts:
                    err = job_error(
                        "lease_expired", f"the worker running this job stopped {row.attempt} times"
                    )
                    self._transition(
                        s,
                        row.id,
                        where,
                        {**base, "status": FAILED, "error": err, "finished_at": now},
                        [status_event(row.id, FAILED, attempt=row.attempt, error=err)],
                    )
                else:
                    err = job_error("lease_expired", "the worker running this job stopped; retrying")
                    if self._transition(
                        s,
                        row.id,
                        where,
                        {**base, "status": QUEUED, "error": err, "enqueued_at": now},
                        [status_event(row.id, QUEUED, attempt=row.attempt, error=err)],
                    ):
                        requeued.append(row.id)
        return requeued

    def stale_queued(self, older_than: timedelta, now: datetime | None = None) -> list[uuid.UUID]:
        """Queued jobs whose wake-up may have been lost (enqueue failed, broker flushed): bump their
        ``enqueued_at`` and return them for another dispatch. A duplicate wake-up is harmless."""
        now = now or utcnow()
        cutoff = now - older_than
        out = []
        with self.db.session() as s:
            ids = s.scalars(
                select(Job.id).where(
                    Job.status == QUEUED, or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff)
                )
            ).all()
            for job_id in ids:
                res = s.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.status == QUEUED,
                        or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff),
                    )
                    .values(enqueued_at=now)
                )
                if res.rowcount == 1:
                    out.append(job_id)
        return out

    # ------------------------------------------------------------------ cancel (api side)
    @staticmethod
    def request_cancel(s: Session, job_id: uuid.UUID) -> bool:
        """Cancel: a queued job ends now; a running one gets the flag its worker checks per chunk.
        Returns False if the job had already finished. Caller commits."""
        now = utcnow()
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == QUEUED)
            .values(status=CANCELLED, cancel_requested=True, finished_at=now, updated_at=now)
        )
        if res.rowcount == 1:
            s.execute(insert(JobEvent), [status_event(job_id, CANCELLED)])
            return True
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == RUNNING)
            .values(cancel_requested=True, updated_at=now)
        )
        return res.rowcount == 1

    # ------------------------------------------------------------------ events (SSE)
    def events_after(self, job_id: uuid.UUID, after_id: int, limit: int = 500) -> list[JobEvent]:
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
                    .order_by(JobEvent.id)
                    .limit(limit)
                )
            )

    def last_event_id(self, s: Session, job_id: uuid.UUID) -> int:
        from sqlalchemy import func

        return s.scalar(select(func.coalesce(func.max(JobEvent.id), 0)).where(JobEvent.job_id == job_id)) or 0
