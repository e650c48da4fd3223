"""Re-queue jobs whose worker died (lease expired) and re-send lost wake-ups. Every worker runs one;
they may overlap freely because each change is a conditional UPDATE."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from api.jobs.queue import JobQueue
from api.jobs.store import JobStore

log = logging.getLogger("api.jobs")


class Reaper(threading.Thread):
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        interval_seconds: float,
        stale_after_seconds: float,
        on_reap: Callable[[int], None] | None = None,
    ):
        super().__init__(name="job-reaper", daemon=True)
        self.store = store
        self.queue = queue
        self.interval = interval_seconds
        self.stale_after = timedelta(seconds=stale_after_seconds)
        self.on_reap = on_reap
        self.stop = threading.Event()

    def run_once(self) -> tuple[list, list]:
        expired = self.store.reap_expired()
        stale = self.store.stale_queued(self.stale_after)
        for job_id in [*expired, *stale]:
            self.queue.dispatch(job_id)
        if expired:
            log.warning(
                "re-queued %d job(s) whose worker stopped: %s", len(expired), [str(j) for j in expired]
            )
            if self.on_reap:
                self.on_reap(len(expired))
        if stale:
            log.info("re-sent %d lost wake-up(s)", len(stale))
        return expired, stale

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                log.warning("reaper pass failed; retrying next interval", exc_info=True)
