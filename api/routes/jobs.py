"""Job status, progress stream (SSE) and cancel; ``/api/v2/tasks`` is the original's alias."""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from api.core.security import Principal, Scope
from api.db.types import utcnow
from api.deps import DB, Ctx, require_scopes
from api.jobs.store import JobStore
from api.models import TERMINAL_JOB_STATUSES, Job, JobStatus
from api.schemas import MAX_OFFSET, JobOut, TaskStatusOut, Text
from api.sse import poll_sse, sse_response
from api.sse import sse_frame as _sse

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
tasks_router = APIRouter(prefix="/api/v2/tasks", tags=["jobs"])

Reader = Annotated[Principal, require_scopes(Scope.JOBS_READ)]
Writer = Annotated[Principal, require_scopes(Scope.JOBS_WRITE)]


def _owned(db, principal: Principal, job_id: uuid.UUID) -> Job:
    job = db.scalar(select(Job).where(Job.id == job_id, Job.user_id == principal.user_id))
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found")
    return job


@router.get("", response_model=list[JobOut])
def list_jobs(
    db: DB,
    principal: Reader,
    status_: Annotated[list[JobStatus] | None, Query(alias="status")] = None,
    kind: Annotated[Text | None, Query(max_length=100)] = None,
    session_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[Job]:
    query = select(Job).where(Job.user_id == principal.user_id)
    if status_:
        query = query.where(Job.status.in_([s.value for s in status_]))
    if kind:
        query = query.where(Job.kind == kind)
    if session_id:
        query = query.where(Job.session_id == session_id)
    return list(db.scalars(query.order_by(Job.created_at.desc()).limit(limit).offset(offset)))


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: uuid.UUID, db: DB, principal: Reader) -> Job:
    return _owned(db, principal, job_id)


def _cancel(db, principal: Principal, job_id: uuid.UUID) -> Job:
    job = _owned(db, principal, job_id)
    if job.status in TERMINAL_JOB_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job already {job.status}")
    JobStore.request_cancel(db, job_id)
    db.commit()
    db.refresh(job)
    return job


@router.delete("/{job_id}", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED)
def cancel_job(job_id: uuid.UUID, db: DB, principal: Writer) -> Job:
    """A queued job is cancelled at once; a running one stops at its next chunk (watch its events)."""
    return _cancel(db, principal, job_id)


class StreamSlots:
    """Open SSE streams per user in this process, capped (each holds a connection and polls)."""

    def __init__(self, per_user: int):
        self.per_user = per_user
        self._open: dict[uuid.UUID, int] = {}
        self._lock = threading.Lock()

    def acquire(self, user_id: uuid.UUID) -> bool:
        with self._lock:
            if self._open.get(user_id, 0) >= self.per_user:
                return False
            self._open[user_id] = self._open.get(user_id, 0) + 1
            return True

    def release(self, user_id: uuid.UUID) -> None:
        with self._lock:
            left = self._open.get(user_id, 0) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)


def _stream_slots(ctx) -> StreamSlots:
    slots = ctx.extras.get("sse_slots")
    if slots is None:
        slots = ctx.extras.setdefault("sse_slots", StreamSlots(ctx.settings.sse_max_streams_per_user))
    return slots


def acquire_stream_slot(ctx, user_id: uuid.UUID) -> StreamSlots:
    """One of the user's SSE_MAX_STREAMS_PER_USER event streams (job or live), or 429 + Retry-After.
    The caller releases it (``slots.release(user_id)``) when its stream ends."""
    slots = _stream_slots(ctx)
    if not slots.acquire(user_id):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many open event streams (limit {slots.per_user}); close one",
            headers={"Retry-After": "5"},
        )
    return slots


_EVENT_ID = re.compile(r"^[0-9]{1,18}$")


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events; see docs/jobs.md"},
        429: {"description": "too many open event streams for this user (SSE_MAX_STREAMS_PER_USER)"},
    },
)
async def job_events(
    job_id: uuid.UUID,
    request: Request,
    ctx: Ctx,
    principal: Reader,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
):
    """Server-Sent Events: a ``snapshot`` of the job, then its ``status`` and ``progress`` events
    (``id`` = event sequence number; reconnect with ``Last-Event-ID`` to resume without gaps).
    The stream ends after a terminal status (completed, failed, cancelled), at once if the job had
    already finished, and after SSE_MAX_STREAM_SECONDS (reconnect to go on)."""

    def load():
        with ctx.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id, Job.user_id == principal.user_id))
            if job is None:
                return None, 0
            return JobOut.model_validate(job).model_dump(mode="json"), ctx.jobs.last_event_id(s, job_id)

    snapshot, last_id = await anyio.to_thread.run_sync(load)
    if snapshot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found")
    # Last-Event-ID is the client's echo of an id we sent: anything else is ignored (full replay);
    # an id beyond the newest event resumes from the newest.
    resume_from: int | None = None
    if last_event_id is not None and _EVENT_ID.match(last_event_id.strip()):
        resume_from = min(int(last_event_id.strip()), last_id)
    slots = acquire_stream_slot(ctx, principal.user_id)
    deadline = time.monotonic() + ctx.settings.sse_max_stream_seconds
    finished = snapshot["status"] in TERMINAL_JOB_STATUSES

    async def stream():
        try:
            after = last_id
            if resume_from is None:
                yield _sse(last_id, "snapshot", snapshot)
                if finished:
                    return
            else:
                after = resume_from

            def poll():
                nonlocal after
                events = ctx.jobs.events_after(job_id, after)
                if events:
                    after = events[-1].id
                return [(ev.id, ev.type, ev.data) for ev in events]

            async for frame in poll_sse(
                request,
                poll,
                deadline=deadline,
                stop_after=lambda kind, data: kind == "status"
                and data.get("status") in TERMINAL_JOB_STATUSES,
                # resumed past the job's last event: nothing more will come
                stop_when_idle=lambda: finished,
            ):
                yield frame
        finally:
            slots.release(principal.user_id)

    return sse_response(stream())


# ------------------------------------------------------------------------------ original alias
def _task_envelope(job: Job, message: str) -> TaskStatusOut:
    out = JobOut.model_validate(job)
    return TaskStatusOut(
        message=message,
        timestamp=utcnow(),
        task_id=job.id,
        status=out.status,
        progress=out.progress,
        result=out.result,
        error=out.error.message if out.error else None,
        job=out,
    )


@tasks_router.get("/{task_id}/status", response_model=TaskStatusOut)
def task_status(task_id: uuid.UUID, db: DB, principal: Reader) -> TaskStatusOut:
    return _task_envelope(_owned(db, principal, task_id), "Task status retrieved")


@tasks_router.get("/{task_id}", response_model=TaskStatusOut)
def task_get(task_id: uuid.UUID, db: DB, principal: Reader) -> TaskStatusOut:
    return _task_envelope(_owned(db, principal, task_id), "Task status retrieved")


@tasks_router.delete("/{task_id}", response_model=TaskStatusOut)
def task_cancel(task_id: uuid.UUID, db: DB, principal: Writer) -> TaskStatusOut:
    return _task_envelope(_cancel(db, principal, task_id), "Task cancellation requested")
