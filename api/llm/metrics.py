"""Prometheus metrics of the LLM calls (summaries): latency, tokens and cost per configured model.

The :class:`~api.llm.client.LLM` is shared by the whole process (``get_llm``) while registries belong
to each worker/app (no global registry), so every live :class:`LLMMetrics` registers itself here and
:func:`record` counts a call in all of them. Listed in docs/metrics.md.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

LLM_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

_live: weakref.WeakSet[LLMMetrics] = weakref.WeakSet()
_lock = threading.Lock()


class LLMMetrics:
    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.requests = Counter(
            "intrascribe_llm_requests",
            "LLM chat calls by the configured model asked (ok) or first tried (error), and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "intrascribe_llm_request_duration_seconds",
            "Wall time of one LLM chat call (retries and fallbacks included).",
            ["model"],
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "intrascribe_llm_tokens",
            "Tokens of answered LLM calls, by model and kind.",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "intrascribe_llm_cost_usd",
            "Cost in USD of answered LLM calls (LiteLLM's accounting).",
            ["model"],
            registry=r,
        )
        with _lock:
            _live.add(self)

    def observe(
        self, model: str, outcome: str, seconds: float, prompt: int, completion: int, cost: float
    ) -> None:
        self.requests.labels(model, outcome).inc()
        self.duration.labels(model).observe(seconds)
        if outcome == "ok":
            self.tokens.labels(model, "prompt").inc(prompt)
            self.tokens.labels(model, "completion").inc(completion)
            self.cost.labels(model).inc(cost)


def record(
    model: str, outcome: str, seconds: float, prompt: int = 0, completion: int = 0, cost: float = 0.0
) -> None:
    """Count one LLM call (``outcome``: ``ok`` or ``error``) in every live :class:`LLMMetrics`."""
    with _lock:
        targets = list(_live)
    for m in targets:
        m.observe(model, outcome, seconds, prompt, completion, cost)
