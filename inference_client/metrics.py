"""Read Triton's Prometheus metrics: request/execution counts and our batch-size histogram.

Batching is shown, not assumed: under concurrent load ``nv_inference_exec_count`` (model executions)
grows slower than ``nv_inference_count`` (inferences), and the models' own histogram
:data:`speechlib.interfaces.BATCH_SIZE_METRIC` (label ``model``) records the batch each execution
passed to the network runtime.

    before = inference_counts(scrape(url), "vad")
    ...  # load
    delta = inference_counts(scrape(url), "vad") - before
    print(delta.inferences / delta.executions)  # mean requests per execution
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from speechlib.interfaces import BATCH_SIZE_METRIC, TRITON_METRICS_PORT

DEFAULT_METRICS_URL = f"http://127.0.0.1:{TRITON_METRICS_PORT}/metrics"


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


Metrics = dict[str, list[Sample]]
"""Sample name (``nv_inference_count``, ``..._bucket``, ``..._sum``) -> its samples."""


def parse(text: str) -> Metrics:
    """Parse Prometheus text exposition format (what Triton's metrics port serves)."""
    metrics: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            sample = Sample(dict(s.labels), float(s.value))
            metrics.setdefault(s.name, []).append(sample)
            # The parser renames counter samples to ``<family>_total`` (OpenMetrics style); Triton's
            # counters are exposed without the suffix (``nv_inference_count``): keep that name too.
            if family.type == "counter" and s.name == f"{family.name}_total":
                metrics.setdefault(family.name, []).append(sample)
    return metrics


def scrape(metrics_url: str = DEFAULT_METRICS_URL, timeout_s: float = 5.0) -> Metrics:
    """Fetch and parse ``metrics_url`` (e.g. ``http://127.0.0.1:8102/metrics``). Blocking; from async
    code use ``await asyncio.to_thread(scrape, url)``."""
    with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
        return parse(response.read().decode("utf-8"))


def total(metrics: Metrics, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0.0 when none)."""
    return sum(s.value for s in metrics.get(name, ()) if all(s.labels.get(k) == v for k, v in labels.items()))


class InferenceCounts(NamedTuple):
    """Triton's counters for one model (all versions): inferences (requests x their batch size) and
    model executions. ``inferences / executions`` is the mean batch Triton formed."""

    inferences: float
    executions: float

    def __sub__(self, other: InferenceCounts) -> InferenceCounts:  # type: ignore[override]
        return InferenceCounts(self.inferences - other.inferences, self.executions - other.executions)

    @property
    def mean_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


def inference_counts(metrics: Metrics, model: str) -> InferenceCounts:
    """``(nv_inference_count, nv_inference_exec_count)`` of ``model``."""
    return InferenceCounts(
        total(metrics, "nv_inference_count", model=model),
        total(metrics, "nv_inference_exec_count", model=model),
    )


def settled_counts(metrics_url: str, model: str, timeout_s: float = 5.0) -> InferenceCounts:
    """``model``'s counters once earlier requests' statistics have landed: Triton updates them just
    after it sends the responses, so poll until two scrapes 100 ms apart agree (or ``timeout_s``)."""
    last = inference_counts(scrape(metrics_url), model)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = inference_counts(scrape(metrics_url), model)
        if now == last:
            break
        last = now
    return last


def counts_after(
    metrics_url: str, model: str, before: InferenceCounts, inferences: float, timeout_s: float = 10.0
) -> InferenceCounts:
    """The change in ``model``'s counters since ``before``, polled until at least ``inferences`` new
    inferences are counted (or ``timeout_s`` passes: the caller's assertion then says what is missing)."""
    deadline = time.monotonic() + timeout_s
    while True:
        delta = inference_counts(scrape(metrics_url), model) - before
        if delta.inferences >= inferences or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


class BatchSizes(NamedTuple):
    """Our histogram :data:`BATCH_SIZE_METRIC` for one model: executions observed and batch items."""

    count: float
    sum: float

    def __sub__(self, other: BatchSizes) -> BatchSizes:  # type: ignore[override]
        return BatchSizes(self.count - other.count, self.sum - other.sum)

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0


def batch_sizes(metrics: Metrics, model: str, metric: str = BATCH_SIZE_METRIC) -> BatchSizes:
    """Count and sum of the batch-size histogram for label ``model`` (zeros if not yet published)."""
    return BatchSizes(
        total(metrics, f"{metric}_count", model=model), total(metrics, f"{metric}_sum", model=model)
    )
