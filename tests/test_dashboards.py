"""The Grafana dashboards (deploy/grafana/dashboards/, written by deploy/grafana/make_dashboards.py)
against a real Prometheus (Debian's ``prometheus`` package) scraping a real stack:

- a tritonserver serving model_repository/, the api under uvicorn on loopback and one worker process
  (``python -m api.worker`` with its metrics endpoint), on one SQLite database;
- Prometheus with the repository's scrape configuration (deploy/prometheus/prometheus.yml), only the
  targets rewritten to the loopback ports (the api job keeps its operator-token authorization);
- driven: a batch transcription job, a ``/transcribe`` call, a summary job through the loopback fake
  LLM (tests/api/fake_llm.py), a /health call, a rejected credential, a request Triton refuses;
- then every dashboard expression is evaluated through Prometheus's HTTP API (/api/v1/query): each
  returns data, except on dashboards tagged ``gpu`` (no GPU here: a valid query, empty allowed). No
  expression may manufacture data with ``vector(`` or ``absent(``.

Each dashboard also validates as a Grafana dashboard (schema version, unique uids and panel ids,
grid positions, the provisioned datasource by uid) and is what make_dashboards.py writes.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from tests.api.conftest import JWT_SECRET
from tests.api.fake_llm import FakeLLM, model_entry, write_config
from tests.api.sync_helpers import served_app, speech, wav_bytes
from tests.api.test_jobs_processes import Workers
from tests.api.test_summaries import _answer

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
GENERATOR = REPO / "deploy" / "grafana" / "make_dashboards.py"
SCRAPE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
OPERATOR_TOKEN = "operator-" + "d" * 32
SCRAPE_S = 1
# Grafana's built-in variables, as Grafana would substitute them for a 1 h range at 1 s scrapes
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those nested in collapsed rows too."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def expressions() -> list[tuple[str, str, str, bool]]:
    """(dashboard, panel title, expr, empty allowed) of every query."""
    found = []
    for name, d in dashboards().items():
        gpu = "gpu" in d.get("tags", [])
        for p in panels(d):
            for t in p.get("targets", []):
                found.append((name, p["title"], t["expr"], gpu))
    return found


# --------------------------------------------------------------------------------------------------
# the files themselves


def test_dashboards_are_generated_and_valid_grafana_dashboards():
    assert subprocess.run(["python3", str(GENERATOR), "--check"], cwd=REPO).returncode == 0, (
        "run python deploy/grafana/make_dashboards.py"
    )
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    found = dashboards()
    assert {"triton", "triton-gpu", "api-worker", "llm"} <= set(found)
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids)
    for name, d in found.items():
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, name
        assert d["title"] and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", d["uid"]), name
        ps = panels(d)
        ids = [p["id"] for p in ps]
        assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids), name
        for p in ps:
            pos = p["gridPos"]
            assert {"h", "w", "x", "y"} <= set(pos) and pos["x"] + pos["w"] <= 24, (name, p["title"])
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": uid}, (name, p["title"])
            assert p["targets"], (name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs)
            for t in p["targets"]:
                assert t["datasource"] == {"type": "prometheus", "uid": uid}, (name, p["title"])
                assert "vector(" not in t["expr"] and "absent(" not in t["expr"], t["expr"]
    gpu = [n for n, d in found.items() if "gpu" in d["tags"]]
    assert gpu == ["triton-gpu"], "GPU panels live on the dashboard tagged gpu (empty on CPU-only Triton)"
    assert all("nv_gpu_" not in e for n, _, e, _ in expressions() if n not in gpu)


# --------------------------------------------------------------------------------------------------
# against a real Prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_config(tmp: Path, triton_metrics: str, api: str, worker: str) -> Path:
    """deploy/prometheus/prometheus.yml with its targets on loopback and a 1 s scrape interval."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"triton", "api", "worker"}, f"the test knows these jobs, not {set(jobs)}"
    config["global"]["scrape_interval"] = f"{SCRAPE_S}s"
    config["global"]["evaluation_interval"] = f"{SCRAPE_S}s"
    jobs["triton"]["static_configs"] = [{"targets": [triton_metrics]}]
    jobs["api"]["static_configs"] = [{"targets": [api]}]
    token_file = tmp / "operator_token"
    token_file.write_text(OPERATOR_TOKEN)
    assert jobs["api"]["authorization"]["type"] == "Bearer"
    jobs["api"]["authorization"]["credentials_file"] = str(token_file)
    worker_job = jobs["worker"]
    assert worker_job.pop("dns_sd_configs")[0]["port"] == 9100  # compose's WORKER_METRICS_PORT
    worker_job["static_configs"] = [{"targets": [worker]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    def __init__(self, config: Path, tmp: Path):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: run scripts/system_deps.sh (apt-get install prometheus)"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def query(self, expr: str) -> dict:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        assert r.status_code == 200, f"{expr}: {r.status_code} {r.text}"
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_job(url: str, headers: dict, job_id: str, workers: Workers, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            assert job["status"] == "completed", f"{job}\nworker logs:\n{workers.logs()}"
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish\nworker logs:\n{workers.logs()}")


@pytest.fixture(scope="module")
def stack(triton, tmp_path_factory):
    """Triton, the api (loopback uvicorn), one worker and Prometheus scraping the three."""
    tmp = tmp_path_factory.mktemp("dashboards")
    fake = FakeLLM(lambda messages: _answer(), usage=(1200, 300))
    fake.__enter__()
    llm_config = write_config(
        tmp / "llm.yaml", [model_entry(fake, input_cost_per_token=1e-6)], timeout=120
    )  # a loaded machine: the default 5 s made the first call time out (the job retried)
    api_dir = tmp / "api"
    api_dir.mkdir()
    with served_app(
        api_dir,
        triton.ports.grpc_url,
        None,
        operator_token=OPERATOR_TOKEN,
        llm_config=llm_config,
        triton_http_url=f"http://{triton.ports.http_url}",
    ) as served:
        worker_port = free_port()
        logdir = tmp / "logs"
        logdir.mkdir()
        workers = Workers(
            {
                "DATABASE_URL": served.settings.database_url,
                "REDIS_URL": "",
                "QUEUE_BACKEND": "sqlite",
                "DATA_DIR": str(api_dir),
                "AUTH_MODE": "embedded",
                "JWT_SECRET": JWT_SECRET,
                "TRITON_HTTP_URL": "",
                "TRITON_GRPC_URL": triton.ports.grpc_url,
                "LLM_CONFIG": str(llm_config),
                "EXTRA_JOB_MODULES": "",
                "WORKER_METRICS_PORT": str(worker_port),
                "WORKER_METRICS_HOST": "127.0.0.1",
            },
            logdir,
        )
        workers.start(1)
        config = scrape_config(
            tmp,
            triton.ports.metrics_url.removeprefix("http://").removesuffix("/metrics"),
            served.url.removeprefix("http://"),
            f"127.0.0.1:{worker_port}",
        )
        prometheus = Prometheus(config, tmp)
        try:
            yield served, workers, prometheus, fake
        finally:
            prometheus.stop()
            workers.stop()
            fake.__exit__(None, None, None)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_dashboard_expression_returns_data_on_a_real_stack(stack, triton):
    served, workers, prom, fake = stack
    h = served.auth
    url = served.url

    def all_up() -> bool:
        up = {r["metric"]["job"]: r["value"][1] for r in prom.query("up")["result"]}
        return up == {"triton": "1", "api": "1", "worker": "1"}

    wait_until(all_up, 60, f"every target up: {prom.query('up')['result']}\n{workers.logs()}")

    # a batch job (transcribe: VAD, ASR, diarization) on the fixture's speech
    x, _ = speech([0.8, 1.5, 1.0])
    r = httpx.post(
        f"{url}/api/v1/transcriptions/batch",
        files={"audio_file": ("meeting.wav", wav_bytes(x), "audio/wav")},
        headers=h,
        timeout=60,
    )
    assert r.status_code == 202, r.text
    batch = r.json()
    wait_job(url, h, batch["job_id"], workers)
    # the direct call
    r = httpx.post(
        f"{url}/transcribe",
        json={"audio_data": {"sample_rate": 16000, "audio_array": list(map(float, x))}},
        headers=h,
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["success"], r.text
    # a summary job through the fake LLM (the worker calls it)
    r = httpx.post(f"{url}/api/v1/sessions/{batch['session_id']}/summary", json={}, headers=h, timeout=30)
    assert r.status_code == 202, r.text
    wait_job(url, h, r.json()["job_id"], workers)
    assert fake.requests, "the summary job never reached the LLM"
    # /health (dependency gauges), a rejected credential, a request Triton refuses (NaN audio)
    r = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{url}/api/v1/sessions/", headers={"Authorization": "Bearer nope"}).status_code == 401
    with grpcclient.InferenceServerClient(triton.ports.grpc_url) as client:
        bad = grpcclient.InferInput("WAVEFORM", [1, 1600], "FP32")
        bad.set_data_from_numpy(np.full((1, 1600), np.nan, np.float32))
        with pytest.raises(InferenceServerException, match="finite|NaN|nan"):
            client.infer("vad", [bad])

    # two more scrapes of every target after the drive
    driven = time.time()
    wait_until(
        lambda: all(float(r["value"][1]) > driven + SCRAPE_S for r in prom.query("timestamp(up)")["result"]),
        30,
        "two scrapes after the drive",
    )

    empty = []
    for name, title, expr, empty_allowed in expressions():
        query = expr
        for var, value in GRAFANA_VARIABLES.items():
            query = query.replace(var, value)
        assert "$" not in query, f"{name}/{title}: unknown variable in {expr}"
        data = prom.query(query)  # a syntax error is a 400 here
        if not data["result"] and not empty_allowed:
            empty.append(f"{name} / {title}: {expr}")
    assert not empty, "expressions without data:\n  " + "\n  ".join(empty)
    # what the drive did is counted where the dashboards look
    finished = prom.query('sum by (kind) (intrascribe_worker_jobs_finished_total{outcome="completed"})')
    assert {r["metric"]["kind"]: float(r["value"][1]) for r in finished["result"]} == {
        "transcribe": 1.0,
        "summarize": 1.0,
    }
    calls = prom.query("sum by (outcome) (intrascribe_llm_requests_total)")["result"]
    assert {r["metric"]["outcome"]: float(r["value"][1]) for r in calls} == {"ok": 1.0}
    tokens = prom.query("sum by (kind) (intrascribe_llm_tokens_total)")["result"]
    assert {r["metric"]["kind"]: float(r["value"][1]) for r in tokens} == {
        "prompt": 1200.0,
        "completion": 300.0,
    }
