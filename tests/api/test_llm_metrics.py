"""api/llm/metrics.py: every LLM call through LiteLLM's real client (against loopback OpenAI-compatible
servers, tests/api/fake_llm.py) is counted in the worker's and the api's registries: answered calls
with their tokens and cost, calls no model answered as ``outcome="error"`` under the first model."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from api.llm.client import LLM, LLMUnavailable
from api.llm.config import load_config
from api.metrics import ApiMetrics, WorkerMetrics
from tests.api.fake_llm import FakeLLM, model_entry, write_config

MESSAGES = [{"role": "user", "content": "Say hello."}]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_answered_call_counts_tokens_cost_and_latency(tmp_path):
    worker, api = WorkerMetrics(), ApiMetrics()
    with FakeLLM(lambda m: "hello", usage=(1000, 40)) as fake:
        config = write_config(
            tmp_path / "llm.yaml",
            [model_entry(fake, "priced", input_cost_per_token=2e-6, output_cost_per_token=1e-5)],
            timeout=60,
        )
        reply = LLM(load_config(config)).complete(MESSAGES)
    assert reply.text == "hello"
    for registry in (worker.registry, api.registry):
        assert value(registry, "intrascribe_llm_requests_total", model="priced", outcome="ok") == 1
        assert value(registry, "intrascribe_llm_tokens_total", model="priced", kind="prompt") == 1000
        assert value(registry, "intrascribe_llm_tokens_total", model="priced", kind="completion") == 40
        assert value(registry, "intrascribe_llm_cost_usd_total", model="priced") == pytest.approx(
            1000 * 2e-6 + 40 * 1e-5
        )
        assert value(registry, "intrascribe_llm_request_duration_seconds_count", model="priced") == 1
        assert value(registry, "intrascribe_llm_requests_total", model="priced", outcome="error") is None


def test_unanswered_call_is_one_error_under_the_first_model(tmp_path):
    worker = WorkerMetrics()
    with FakeLLM(mode="error500", name="a") as a, FakeLLM(mode="error500", name="b") as b:
        config = write_config(
            tmp_path / "llm.yaml", [model_entry(a, priority=1), model_entry(b, priority=2)], timeout=60
        )
        with pytest.raises(LLMUnavailable):
            LLM(load_config(config)).complete(MESSAGES)
    r = worker.registry
    assert value(r, "intrascribe_llm_requests_total", model="a", outcome="error") == 1
    assert value(r, "intrascribe_llm_requests_total", model="b", outcome="error") is None
    assert value(r, "intrascribe_llm_tokens_total", model="a", kind="prompt") is None
    assert value(r, "intrascribe_llm_request_duration_seconds_count", model="a") == 1
