"""Prometheus metrics of the api and the worker. Every name here is listed in docs/metrics.md.

Each app/worker owns a ``CollectorRegistry`` (no global state, so tests can build many apps).
Job counts by status are read from the database at scrape time: they are true across any number
of api and worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.llm.metrics import LLMMetrics
from api.models import JobStatus

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


class _JobsCollector(Collector):
    def __init__(self, counts: Callable[[], tuple[dict[str, int], float | None]]):
        self._counts = counts

    def collect(self):
        by_status = GaugeMetricFamily(
            "intrascribe_jobs", "Jobs in the database by status (all processes).", labels=["status"]
        )
        oldest = GaugeMetricFamily(
            "intrascribe_jobs_oldest_queued_seconds", "Age of the oldest queued job in seconds (0 if none)."
        )
        try:
            counts, oldest_age = self._counts()
        except Exception:
            return  # database down: /health says so; the scrape still succeeds
        for status in JobStatus:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        oldest.add_metric([], oldest_age or 0.0)
        yield by_status
        yield oldest


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "intrascribe_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "intrascribe_http_request_duration_seconds",
            "HTTP request latency (to the end of the response headers).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "intrascribe_http_requests_in_flight", "HTTP requests being served.", registry=r
        )
        self.auth_failures = Counter(
            "intrascribe_auth_failures", "Rejected credentials by reason.", ["reason"], registry=r
        )
        self.jobs_created = Counter(
            "intrascribe_jobs_created", "Jobs created by this api, by kind.", ["kind"], registry=r
        )
        self.blob_bytes = Counter(
            "intrascribe_blob_bytes_written", "Bytes written to the blob store.", ["backend"], registry=r
        )
        self.dependency_up = Gauge(
            "intrascribe_dependency_up",
            "1 if the dependency was healthy at the last /health check.",
            ["dependency"],
            registry=r,
        )
        self.build = Info("intrascribe_build", "Version and configuration of the api.", registry=r)
        self.llm = LLMMetrics(r)  # the sync /summarize and /generate-title (api/llm/metrics.py)

    def watch_jobs(self, counts: Callable[[], tuple[dict[str, int], float | None]]) -> None:
        self.registry.register(_JobsCollector(counts))


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.finished = Counter(
            "intrascribe_worker_jobs_finished",
            "Job executions ended in this worker, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "intrascribe_worker_job_duration_seconds",
            "Wall time of one job execution (one attempt).",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.jobs_reaped = Counter(
            "intrascribe_worker_jobs_reaped",
            "Jobs re-queued by this worker's reaper (lease expired).",
            registry=r,
        )
        self.started = Gauge("intrascribe_worker_start_time_seconds", "Worker start time (unix).", registry=r)
        self.started.set(time.time())
        self.llm = LLMMetrics(r)  # the summary jobs' LLM calls (api/llm/metrics.py)

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None:
        self.finished.labels(kind, outcome).inc()
        self.duration.labels(kind).observe(seconds)
