"""Write the Grafana dashboards of deploy/grafana/dashboards/ (provisioned by compose.yaml's grafana).

The dashboards are generated, never edited by hand: panel ids, grid positions and the datasource
reference come out consistent. Every panel queries the provisioned Prometheus datasource by its uid
(``prometheus``, deploy/grafana/provisioning/datasources/prometheus.yaml).

- ``triton.json``: request rate and success per model, failures, queue vs compute time, mean batch
  size (``nv_inference_count`` / ``nv_inference_exec_count``) and the models' network batch size,
  pending requests, Triton's CPU use;
- ``triton-gpu.json`` (tag ``gpu``): GPU utilisation, memory and power; empty on a CPU-only server;
- ``api-worker.json``: api request rate, latency, errors, auth failures, dependencies; job backlog,
  job durations and outcomes per kind, reaped jobs;
- ``llm.json``: LLM calls, latency, tokens and cost per model (the worker's summary jobs);
- ``agent.json``: the LiveKit agents (agent/metrics.py, each agent's ``AGENT_HTTP_PORT`` /metrics):
  live sessions and participants, utterance latency p50/p95 by kind (final, interim), segments,
  buffered and dropped audio, Triton, api and room publish errors, recording chunks.

tests/test_dashboards.py evaluates every expression on a real Prometheus scraping a real stack and
fails if one returns nothing (the ``gpu`` dashboard: a valid query is enough), and checks the files
are what this script writes.

Usage: python deploy/grafana/make_dashboards.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39  # Grafana 11.3 (compose.yaml's grafana image)
WIDTH = 24  # Grafana's grid width
RI = "$__rate_interval"


class Dashboard:
    """Panels laid out two per row (rows of full-width headers between sections)."""

    def __init__(self, uid: str, title: str, tags: list[str], description: str):
        self.uid, self.title, self.tags, self.description = uid, title, tags, description
        self.panels: list[dict[str, Any]] = []
        self._y = 0
        self._x = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        if self._x:
            self._y += 8
            self._x = 0
        self.panels.append(
            {
                "id": self._next_id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        unit: str = "short",
        description: str = "",
        kind: str = "timeseries",
        stack: bool = False,
    ) -> None:
        """``targets``: (PromQL expression, legend format) pairs."""
        w = WIDTH // 2
        custom: dict[str, Any] = {}
        if kind == "timeseries":
            custom = {"drawStyle": "line", "fillOpacity": 10, "showPoints": "never", "spanNulls": True}
            if stack:
                custom["stacking"] = {"mode": "normal", "group": "A"}
        self.panels.append(
            {
                "id": self._next_id(),
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": w, "x": self._x, "y": self._y},
                "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
                if kind == "timeseries"
                else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self._x += w
        if self._x >= WIDTH:
            self._x = 0
            self._y += 8

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": False,
            "graphTooltip": 1,
            "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"},
            "timezone": "",
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [
                {"type": "dashboards", "tags": ["intrascribe"], "asDropdown": True, "title": "Intrascribe"}
            ],
            "panels": self.panels,
        }


def by_model(metric: str) -> str:
    return f"sum by (model) (rate({metric}[{RI}]))"


def triton() -> Dashboard:
    d = Dashboard(
        "intrascribe-triton",
        "Intrascribe / Triton",
        ["intrascribe", "triton"],
        "Triton's per-model metrics (nv_inference_*, metrics port 8102) and the models' own batch-size histogram.",
    )
    d.row("Requests")
    d.panel(
        "Requests per second, by model",
        [(by_model("nv_inference_request_success"), "{{model}}")],
        "reqps",
        "Successful inference requests per second (a request may hold several batch items).",
    )
    d.panel(
        "Success ratio, by model",
        [
            (
                f"{by_model('nv_inference_request_success')} / ({by_model('nv_inference_request_success')}"
                f" + {by_model('nv_inference_request_failure')})",
                "{{model}}",
            )
        ],
        "percentunit",
        "Successful / all requests. No line while a model gets no requests (0/0).",
    )
    d.panel(
        "Failures, by model",
        [(f"sum by (model) (increase(nv_inference_request_failure[{RI}]))", "{{model}}")],
        "short",
        "Failed requests per interval (bad input, model errors, timeouts).",
    )
    d.panel(
        "Pending requests, by model",
        [("sum by (model) (nv_inference_pending_request_count)", "{{model}}")],
        "short",
        "Requests waiting in the scheduler now: a steady rise means the model is the bottleneck.",
    )
    d.row("Latency")
    d.panel(
        "Queue vs compute time per request, by model",
        [
            (
                f"{by_model('nv_inference_queue_duration_us')} / {by_model('nv_inference_request_success')} / 1000",
                "{{model}} queue",
            ),
            (
                f"({by_model('nv_inference_compute_input_duration_us')} + {by_model('nv_inference_compute_infer_duration_us')}"
                f" + {by_model('nv_inference_compute_output_duration_us')}) / {by_model('nv_inference_request_success')} / 1000",
                "{{model}} compute",
            ),
        ],
        "ms",
        "Mean milliseconds a request waited in the queue and spent in the model (input + infer + output). "
        "Queue time growing while compute stays flat: add instances or replicas.",
    )
    d.panel(
        "Request duration, by model",
        [
            (
                f"{by_model('nv_inference_request_duration_us')} / {by_model('nv_inference_request_success')} / 1000",
                "{{model}}",
            )
        ],
        "ms",
        "Mean end-to-end milliseconds per request inside Triton.",
    )
    d.row("Batching")
    d.panel(
        "Mean batch size per execution, by model",
        [(f"{by_model('nv_inference_count')} / {by_model('nv_inference_exec_count')}", "{{model}}")],
        "short",
        "Batch items per model execution (nv_inference_count / nv_inference_exec_count): what dynamic "
        "and sequence batching achieve.",
    )
    d.panel(
        "Network batch size, by model",
        [
            (
                f"{by_model('intrascribe_network_batch_size_sum')} / {by_model('intrascribe_network_batch_size_count')}",
                "{{model}}",
            )
        ],
        "short",
        "Mean items per network call inside the models (intrascribe_network_batch_size: ragged inputs "
        "are regrouped by length, windows split by network_batch).",
    )
    d.row("Resources")
    d.panel(
        "Triton CPU utilisation",
        [("avg(nv_cpu_utilization)", "cpu")],
        "percentunit",
        "Host CPU use as Triton reports it.",
    )
    d.panel(
        "Triton host memory",
        [("sum(nv_cpu_memory_used_bytes)", "used"), ("sum(nv_cpu_memory_total_bytes)", "total")],
        "bytes",
    )
    return d


def triton_gpu() -> Dashboard:
    d = Dashboard(
        "intrascribe-triton-gpu",
        "Intrascribe / Triton GPU",
        ["intrascribe", "triton", "gpu"],
        "Triton's GPU metrics (nv_gpu_*); empty when Triton runs without a GPU (the CPU dev setup).",
    )
    d.row("GPU")
    d.panel("GPU utilisation", [("avg by (gpu_uuid) (nv_gpu_utilization)", "{{gpu_uuid}}")], "percentunit")
    d.panel(
        "GPU memory",
        [
            ("sum by (gpu_uuid) (nv_gpu_memory_used_bytes)", "{{gpu_uuid}} used"),
            ("sum by (gpu_uuid) (nv_gpu_memory_total_bytes)", "{{gpu_uuid}} total"),
        ],
        "bytes",
    )
    d.panel("GPU power", [("sum by (gpu_uuid) (nv_gpu_power_usage)", "{{gpu_uuid}}")], "watt")
    d.panel(
        "GPU memory used, share",
        [("sum(nv_gpu_memory_used_bytes) / sum(nv_gpu_memory_total_bytes)", "used")],
        "percentunit",
        kind="stat",
    )
    return d


def api_worker() -> Dashboard:
    d = Dashboard(
        "intrascribe-api-worker",
        "Intrascribe / api and worker",
        ["intrascribe", "api", "worker"],
        "The api's /metrics and each worker's metrics endpoint (docs/metrics.md).",
    )
    d.row("api")
    d.panel(
        "Requests per second, by route",
        [(f"sum by (route) (rate(intrascribe_http_requests_total[{RI}]))", "{{route}}")],
        "reqps",
        stack=True,
    )
    d.panel(
        "Responses per second, by status",
        [(f"sum by (status) (rate(intrascribe_http_requests_total[{RI}]))", "{{status}}")],
        "reqps",
        "4xx are the clients' errors; any 5xx is a bug or a dependency down (see Dependencies).",
        stack=True,
    )
    d.panel(
        "Latency p95, by route",
        [
            (
                f"histogram_quantile(0.95, sum by (le, route) (rate(intrascribe_http_request_duration_seconds_bucket[{RI}])))",
                "{{route}}",
            )
        ],
        "s",
        "Time to the response headers (SSE and downloads: until streaming starts).",
    )
    d.panel(
        "Latency p50 and p99, all routes",
        [
            (
                f"histogram_quantile(0.5, sum by (le) (rate(intrascribe_http_request_duration_seconds_bucket[{RI}])))",
                "p50",
            ),
            (
                f"histogram_quantile(0.99, sum by (le) (rate(intrascribe_http_request_duration_seconds_bucket[{RI}])))",
                "p99",
            ),
        ],
        "s",
    )
    d.panel("Requests in flight", [("sum(intrascribe_http_requests_in_flight)", "in flight")], "short")
    d.panel(
        "Auth failures, by reason",
        [(f"sum by (reason) (increase(intrascribe_auth_failures_total[{RI}]))", "{{reason}}")],
        "short",
    )
    d.panel(
        "Dependencies (at the last /health)",
        [("min by (dependency) (intrascribe_dependency_up)", "{{dependency}}")],
        "bool_yes_no",
        "1 = healthy at the last /health call (database, redis, triton and each model, llm).",
        kind="stat",
    )
    d.panel("Targets up", [('sum by (job) (up{job=~"api|worker"})', "{{job}}")], "short", kind="stat")
    d.row("Jobs")
    d.panel(
        "Jobs by status",
        [("max by (status) (intrascribe_jobs)", "{{status}}")],
        "short",
        "From the database at scrape time: the same on every api replica (hence max).",
    )
    d.panel(
        "Queue depth and oldest queued job",
        [
            ('max(intrascribe_jobs{status="queued"})', "queued"),
            ('max(intrascribe_jobs{status="running"})', "running"),
            ("max(intrascribe_jobs_oldest_queued_seconds)", "oldest queued (s)"),
        ],
        "short",
        "The oldest queued job's age growing means no worker takes jobs.",
    )
    d.panel(
        "Jobs created per minute, by kind",
        [(f"sum by (kind) (rate(intrascribe_jobs_created_total[{RI}])) * 60", "{{kind}}")],
        "short",
    )
    d.panel(
        "Job executions ended per minute, by kind and outcome",
        [
            (
                f"sum by (kind, outcome) (rate(intrascribe_worker_jobs_finished_total[{RI}])) * 60",
                "{{kind}} {{outcome}}",
            )
        ],
        "short",
        stack=True,
    )
    d.panel(
        "Job duration p95, by kind",
        [
            (
                f"histogram_quantile(0.95, sum by (le, kind) (rate(intrascribe_worker_job_duration_seconds_bucket[{RI}])))",
                "{{kind}}",
            )
        ],
        "s",
        "One execution (one attempt) of a job.",
    )
    d.panel(
        "Job duration mean, by kind",
        [
            (
                f"sum by (kind) (rate(intrascribe_worker_job_duration_seconds_sum[{RI}])) / "
                f"sum by (kind) (rate(intrascribe_worker_job_duration_seconds_count[{RI}]))",
                "{{kind}}",
            )
        ],
        "s",
    )
    d.panel(
        "Jobs reaped (lease expired) in the last hour",
        [("sum(increase(intrascribe_worker_jobs_reaped_total[1h]))", "reaped")],
        "short",
        "Jobs re-queued because their worker died or stalled.",
        kind="stat",
    )
    d.panel(
        "Workers and their uptime",
        [("time() - max by (instance) (intrascribe_worker_start_time_seconds)", "{{instance}}")],
        "s",
    )
    return d


def llm() -> Dashboard:
    d = Dashboard(
        "intrascribe-llm",
        "Intrascribe / LLM",
        ["intrascribe", "llm"],
        "LLM calls of the summary jobs (worker metrics, api/llm/metrics.py).",
    )
    d.row("Calls")
    d.panel(
        "Calls per minute, by model and outcome",
        [
            (
                f"sum by (model, outcome) (rate(intrascribe_llm_requests_total[{RI}])) * 60",
                "{{model}} {{outcome}}",
            )
        ],
        "short",
        "ok: answered; error: no model answered after retries and fallbacks (the job retries).",
        stack=True,
    )
    d.panel(
        "Latency p50 / p95, by model",
        [
            (
                f"histogram_quantile(0.5, sum by (le, model) (rate(intrascribe_llm_request_duration_seconds_bucket[{RI}])))",
                "{{model}} p50",
            ),
            (
                f"histogram_quantile(0.95, sum by (le, model) (rate(intrascribe_llm_request_duration_seconds_bucket[{RI}])))",
                "{{model}} p95",
            ),
        ],
        "s",
    )
    d.row("Tokens and cost")
    d.panel(
        "Tokens per minute, by model and kind",
        [(f"sum by (model, kind) (rate(intrascribe_llm_tokens_total[{RI}])) * 60", "{{model}} {{kind}}")],
        "short",
        stack=True,
    )
    d.panel(
        "Cost per hour, by model",
        [(f"sum by (model) (rate(intrascribe_llm_cost_usd_total[{RI}])) * 3600", "{{model}}")],
        "currencyUSD",
        "LiteLLM's accounting; local models cost 0.",
    )
    d.panel(
        "Cost in the time range",
        [("sum(increase(intrascribe_llm_cost_usd_total[$__range]))", "USD")],
        "currencyUSD",
        kind="stat",
    )
    d.panel(
        "Tokens per call, by model",
        [
            (
                f"sum by (model) (rate(intrascribe_llm_tokens_total[{RI}])) / "
                f'sum by (model) (rate(intrascribe_llm_requests_total{{outcome="ok"}}[{RI}]))',
                "{{model}}",
            )
        ],
        "short",
    )
    return d


def agent() -> Dashboard:
    d = Dashboard(
        "intrascribe-agent",
        "Intrascribe / LiveKit agent",
        ["intrascribe", "agent"],
        "The LiveKit agents' metrics (agent/metrics.py; AGENT_HTTP_PORT, /metrics, every replica).",
    )
    d.row("Sessions")
    d.panel(
        "Live sessions",
        [("sum(intrascribe_agent_active_sessions)", "sessions")],
        "short",
        "Rooms being transcribed now, all agents together.",
    )
    d.panel(
        "Active participants",
        [("sum(intrascribe_agent_active_participants)", "participants")],
        "short",
        "Microphone tracks being transcribed now (one transcription stream each).",
    )
    d.panel(
        "Live sessions, by agent",
        [("sum by (instance) (intrascribe_agent_active_sessions)", "{{instance}}")],
        "short",
        "How LiveKit's dispatch spreads the rooms over the agent replicas.",
        stack=True,
    )
    d.panel("Agents up", [('sum(up{job="agent"})', "agents")], "short", kind="stat")
    d.row("Latency")
    d.panel(
        "Utterance latency p50 / p95, by kind",
        [
            (
                "histogram_quantile(0.5, sum by (le, kind) "
                f"(rate(intrascribe_agent_utterance_latency_seconds_bucket[{RI}])))",
                "{{kind}} p50",
            ),
            (
                "histogram_quantile(0.95, sum by (le, kind) "
                f"(rate(intrascribe_agent_utterance_latency_seconds_bucket[{RI}])))",
                "{{kind}} p95",
            ),
        ],
        "s",
        "From the audio time of the end of speech (final) or of the newest audio (interim) to the "
        "segment's publication. The original README's target for an agent response: < 100 ms.",
    )
    d.panel(
        "Segments per minute, by kind",
        [(f"sum by (kind) (rate(intrascribe_agent_segments_total[{RI}])) * 60", "{{kind}}")],
        "short",
        "Interim results while someone speaks, one final per utterance.",
        stack=True,
    )
    d.row("Audio")
    d.panel(
        "Buffered audio, by agent",
        [("sum by (instance) (intrascribe_agent_buffered_audio_seconds)", "{{instance}}")],
        "s",
        "Audio received but not yet processed: it grows while Triton or the api are slow or away.",
    )
    d.panel(
        "Dropped audio per minute",
        [(f"sum(rate(intrascribe_agent_dropped_audio_seconds_total[{RI}])) * 60", "dropped")],
        "s",
        "Seconds of audio per minute dropped because a participant's buffer (AGENT_BUFFER_MAX_SECONDS) "
        "overflowed: anything above 0 lost words.",
    )
    d.row("Errors and recording")
    d.panel(
        "Triton errors, by model",
        [(f"sum by (model) (increase(intrascribe_agent_triton_errors_total[{RI}]))", "{{model}}")],
        "short",
        "Failed Triton requests per interval (the agent retries; see buffered audio).",
    )
    d.panel(
        "api errors, by operation",
        [(f"sum by (operation) (increase(intrascribe_agent_api_errors_total[{RI}]))", "{{operation}}")],
        "short",
        "Failed requests to the api (live segments, status, recording chunks).",
    )
    d.panel(
        "Room publish errors",
        [(f"sum(increase(intrascribe_agent_room_publish_errors_total[{RI}]))", "not delivered")],
        "short",
        "Segment updates not delivered to the room (lk.transcription text streams) per interval; the "
        "api still gets them.",
    )
    d.panel(
        "Recording chunks per minute, by result",
        [(f"sum by (result) (rate(intrascribe_agent_recording_chunks_total[{RI}])) * 60", "{{result}}")],
        "short",
        "Ogg/Opus chunks of each participant's audio uploaded to the api (AGENT_RECORD).",
        stack=True,
    )
    return d


DASHBOARDS = {
    "triton": triton,
    "triton-gpu": triton_gpu,
    "api-worker": api_worker,
    "llm": llm,
    "agent": agent,
}


def build() -> dict[str, dict[str, Any]]:
    return {name: make().json() for name, make in DASHBOARDS.items()}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file differs from what it would be")
    args = ap.parse_args(argv)
    stale = []
    for name, doc in build().items():
        path = OUT / f"{name}.json"
        text = dumps(doc)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(path)
    if stale:
        print(f"stale: {', '.join(stale)} (run python deploy/grafana/make_dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
