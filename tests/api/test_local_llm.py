"""The local default model end to end: llama.cpp's OpenAI-compatible server (scripts/llm_server.sh,
environment cached by scripts/ensure_llm.sh) with SmolLM2-135M-Instruct, the summary job through
LiteLLM, a stored summary in the right shape. The model is tiny: the test asserts the shape, never
the content (its summaries are poor; quality comes from the model you configure).

`make test` builds the environment before pytest (scripts/test.sh's env-llm stage: llama.cpp compiles
once, ~7 min on 2 idle cores, 31 min measured on a loaded one); run alone on a cold cache, the
fixture builds it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from speechlib.transcript import Segment
from tests.api.fake_llm import write_config
from tests.api.summary_env import env_factory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_llm(tmp_path_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("llm") / "server.log"
    env = {**os.environ, "LLM_PORT": str(port), "LLM_CTX": "2048"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(REPO / "scripts" / "llm_server.sh")], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 1200  # a cold cache compiles llama.cpp first
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the local LLM server exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local LLM server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def make_env(tmp_path, sqlite_url):
    with env_factory(tmp_path, sqlite_url) as make:
        yield make


@pytest.mark.slow
def test_local_model_summary_job_end_to_end(tmp_path, make_env, local_llm):
    local = {
        "name": "local",
        "model": "openai/SmolLM2-135M-Instruct",
        "api_base": local_llm,
        "max_input_tokens": 1536,
        "json_schema": True,
        "timeout": 120,
    }
    env = make_env(write_config(tmp_path / "llm.yaml", [local], max_output_tokens=256, timeout=120))
    r = env.client.post(
        "/api/v1/templates/",
        json={"name": "short", "template_content": "## Summary\n\n## Next steps\n"},
        headers=env.h,
    )
    sid = env.session(
        [
            Segment(1, 0.0, 3.0, "Let's ship the new release on Friday.", "Alice", "en"),
            Segment(2, 3.5, 6.0, "OK, I will write the release notes by Thursday.", "Bob", "en"),
        ],
        template_id=r.json()["id"],
    )
    started = time.monotonic()
    job = env.summarize(sid)
    elapsed = time.monotonic() - started
    assert job["status"] == "completed", job
    summary = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h).json()
    assert summary["summary"].strip() and summary["ai_model"] == "local"
    assert all(isinstance(summary[k], list) for k in ("key_points", "action_items", "decisions"))
    assert all(isinstance(a, dict) and "task" in a for a in summary["action_items"])
    assert summary["token_usage"]["completion_tokens"] > 0
    print(f"local model summary: {elapsed:.1f} s, {summary['token_usage']}")
