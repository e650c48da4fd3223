"""The one call a feature makes to start background work from a request."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from api.jobs.store import JobStore
from api.models import Job

if TYPE_CHECKING:
    from api.context import AppContext


def submit_job(
    ctx: AppContext,
    s: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | None = None,
) -> Job:
    """Insert the job, commit (so it survives anything that follows), then wake a worker.

    If the wake-up cannot be sent (broker down), the job still exists as ``queued`` and a worker's
    reaper re-sends it within ``JOB_REQUEUE_STALE_SECONDS``. Commits ``s``.
    """
    job = JobStore.create(
        s, kind, params, user_id=user_id, session_id=session_id, max_attempts=ctx.settings.job_max_attempts
    )
    s.commit()
    ctx.metrics.jobs_created.labels(kind).inc()
    ctx.queue.dispatch(job.id)
    return job
