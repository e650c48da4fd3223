"""Summaries and titles through LiteLLM's real client against loopback OpenAI-compatible servers
(tests/api/fake_llm.py): the prompts sent (speakers, mm:ss times, language directive, template),
post-processing (think blocks, "not mentioned", action items), fallback order over a provider that
times out and one that answers 500, 503 when none answers, one repair retry for malformed JSON,
map-reduce of a transcript 10x the context, cost from LiteLLM's accounting, and summary history."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from speechlib.transcript import Segment
from tests.api.conftest import register
from tests.api.fake_llm import FakeLLM, count_tokens, model_entry, write_config
from tests.api.summary_env import env_factory

REPO = Path(__file__).resolve().parents[2]

OUTLINE = "# Minutes\n\n## Overview\n\n## Budget {budget_owner}\n\n## Risks\n"


def _answer(**over) -> str:
    body = {
        "summary": "# Minutes\n\n## Overview\nAlice opened the kickoff [00:01].\n\n## Budget {budget_owner}\n\n## Risks\n",
        "key_points": ["kickoff held", ""],
        "action_items": [
            {"task": "send the plan", "owner": "Bob", "due": "Friday"},
            {"task": "book a room", "owner": "", "due": None},
        ],
        "decisions": ["start in May"],
    }
    body.update(over)
    return json.dumps(body)


def _segments(n: int = 2) -> list[Segment]:
    base = [
        Segment(1, 1.2, 3.0, "Welcome to the kickoff.", "Alice", "en"),
        Segment(2, 65.5, 68.0, "I will send the plan by Friday.", "Bob", "en"),
    ]
    return base[:n]


@pytest.fixture
def make_env(tmp_path, sqlite_url):
    with env_factory(tmp_path, sqlite_url) as make:
        yield make


def test_litellm_never_touches_the_network_at_import_or_for_token_counts():
    """A fresh interpreter without the variable set: importing the api does not import litellm; building the router
    from the shipped config and counting tokens for every configured model connects nowhere but
    loopback (LiteLLM asks a configured Ollama for its model's details)."""
    code = """
import os, socket
attempts = []
def refuse(self, addr):
    # loopback is a configured local server (Ollama's port): not the internet
    if not (isinstance(addr, tuple) and addr[0] in ("127.0.0.1", "localhost", "::1")):
        attempts.append(addr)
    raise OSError("network refused in this test")
socket.socket.connect = refuse
socket.create_connection = lambda *a, **k: refuse(None, a[0])
import sys
import api.main  # the api starts without importing litellm (it takes seconds)
assert "litellm" not in sys.modules, "importing the api imported litellm"
from api.llm.client import LLM, litellm_module
from api.llm.config import load_config
litellm = litellm_module()
config = load_config(None)
for m in config.models:
    m.enabled = True
    m.api_key_env = None
llm = LLM(config)
counts = [litellm.token_counter(model=m.model, text="hello world, 你好") for m in config.models]
assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
assert len(litellm.model_cost) > 100, "the bundled price list was not loaded"
print(counts, attempts)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    counts, attempts = out.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert attempts == "[]", out.stdout
    assert all(int(c) > 0 for c in re.findall(r"\d+", counts))


def test_summary_job_prompt_output_cost_and_history(tmp_path, make_env):
    price_in, price_out = 2e-6, 5e-6
    replies = iter(["<think>let me think {about} it</think>" + _answer(), _answer(summary="# v2\n\nsecond")])
    with FakeLLM(lambda m: next(replies), usage=(1000, 300)) as fake:
        config = write_config(
            tmp_path / "llm.yaml",
            [model_entry(fake, "priced", input_cost_per_token=price_in, output_cost_per_token=price_out)],
        )
        env = make_env(config)
        r = env.client.post(
            "/api/v1/templates/", json={"name": "mine", "template_content": OUTLINE}, headers=env.h
        )
        assert r.status_code == 201 and r.json()["placeholders"] == ["budget_owner"]
        sid = env.session(_segments(), template_id=r.json()["id"])
        job = env.summarize(sid)
        assert job["status"] == "completed", job
        system, user = fake.prompts()[0]
        # the transcript with speakers and mm:ss times, the template, the language directive
        assert "[00:01] Alice: Welcome to the kickoff." in user["content"]
        assert "[01:05] Bob: I will send the plan by Friday." in user["content"]
        assert OUTLINE.strip() in system["content"]
        assert "Write every part of your answer in English." in system["content"]
        assert '"Not mentioned"' in system["content"]

        summaries = env.client.get(f"/api/v1/sessions/{sid}/summaries", headers=env.h).json()
        assert len(summaries) == 1
        first = summaries[0]
        assert first["id"] == job["result"]["summary_id"]
        assert "<think>" not in first["summary"] and "{about}" not in first["summary"]
        # the empty section and the unfilled placeholder say so; the filled section is kept
        assert "## Budget Not mentioned\n\nNot mentioned\n\n## Risks\n\nNot mentioned\n" in first["summary"]
        assert "Alice opened the kickoff [00:01]." in first["summary"]
        assert first["key_points"] == ["kickoff held"]
        assert first["action_items"] == [
            {"task": "send the plan", "owner": "Bob", "due": "Friday"},
            {"task": "book a room", "owner": None, "due": None},
        ]
        assert first["decisions"] == ["start in May"]
        assert first["language"] == "en" and first["ai_model"] == "priced" and first["source"] == "generated"
        # tokens and cost as LiteLLM accounted them: the provider's usage x the registered prices
        assert (
            first["token_usage"]["prompt_tokens"] == 1000 and first["token_usage"]["completion_tokens"] == 300
        )
        assert first["cost_cents"] == pytest.approx((1000 * price_in + 300 * price_out) * 100)

        # regenerating adds a version; an edit adds another; nothing is overwritten
        assert env.summarize(sid)["status"] == "completed"
        r = env.client.post(
            f"/api/v1/sessions/{sid}/summaries", json={"summary": "# edited\n\nby hand"}, headers=env.h
        )
        assert r.status_code == 201, r.text
        versions = env.client.get(f"/api/v1/sessions/{sid}/summaries", headers=env.h).json()
        assert [v["summary"].splitlines()[0] for v in versions] == ["# edited", "# v2", "# Minutes"]
        assert versions[0]["parent_id"] == versions[1]["id"] and versions[0]["source"] == "edit"
        assert versions[2] == first
        latest = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h).json()
        assert latest["id"] == versions[0]["id"]


def test_language_directive_and_localized_not_mentioned(tmp_path, make_env):
    with FakeLLM(lambda m: _answer(summary="# 纪要\n\n## 概要\n")) as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake)]))
        sid = env.session([Segment(1, 0, 2, "我们开始吧。", "SPEAKER_00", "zh")], language="zh")
        job = env.summarize(sid)
        assert job["status"] == "completed", job
        system = fake.prompts()[0][0]["content"]
        assert "Simplified Chinese" in system and '"未提及"' in system
        latest = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h).json()
        assert latest["summary"] == "# 纪要\n\n## 概要\n\n未提及\n"
        # asked for another language: the directive follows the request
        job = env.summarize(sid, language="en")
        assert "in English." in fake.prompts()[-1][0]["content"]


def test_fallback_order_timeout_then_500_then_answer(tmp_path, make_env):
    journal: list[str] = []
    with (
        FakeLLM(mode="timeout", name="slow", journal=journal) as slow,
        FakeLLM(mode="error500", name="broken", journal=journal) as broken,
        FakeLLM(lambda m: _answer(), name="good", journal=journal) as good,
    ):
        models = [
            model_entry(broken, priority=2),
            model_entry(good, priority=3),
            model_entry(slow, priority=1, timeout=0.5),
        ]
        env = make_env(write_config(tmp_path / "llm.yaml", models, num_retries=1))
        r = env.client.post(
            "/api/v1/summarize", json={"transcription_text": "[00:01] Alice: hello"}, headers=env.h
        )
        assert r.status_code == 200, r.text
        assert r.json()["metadata"]["model"] == "good"
        # priority order, each retried once before falling back
        assert journal == ["slow", "slow", "broken", "broken", "good"]


def test_no_reachable_model_is_503_with_what_was_tried(tmp_path, make_env):
    with FakeLLM(mode="error500", name="a") as a, FakeLLM(mode="error500", name="b") as b:
        env = make_env(
            write_config(tmp_path / "llm.yaml", [model_entry(a, priority=1), model_entry(b, priority=2)])
        )
        for path, body in (
            ("/api/v1/summarize", {"transcription_text": "hello"}),
            ("/api/v1/generate-title", {"transcription_text": "hello"}),
        ):
            r = env.client.post(path, json=body, headers=env.h)
            assert r.status_code == 503, r.text
            assert r.json()["tried"] == ["a", "b"] and r.json()["error"] and r.json()["hint"]
        sid = env.session(_segments())
        job = env.summarize(sid)
        assert job["status"] == "queued" and job["error"]["code"] == "llm_unavailable", job
    # nothing enabled (and a key that is not set): 503 naming the left-out model
    config = write_config(
        tmp_path / "none.yaml",
        [
            {
                "name": "x",
                "model": "openai/x",
                "api_key_env": "INTRASCRIBE_TEST_UNSET_KEY",
                "max_input_tokens": 1000,
            }
        ],
    )
    env = make_env(config)
    r = env.client.post("/api/v1/summarize", json={"transcription_text": "hello"}, headers=env.h)
    assert r.status_code == 503 and r.json()["tried"] == []
    assert "INTRASCRIBE_TEST_UNSET_KEY" in r.json()["hint"]


def test_shipped_config_local_model_on_and_without_its_server_a_quick_503(tmp_path, make_env):
    """config/llm.yaml as shipped: the local model on, the hosted ones off. With nothing listening
    where the local server should be (its port swapped for a closed one, every other setting as
    shipped: retries, backoff, timeouts), summary and title answer 503 within seconds, naming the
    local model and how to start its server, not after the 300 s per-call timeout."""
    import time

    import yaml

    from tests.api.sync_helpers import closed_port_url

    shipped = yaml.safe_load((REPO / "config" / "llm.yaml").read_text())
    enabled = {m["name"]: m["enabled"] for m in shipped["models"]}
    assert enabled.pop("local") is True and not any(enabled.values()), enabled
    (local,) = [m for m in shipped["models"] if m["name"] == "local"]
    assert local["api_base"] == "http://127.0.0.1:8091/v1"
    local["api_base"] = f"http://{closed_port_url()}/v1"
    config = tmp_path / "shipped.yaml"
    config.write_text(yaml.safe_dump(shipped))
    env = make_env(config)
    for path in ("/api/v1/summarize", "/api/v1/generate-title"):
        started = time.monotonic()
        r = env.client.post(path, json={"transcription_text": "[00:01] Alice: hello"}, headers=env.h)
        elapsed = time.monotonic() - started
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["tried"] == ["local"] and body["error"].startswith("no LLM model answered")
        assert local["api_base"] in body["hint"] and "scripts/llm_server.sh" in body["hint"]
        assert elapsed < 20, f"{path}: 503 after {elapsed:.1f} s"
        print(f"{path}: 503 after {elapsed:.1f} s")


def test_malformed_output_gets_one_repair_then_fails_the_job(tmp_path, make_env):
    answers = ["Sure! Here is the summary: {summary: nope", _answer()]
    with FakeLLM(lambda m: answers.pop(0) if answers else "still not json") as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake)]))
        sid = env.session(_segments())
        job = env.summarize(sid)
        assert job["status"] == "completed", job
        repair = fake.prompts()[1]
        assert repair[2] == {"role": "assistant", "content": "Sure! Here is the summary: {summary: nope"}
        assert "could not be used" in repair[3]["content"]
        job = env.summarize(sid)
        assert job["status"] == "failed" and job["error"]["code"] == "llm_malformed_output", job
        assert len(fake.requests) == 4  # 2 calls per summary: the answer and one repair
        assert len(env.client.get(f"/api/v1/sessions/{sid}/summaries", headers=env.h).json()) == 1


def test_transcript_ten_times_the_context_is_map_reduced_never_truncated(tmp_path, make_env):
    context = 800

    def reply(messages):
        system = messages[0]["content"]
        if "take notes" in system:
            return "notes: " + " ".join(re.findall(r"\bW\d{4}\b", messages[1]["content"]))[:200]
        if "condense" in system:
            return "condensed notes"
        return _answer()

    with FakeLLM(reply, context_tokens=context) as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake)], max_output_tokens=150))
        segments = [
            Segment(
                i + 1,
                i * 7.0,
                i * 7.0 + 6,
                f"W{i:04d} we discussed item number {i} at length today",
                f"S{i % 3}",
            )
            for i in range(600)
        ]
        text = "\n".join(f"[{s.start}] {s.speaker}: {s.text}" for s in segments)
        assert count_tokens(text) > 10 * context
        sid = env.session(segments)
        job = env.summarize(sid)
        assert job["status"] == "completed", job
        assert fake.rejected == []  # every prompt fit the context
        for messages in fake.prompts():
            assert sum(count_tokens(m["content"]) for m in messages) <= context - 150
        map_prompts = [m[1]["content"] for m in fake.prompts() if "take notes" in m[0]["content"]]
        assert len(map_prompts) >= 10
        seen = set(re.findall(r"\bW\d{4}\b", "\n".join(map_prompts)))
        assert seen == {f"W{i:04d}" for i in range(600)}  # every segment reached a map prompt
        assert "notes" in fake.prompts()[-1][0]["content"]  # the final call summarises notes
        summary = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h).json()
        assert summary["token_usage"]["calls"] == len(fake.requests)


def test_generate_title_and_summarize_request_shapes(tmp_path, make_env):
    with FakeLLM(lambda m: '<think>hmm</think>\n"Kickoff plan for May."\nextra') as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake)]))
        r = env.client.post(
            "/api/v1/generate-title",
            json={"transcription_text": "[00:01] Alice: hello", "summary_text": "We plan May."},
            headers=env.h,
        )
        assert r.status_code == 200, r.text
        assert r.json()["title"] == "Kickoff plan for May"
        assert fake.prompts()[0][1]["content"] == "We plan May."  # the summary, when given
        r = env.client.post("/api/v1/summarize", json={"transcription_text": ""}, headers=env.h)
        assert r.status_code == 422
        r = env.client.post(
            "/api/v1/summarize",
            json={"transcription_text": "x", "template_id": str(uuid.uuid4())},
            headers=env.h,
        )
        assert r.status_code == 404


def test_summary_job_refusals(tmp_path, make_env):
    with FakeLLM(lambda m: _answer()) as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake)]))
        r = env.client.post("/api/v1/sessions/", json={"title": "empty"}, headers=env.h)
        sid = r.json()["id"]
        r = env.client.post(f"/api/v1/sessions/{sid}/summary", json={}, headers=env.h)
        assert r.status_code == 409 and "no transcript" in r.json()["detail"]
        other = register(env.client)
        sid = env.session(_segments())
        for method, path in (
            ("post", f"/api/v1/sessions/{sid}/summary"),
            ("get", f"/api/v1/sessions/{sid}/summaries"),
            ("get", f"/api/v1/sessions/{sid}/summary"),
        ):
            r = getattr(env.client, method)(path, headers=other["headers"])
            assert r.status_code == 404, (path, r.text)
        r = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h)
        assert r.status_code == 404
        r = env.client.post(f"/api/v1/sessions/{sid}/summaries", json={"summary": "x"}, headers=env.h)
        assert r.status_code == 409
        assert fake.requests == []


def test_json_schema_models_get_the_summary_schema_and_text_elsewhere(tmp_path, make_env):
    """A llama.cpp-style server (``json_schema: true``): the summary call carries the answer's JSON
    schema (constrained decoding); the title call asks for text."""
    with FakeLLM(lambda m: _answer() if "JSON" in m[0]["content"] else "A title") as fake:
        env = make_env(write_config(tmp_path / "llm.yaml", [model_entry(fake, json_schema=True)]))
        r = env.client.post("/api/v1/summarize", json={"transcription_text": "[00:01] A: hi"}, headers=env.h)
        assert r.status_code == 200, r.text
        fmt = fake.requests[-1]["response_format"]
        assert fmt["type"] == "json_object"
        assert set(fmt["schema"]["required"]) == {"summary", "key_points", "action_items", "decisions"}
        r = env.client.post(
            "/api/v1/generate-title", json={"transcription_text": "[00:01] A: hi"}, headers=env.h
        )
        assert r.status_code == 200 and r.json()["title"] == "A title"
        assert fake.requests[-1]["response_format"] == {"type": "text"}


def test_post_processing_rules():
    from api.llm.summarize import fill_empty, parse_summary, strip_think

    assert strip_think("<think>a</think>x<THINK>b</THINK> y") == "x y"
    assert strip_think("answer <think>never closed") == "answer"
    fenced = 'Here:\n```json\n{"summary": "# S", "action_items": [{"item": "x", "assignee": "n/a"}]}\n```'
    parsed = parse_summary(fenced)
    assert (
        parsed.summary == "# S"
        and parsed.action_items[0].task == "x"
        and parsed.action_items[0].owner is None
    )
    # a raw newline and tab inside a string (not valid strict JSON) are kept as they are
    assert parse_summary('{"summary": "# S\n\tline", "key_points": ["a\nb"]}').summary == "# S\n\tline"
    for bad, why in (
        ("no json", "no JSON object"),
        ('{"summary": ""}', "summary"),
        ("[1, 2]", "no JSON object"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_summary(bad)
    # a parent heading with sub-headings is not empty; a leaf heading without text is
    assert (
        fill_empty("# T\n## A\ntext {x}\n## B\n### C\n", "N/A") == "# T\n## A\ntext N/A\n## B\n### C\n\nN/A\n"
    )
