"""The job worker: ``python -m api.worker`` (settings from the environment, as the api).

Runs huey's consumer (``WORKER_CONCURRENCY`` threads) executing jobs, a reaper thread, and, if
``WORKER_METRICS_PORT`` is set, a Prometheus endpoint with the worker's metrics. Any number of
workers may run against one database and queue. SIGINT stops gracefully (running jobs finish);
SIGTERM stops at once and hands running jobs back to the queue (they resume from their checkpoint
on another worker). After SIGKILL or a crash, a reaper re-queues them when their lease expires.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry, start_http_server

from api.blobstore import make_blob_store
from api.core.config import Settings, get_settings
from api.db.session import Database
from api.inference import WorkerInference
from api.jobs.kinds import load_job_modules
from api.jobs.queue import JobQueue
from api.jobs.reaper import Reaper
from api.jobs.runner import JobExecutor, JobServices
from api.jobs.store import JobStore
from api.metrics import WorkerMetrics

log = logging.getLogger("api.worker")


def build_worker(settings: Settings, registry: CollectorRegistry | None = None):
    db = Database(settings.resolved_database_url, echo=settings.database_echo)
    store = JobStore(db, lease_seconds=settings.job_lease_seconds)
    queue = JobQueue(settings)
    metrics = WorkerMetrics(registry or CollectorRegistry())
    # one Triton client (made on the first job that needs it) for every job of this process
    services = JobServices(settings, db, make_blob_store(settings), WorkerInference(settings))
    executor = JobExecutor(
        store,
        load_job_modules(settings.extra_job_modules),
        heartbeat_seconds=settings.job_heartbeat_seconds,
        on_finish=metrics.job_finished,
        services=services,
    )
    queue.executor = executor.run
    reaper = Reaper(
        store,
        queue,
        interval_seconds=settings.job_reaper_interval_seconds,
        stale_after_seconds=settings.job_requeue_stale_seconds,
        on_reap=metrics.jobs_reaped.inc,
    )
    return db, queue, reaper, metrics, executor


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    db, queue, reaper, metrics, executor = build_worker(settings)
    if settings.worker_metrics_port:
        start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=metrics.registry
        )
    reaper.start()
    log.info(
        "worker started: queue=%s database=%s concurrency=%d",
        settings.resolved_queue_backend.value,
        db.dialect,
        settings.worker_concurrency,
    )
    consumer = queue.huey.create_consumer(
        workers=settings.worker_concurrency,
        worker_type="thread",
        periodic=False,
        initial_delay=0.05,
        backoff=1.5,
        max_delay=0.5,
        check_worker_health=True,
    )
    try:
        consumer.run()
    finally:
        reaper.stop.set()
        # SIGTERM stops huey without waiting for running jobs: hand them back so another worker
        # resumes them from their checkpoint now instead of after the lease expires.
        released = executor.release_all()
        if released:
            log.info("released %d running job(s) on shutdown", len(released))
        if executor.services is not None:
            executor.services.inference.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
