"""Dispatch through huey: a message says only "run job <id>"; the jobs row holds everything else.

huey (https://huey.readthedocs.io) was chosen because it is small (one pure-Python package, no
broker daemon of its own), has a Redis broker for production and a SQLite broker for the embedded
default with the same API, and does delayed retries and scheduling itself. Its messages are
at-least-once wake-ups here: a lost one is re-sent by the reaper, a duplicate loses the claim.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from huey import Huey, SqliteHuey
from huey.exceptions import RetryTask
from huey.storage import RedisStorage

from api.core.config import QueueBackend, Settings

log = logging.getLogger("api.jobs")

RUN_JOB_TASK = "intrascribe.run_job"


class _PrefixedRedisStorage(RedisStorage):
    """huey's Redis storage with every key under our prefix (``<REDIS_PREFIX>huey:<queue>:...``),
    so a deployment (or a test) shares a Redis without touching anyone else's keys."""

    def __init__(self, name: str = "huey", **kwargs):
        super().__init__(name=name, clean_name=False, **kwargs)
        self.queue_key = f"{name}queue"
        self.schedule_key = f"{name}schedule"
        self.result_key = f"{name}results"
        self.counter_key = f"{name}counters"
        self.notify_prefix = f"{name}notify."


class _RedisHuey(Huey):
    storage_class = _PrefixedRedisStorage


def make_huey(settings: Settings) -> Huey:
    if settings.resolved_queue_backend is QueueBackend.redis:
        if not settings.redis_url:
            raise ValueError("QUEUE_BACKEND=redis needs REDIS_URL")
        return _RedisHuey(
            f"{settings.redis_prefix}huey:{settings.queue_name}:",
            url=settings.redis_url,
            results=False,
            utc=True,
        )
    path = settings.resolved_queue_sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(settings.queue_name, filename=str(path), results=False, utc=True)


class JobQueue:
    """The api enqueues with ``dispatch``; a worker sets ``executor`` and runs huey's consumer."""

    def __init__(self, settings: Settings, huey: Huey | None = None):
        self.settings = settings
        self.huey = huey or make_huey(settings)
        self.executor: Callable[[str], str] | None = None
        from api.jobs.runner import RetryLater

        def run_job(job_id: str) -> str:
            if self.executor is None:
                raise RuntimeError("this process is not a job worker")
            try:
                return self.executor(job_id)
            except RetryLater as e:
                # the row went back to queued: huey delivers the wake-up again after the delay
                raise RetryTask(str(e), delay=settings.job_retry_delay_seconds) from e

        # huey also retries when the executor itself fails (e.g. the database is briefly down).
        self._task = self.huey.task(
            retries=max(settings.job_max_attempts, 1),
            retry_delay=settings.job_retry_delay_seconds,
            name=RUN_JOB_TASK,
        )(run_job)

    def dispatch(self, job_id: uuid.UUID | str, delay: float | None = None) -> bool:
        """Send a wake-up. False (logged) if the broker is unreachable: the job stays queued in the
        database and the reaper re-sends it."""
        try:
            if delay:
                self._task.schedule(args=(str(job_id),), delay=delay)
            else:
                self._task(str(job_id))
            return True
        except Exception:
            log.warning("could not enqueue job %s; the reaper will retry", job_id, exc_info=True)
            return False

    def pending(self) -> int:
        return self.huey.pending_count()

    def flush(self) -> None:
        """Drop every queued message of this queue (tests)."""
        self.huey.storage.flush_all()
