"""SYNC_MAX_CONCURRENT: the synchronous audio routes run at most that many calls at once per api
process; one more is answered 429 with Retry-After before its body is read, and a finished call frees
its slot. The held call is a real request whose body trickles in (uvicorn on loopback); Triton is not
needed: every call here ends before inference (no Triton listens at its address: 503, or its body is
not valid audio: 4xx)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.api.sync_helpers import closed_port_url, served_app

SYNC_PATHS = ["/transcribe", "/diarize-file", "/v1/audio/transcriptions"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("sync_cap"), closed_port_url(), None, sync_max_concurrent=1) as s:
        yield s


def _hold_a_slot(served, release: threading.Event, started: threading.Event, result: dict) -> None:
    """POST /transcribe with a body that trickles in until ``release`` is set."""

    def body():
        yield b'{"audio_data": {"sample_rate": 16000, "audio_array": ['
        started.set()
        while not release.wait(0.05):
            yield b"0.0, "
        yield b"0.0]}}"

    r = httpx.post(
        f"{served.url}/transcribe",
        content=body(),
        headers={**served.auth, "content-type": "application/json"},
        timeout=60,
    )
    result["status"] = r.status_code


@pytest.mark.parametrize("path", SYNC_PATHS)
def test_one_call_over_the_cap_is_refused_at_once_and_a_finished_call_frees_its_slot(served, path):
    release, started, result = threading.Event(), threading.Event(), {}
    holder = threading.Thread(target=_hold_a_slot, args=(served, release, started, result))
    holder.start()
    try:
        assert started.wait(10)
        time.sleep(0.3)  # the held request is inside the app, its body still arriving
        t0 = time.monotonic()
        r = httpx.post(f"{served.url}{path}", headers=served.auth, content=b"x" * 10, timeout=30)
        assert time.monotonic() - t0 < 5  # answered at once, not queued behind the held call
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == "1"
        text = r.text
        assert "SYNC_MAX_CONCURRENT" in text and "/api/v1/transcriptions/batch" in text
        if path.startswith("/v1/"):
            assert r.json()["error"]["message"]  # OpenAI's error shape on /v1
    finally:
        release.set()
        holder.join(60)
    # the held call ran to its own end: 503 (no Triton at this address) or a 4xx, never refused or a 500
    assert result["status"] in (400, 413, 422, 503), result
    r = httpx.post(f"{served.url}{path}", headers=served.auth, content=b"x" * 10, timeout=30)
    assert r.status_code not in (429, 500), r.text  # the slot is free again


def test_unauthenticated_calls_take_no_slot(served):
    release, started, result = threading.Event(), threading.Event(), {}
    holder = threading.Thread(target=_hold_a_slot, args=(served, release, started, result))
    holder.start()
    try:
        assert started.wait(10)
        time.sleep(0.3)
        r = httpx.post(f"{served.url}/transcribe", json={}, timeout=30)
        assert r.status_code == 401, r.text  # authentication answers first, whatever the load
    finally:
        release.set()
        holder.join(60)
    r = httpx.post(f"{served.url}/transcribe", headers=served.auth, json={}, timeout=30)
    assert r.status_code == 422 or r.status_code == 400, r.text
