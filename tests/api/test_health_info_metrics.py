"""/health (one entry per dependency, 200/503), /health/live, /info (models from Triton), /metrics and
docs/metrics.md naming every metric."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.main import create_app
from api.metrics import WorkerMetrics
from tests.api.conftest import make_settings, register
from tests.api.fakes import FakeTriton, serve

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

MODELS = {
    "vad": {
        "name": "vad",
        "backend": "python",
        "max_batch_size": 32,
        "input": [{"name": "WAVEFORM", "data_type": "TYPE_FP32", "dims": [-1], "allow_ragged_batch": True}],
        "dynamic_batching": {"preferred_batch_size": [8, 16], "max_queue_delay_microseconds": 2000},
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
    },
    "vad_stream": {
        "name": "vad_stream",
        "backend": "python",
        "max_batch_size": 16,
        "input": [{"name": "AUDIO_CHUNK", "data_type": "TYPE_FP32", "dims": [-1]}],
        "sequence_batching": {
            "oldest": {"max_candidate_sequences": 64},
            "max_sequence_idle_microseconds": 5000000,
        },
    },
}


@pytest.fixture
def triton():
    fake = FakeTriton(MODELS)
    with serve(fake) as url:
        yield fake, url


OPERATOR_TOKEN = "operator-" + "o" * 24


def _client(tmp_path, sqlite_url, **overrides) -> TestClient:
    """A client that sends the operator token (health details are the operator's)."""
    overrides.setdefault("operator_token", OPERATOR_TOKEN)
    return TestClient(
        create_app(make_settings(tmp_path, database_url=sqlite_url, **overrides)),
        raise_server_exceptions=False,
        headers={"Authorization": f"Bearer {overrides['operator_token']}"},
    )


def test_public_health_tells_only_the_status(tmp_path, sqlite_url):
    with _client(tmp_path, sqlite_url, triton_http_url=_closed_port()) as c:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
            r = c.get("/health", headers=headers)
            assert r.status_code == 503 and r.json() == {"status": "unavailable"}
        detailed = c.get("/health").json()
        assert detailed["failing"] == ["triton"] and "127.0.0.1" in detailed["checks"]["triton"]["url"]


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_health_reports_each_dependency(tmp_path, sqlite_url, triton, redis_url):
    fake, url = triton
    with _client(tmp_path, sqlite_url, triton_http_url=url, redis_url=redis_url, queue_backend="sqlite") as c:
        r = c.get("/health")
        assert r.status_code == 200, r.json()
        checks = r.json()["checks"]
        assert set(checks) == {"database", "redis", "triton", "triton:vad", "triton:vad_stream", "llm"}
        assert checks["database"]["status"] == "ok" and checks["database"]["revision"]
        assert checks["redis"]["status"] == "ok"
        assert checks["llm"]["status"] == "not_configured"
        fake.not_ready.add("vad")
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["failing"] == ["triton:vad"]
        fake.not_ready.clear()
        fake.ready = False
        assert c.get("/health").json()["failing"] == ["triton"]
        assert c.get("/health/live").json() == {"status": "ok"}


def test_health_503_when_triton_or_database_down(tmp_path, sqlite_url):
    with _client(tmp_path, sqlite_url, triton_http_url=_closed_port()) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["checks"]["triton"]["status"] == "down"
    unmigrated = f"sqlite:///{tmp_path}/empty.db"
    with _client(tmp_path, unmigrated) as c:
        r = c.get("/health")
        assert r.status_code == 503 and "run migrations" in r.json()["checks"]["database"]["error"]
        assert c.get("/health/live").status_code == 200


def test_llm_is_reported_but_optional(tmp_path, sqlite_url, triton):
    _, url = triton
    with _client(tmp_path, sqlite_url, llm_health_url=_closed_port()) as c:
        r = c.get("/health")
        assert r.status_code == 200 and r.json()["checks"]["llm"]["status"] == "degraded"
    with _client(tmp_path, sqlite_url, llm_health_url=f"{url}/v2/health/ready", health_optional=[]) as c:
        assert c.get("/health").json()["checks"]["llm"]["status"] == "ok"


def test_llm_check_follows_the_llm_configuration(tmp_path, sqlite_url):
    """The enabled models of LLM_CONFIG are probed (``GET {api_base}/models``): none answering is
    ``degraded`` naming what was tried, /health stays 200 (HEALTH_OPTIONAL has llm; without it the
    LLM fails /health); one answering is ``ok``; a hosted model is not probed, its key counts; an
    enabled model without its key is left out and named; nothing enabled is ``not_configured``."""
    from tests.api.fake_llm import FakeLLM, model_entry, write_config

    with FakeLLM(name="up") as up, FakeLLM(name="broken", mode="error500") as broken:
        closed = {
            "name": "local",
            "priority": 10,
            "model": "openai/local",
            "api_base": f"{_closed_port()}/v1",
            "max_input_tokens": 4096,
        }
        hosted = {
            "name": "hosted",
            "model": "openai/gpt-4o-mini",
            "api_key_env": "INTRASCRIBE_TEST_HEALTH_KEY",
            "max_input_tokens": 4096,
        }

        def llm_check(models, **settings):
            config = write_config(tmp_path / f"llm{len(list(tmp_path.glob('llm*.yaml')))}.yaml", models)
            with _client(tmp_path, sqlite_url, llm_config=config, **settings) as c:
                r = c.get("/health")
                return r.status_code, r.json()["checks"]["llm"], r.json()["failing"]

        code, check, failing = llm_check([closed, model_entry(broken, priority=20)])
        assert code == 200 and failing == [] and check["status"] == "degraded", check
        assert check["tried"] == ["local", "broken"]
        by_name = {m["name"]: m for m in check["models"]}
        assert by_name["local"]["status"] == "down" and by_name["local"]["error"] == "ConnectError"
        assert by_name["broken"]["http_status"] == 503 and by_name["broken"]["url"] == f"{broken.url}/models"

        code, check, failing = llm_check([closed, model_entry(broken, priority=20)], health_optional=[])
        assert code == 503 and failing == ["llm"] and check["status"] == "down"

        code, check, _ = llm_check([closed, model_entry(up, priority=20)])
        assert code == 200 and check["status"] == "ok", check
        assert {m["name"]: m["status"] for m in check["models"]} == {"local": "down", "up": "ok"}

        code, check, _ = llm_check([closed, hosted])
        assert check["status"] == "degraded" and check["tried"] == ["local"]
        assert "INTRASCRIBE_TEST_HEALTH_KEY" in check["left_out"][0]
        with pytest.MonkeyPatch.context() as mp:  # the provider's key: the environment's, not our code
            mp.setenv("INTRASCRIBE_TEST_HEALTH_KEY", "sk-test")
            code, check, _ = llm_check([closed, hosted])
            assert check["status"] == "ok" and check["models"][-1] == {
                "name": "hosted",
                "status": "not_probed",
                "provider": "openai",
            }

        code, check, _ = llm_check([{**closed, "enabled": False}])
        assert code == 200 and check["status"] == "not_configured"
        assert up.requests == [] and broken.requests == []  # probes are GETs: no completion was asked


def test_info_lists_endpoints_and_models(tmp_path, sqlite_url, triton):
    _, url = triton
    with _client(tmp_path, sqlite_url, triton_http_url=url, operator_endpoints_public=True) as c:
        info = c.get("/info").json()
    paths = {e["path"] for e in info["endpoints"]}
    assert {
        "/api/v1/sessions/",
        "/api/v1/jobs/{job_id}/events",
        "/api/v2/tasks/{task_id}/status",
        "/health",
    } <= paths
    models = {m["name"]: m for m in info["triton"]["models"]}
    assert models["vad"]["version"] == "1" and models["vad"]["backend"] == "python"
    assert models["vad"]["batching"]["max_batch_size"] == 32
    assert models["vad"]["batching"]["dynamic_batching"] == {
        "preferred_batch_size": [8, 16],
        "max_queue_delay_microseconds": 2000,
    }
    assert models["vad"]["batching"]["ragged_inputs"] == ["WAVEFORM"]
    assert models["vad_stream"]["batching"]["sequence_batching"]["strategy"] == "oldest"
    assert models["vad_stream"]["batching"]["dynamic_batching"] is None


def _exposed_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        if not family.name.startswith("intrascribe_"):
            continue
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    return names


def test_metrics_endpoint_and_docs(tmp_path, sqlite_url):
    with _client(tmp_path, sqlite_url, operator_endpoints_public=True) as c:
        a = register(c)
        c.get("/api/v1/sessions/", headers=a["headers"])
        c.get("/api/v1/sessions/", headers={"Authorization": "Bearer nope"})
        c.get("/health")
        from api.jobs.store import JobStore

        with c.app.state.ctx.db.session() as s:
            JobStore.create(s, "sleep_chunks", {}, user_id=a["id"])
        text = c.get("/metrics").text
        oldest = re.search(r"^intrascribe_jobs_oldest_queued_seconds (\S+)$", text, re.M)
        assert oldest and float(oldest.group(1)) >= 0
        assert (
            'intrascribe_http_requests_total{method="GET",route="/api/v1/sessions/",status="200"} 1.0' in text
        )
        assert 'intrascribe_auth_failures_total{reason="malformed_token"} 1.0' in text
        assert 'intrascribe_jobs{status="queued"} 1.0' in text
        assert 'intrascribe_dependency_up{dependency="database"} 1.0' in text
        exposed = _exposed_names(c.app.state.ctx.metrics.registry) | _exposed_names(WorkerMetrics().registry)
    documented = set(re.findall(r"`(intrascribe_[a-z_]+)`", DOCS.read_text()))
    assert exposed == documented, (
        f"undocumented: {exposed - documented}; stale in docs: {documented - exposed}"
    )
