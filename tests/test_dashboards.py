"""The Grafana dashboards (deploy/grafana/dashboards/, written by deploy/grafana/make_dashboards.py)
against a real Prometheus (Debian's ``prometheus`` package) scraping a real stack:

- a tritonserver serving model_repository/, the api under uvicorn on loopback and one worker process
  (``python -m api.worker`` with its metrics endpoint), on one SQLite database;
- Prometheus with the repository's scrape configuration (deploy/prometheus/prometheus.yml), only the
  targets rewritten to the loopback ports (the api job keeps its operator-token authorization);
- one simulated agent session: a process (``python -m tests.test_dashboards agent-session``) that
  imports agent/metrics.py, serves it with prometheus_client's ``start_http_server`` (what the agent's
  ``AGENT_HTTP_PORT`` /metrics serves) and runs one participant's live session the way the agent's
  entrypoint does: the job token exchanged with the api (``AgentApiClient``), the real
  ``SpeakerPipeline`` (``vad_stream`` + ``asr`` on the test's tritonserver) publishing to the api
  (``ApiSegmentPublisher``) and a ``TrackRecorder`` uploading recording chunks, over speech pushed
  in real time; then one job token the api refuses and one Triton request that fails, through the
  same agent classes (so the error panels have their series);
- driven: a batch transcription job, a ``/transcribe`` call, a summary job through the loopback fake
  LLM (tests/api/fake_llm.py), a /health call, a rejected credential, a request Triton refuses;
- then every dashboard expression is evaluated through Prometheus's HTTP API (/api/v1/query): each
  returns data, except on dashboards tagged ``gpu`` (no GPU here: a valid query, empty allowed). No
  expression may manufacture data with ``vector(`` or ``absent(``.

Each dashboard also validates as a Grafana dashboard (schema version, unique uids and panel ids,
grid positions, the provisioned datasource by uid) and is what make_dashboards.py writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from agent.config import AGENT_HTTP_PORT
from tests.api.conftest import JWT_SECRET
from tests.api.fake_llm import FakeLLM, model_entry, write_config
from tests.api.live_helpers import LIVE_SETTINGS, job_token, room_of
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
    assert {"triton", "triton-gpu", "api-worker", "llm", "agent"} <= set(found)
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


def scrape_config(tmp: Path, triton_metrics: str, api: str, worker: str, agent: str) -> Path:
    """deploy/prometheus/prometheus.yml with its targets on loopback and a 1 s scrape interval."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"triton", "api", "worker", "agent"}, f"the test knows these jobs, not {set(jobs)}"
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
    agent_job = jobs["agent"]
    assert agent_job.pop("dns_sd_configs")[0]["port"] == AGENT_HTTP_PORT
    assert agent_job.get("metrics_path", "/metrics") == "/metrics"
    agent_job["static_configs"] = [{"targets": [agent]}]
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
        **LIVE_SETTINGS,
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
        agent = AgentSession(triton.ports.grpc_url, served.url, logdir / "agent.log")
        config = scrape_config(
            tmp,
            triton.ports.metrics_url.removeprefix("http://").removesuffix("/metrics"),
            served.url.removeprefix("http://"),
            f"127.0.0.1:{worker_port}",
            f"127.0.0.1:{agent.port}",
        )
        prometheus = Prometheus(config, tmp)
        try:
            yield served, workers, prometheus, fake, agent
        finally:
            prometheus.stop()
            agent.stop()
            workers.stop()
            fake.__exit__(None, None, None)


# --------------------------------------------------------------------------------------------------
# one simulated agent session (a process of its own, as an agent is)


class AgentSession:
    """``python -m tests.test_dashboards agent-session``: agent/metrics.py on a loopback /metrics
    port; :meth:`run` runs the session (below) and waits for its end."""

    def __init__(self, triton_grpc_url: str, api_url: str, log: Path):
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.test_dashboards",
                "agent-session",
                "--metrics-port",
                str(self.port),
                "--triton",
                triton_grpc_url,
                "--api",
                api_url,
            ],
            cwd=log.parent,  # no .env of the checkout
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
        )
        assert self.read() == "listening", self.logs()

    def read(self) -> str:
        line = self.proc.stdout.readline().strip()
        assert line, f"the simulated agent session ended (exit {self.proc.poll()}):\n{self.logs()}"
        return line

    def run(self, job_token: str, refused_token: str, speech_npy: Path) -> dict:
        """One participant's live session over ``speech_npy`` (16 kHz float32 samples), then the two
        failures; returns what it saw."""
        tokens = {"job_token": job_token, "refused_token": refused_token, "speech": str(speech_npy)}
        self.proc.stdin.write(json.dumps(tokens) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.read())

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the session process ends at EOF
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def simulated_session(
    triton_url: str, api_url: str, job_token: str, refused_token: str, x: np.ndarray
) -> dict:
    """What the agent's entrypoint does for one room with one speaking participant (agent/worker.py
    wires the same classes), then one refused job token and one failing Triton request through the
    agent's own classes."""
    from agent import metrics
    from agent.api_client import AgentApiClient, AgentAuthError, ApiSegmentPublisher
    from agent.config import AgentSettings
    from agent.pipeline import SpeakerPipeline
    from agent.recorder import TrackRecorder
    from inference_client import TritonClient

    settings = AgentSettings(_env_file=None, triton_grpc_url=triton_url, agent_api_url=api_url)
    step = 1600  # 100 ms, as frames arrive
    metrics.ACTIVE_SESSIONS.inc()
    api = AgentApiClient(api_url, job_token)
    await api.start()
    publisher = ApiSegmentPublisher(api)
    async with TritonClient(triton_url) as triton:
        metrics.ACTIVE_PARTICIPANTS.inc()
        recorder = TrackRecorder(api, "alice", chunk_seconds=2.0, offset_s=0.0)
        pipeline = SpeakerPipeline(
            triton=triton,
            settings=settings,
            speaker="alice",
            speaker_name="Alice",
            track_sid="TR_dashboards",
            offset_s=0.0,
            publishers=[publisher],
        )
        for i in range(0, len(x), step):
            await pipeline.push(x[i : i + step])
            await recorder.push(x[i : i + step])
            await asyncio.sleep(step / 16000)  # real time
        await pipeline.aclose()
        await recorder.aclose()
        metrics.ACTIVE_PARTICIPANTS.dec()
        finals = sum(t.is_final for t in pipeline.timings)
        interims = len(pipeline.timings) - finals
    await publisher.aclose()
    await api.aclose()
    # a job token the api refuses (a room without a session)
    refused = AgentApiClient(api_url, refused_token)
    try:
        await refused.start()
        token_refused = False
    except AgentAuthError:
        token_refused = True
    finally:
        await refused.aclose()
    triton_failed = await failing_triton_request(settings)
    return {
        "finals": finals,
        "interims": interims,
        "token_refused": token_refused,
        "triton_failed": triton_failed,
        "samples": int(pipeline.samples_received),
    }


async def failing_triton_request(settings) -> bool:
    """A participant's pipeline while Triton is away (nothing listens at its address): its
    ``vad_stream`` request fails and the pipeline counts it (``TRITON_ERRORS``), as in production."""
    from prometheus_client import REGISTRY

    from agent.pipeline import SpeakerPipeline
    from inference_client import TritonClient
    from inference_client.client import RetryPolicy
    from speechlib.interfaces import VADStream
    from tests.api.sync_helpers import closed_port_url

    def errors() -> float:
        labels = {"model": VADStream.NAME}
        return REGISTRY.get_sample_value("intrascribe_agent_triton_errors_total", labels) or 0.0

    before = errors()
    async with TritonClient(closed_port_url(), retry=RetryPolicy.never(), timeout_s=5) as down:
        pipeline = SpeakerPipeline(
            triton=down,
            settings=settings,
            speaker="bob",
            speaker_name="Bob",
            track_sid="TR_triton_down",
            offset_s=0.0,
            publishers=[],
            drain_timeout_s=1.0,
        )
        await pipeline.push(np.zeros(3200, np.float32))
        deadline = time.monotonic() + 30
        while errors() == before and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await pipeline.aclose()
    return errors() > before


def agent_session_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--triton", required=True)
    ap.add_argument("--api", required=True)
    args = ap.parse_args(argv)
    from prometheus_client import start_http_server

    from agent import metrics  # registers the agent's metrics in the default registry

    # The latency histogram's children exist (at 0) before the first utterance, so the first finals
    # fall between two scrapes and count in rate(): a child created by its first observation shows
    # up already holding it, and rate() never sees that increase. (agent/metrics.py does not create
    # its label sets up front; a real agent's first utterances are missed by the same rate().)
    for kind in ("final", "interim"):
        metrics.UTTERANCE_LATENCY.labels(kind)
    start_http_server(args.metrics_port, addr="127.0.0.1")
    print("listening", flush=True)
    line = sys.stdin.readline()
    if not line:
        return 0
    tokens = json.loads(line)
    result = asyncio.run(
        simulated_session(
            args.triton,
            args.api,
            tokens["job_token"],
            tokens["refused_token"],
            np.load(tokens["speech"]).astype(np.float32),
        )
    )
    print(json.dumps(result), flush=True)
    sys.stdin.read()  # serve /metrics until the test is done (EOF)
    return 0


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_dashboard_expression_returns_data_on_a_real_stack(stack, triton):
    served, workers, prom, fake, agent = stack
    h = served.auth
    url = served.url

    def all_up() -> bool:
        up = {r["metric"]["job"]: r["value"][1] for r in prom.query("up")["result"]}
        return up == {"triton": "1", "api": "1", "worker": "1", "agent": "1"}

    wait_until(all_up, 60, f"every target up: {prom.query('up')['result']}\n{workers.logs()}")

    # one live session (the browser's way), its agent's job token, and a session that does not exist
    r = httpx.post(
        f"{url}/api/v1/livekit/connection-details", json={"title": "standup"}, headers=h, timeout=30
    )
    assert r.status_code == 200, r.text
    live_id = r.json()["sessionId"]
    x, _ = speech([0.8, 1.5, 1.0])  # the fixture's clips, as the batch job below gets them
    speech_npy = agent.log.parent / "speech.npy"
    np.save(speech_npy, x)
    seen = agent.run(job_token(room_of(live_id)), job_token(room_of(uuid.uuid4())), speech_npy)
    assert seen["finals"] >= 1 and seen["token_refused"] and seen["triton_failed"], (seen, agent.logs())
    live = httpx.get(f"{url}/api/v1/realtime/sessions/{live_id}/transcription", headers=h, timeout=30)
    assert live.status_code == 200 and len(live.json()["segments"]) == seen["finals"], live.text

    # a batch job (transcribe: VAD, ASR, diarization) on the fixture's speech
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

    # ... and what the agent session did
    def by(expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in prom.query(expr)["result"]}

    segments = by("sum by (kind) (intrascribe_agent_segments_total)", "kind")
    assert segments.get("final") == seen["finals"] and segments.get("interim", 0) == seen["interims"], (
        segments
    )
    p95 = by(
        "histogram_quantile(0.95, sum by (le, kind) (rate(intrascribe_agent_utterance_latency_seconds_bucket[5m])))",
        "kind",
    )
    assert 0 < p95["final"] < 60, p95  # a number, not NaN: the observations fell between two scrapes
    print(f"agent session: {seen}; utterance latency p95 {p95}")
    assert by("sum by (result) (intrascribe_agent_recording_chunks_total)", "result").get("stored", 0) >= 1
    assert by("sum by (model) (intrascribe_agent_triton_errors_total)", "model").get("vad_stream", 0) >= 1
    assert by("sum by (operation) (intrascribe_agent_api_errors_total)", "operation").get("token", 0) >= 1
    assert by("sum(intrascribe_agent_active_sessions)", "") == {"": 1.0}
    calls = prom.query("sum by (outcome) (intrascribe_llm_requests_total)")["result"]
    assert {r["metric"]["outcome"]: float(r["value"][1]) for r in calls} == {"ok": 1.0}
    tokens = prom.query("sum by (kind) (intrascribe_llm_tokens_total)")["result"]
    assert {r["metric"]["kind"]: float(r["value"][1]) for r in tokens} == {
        "prompt": 1200.0,
        "completion": 300.0,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["agent-session"]:
        raise SystemExit(agent_session_main(sys.argv[2:]))
    raise SystemExit(f"usage: python -m tests.test_dashboards agent-session ... (not {sys.argv[1:]})")
