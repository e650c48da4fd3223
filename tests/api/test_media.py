"""The api's FFmpeg work in child processes (api.media): results and errors come back as if run
here, a child that dies fails only its call, children are recycled, and a real api process keeps
FFmpeg's libraries out of its own memory (and has them when MEDIA_PROCESSES=0, so the check can fail)."""

from __future__ import annotations

import io
import os
import signal
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.media import MediaRunner
from inference_client.audio import AudioDecodeError, check_audio
from tests.api.conftest import JWT_SECRET, register
from tests.test_scale_out import Processes, free_port, wait_for

S = "/api/v1/sessions/"


def _wav(seconds: float = 1.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _die() -> None:  # run in a child: what a decoder crash looks like to the pool
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def runner():
    r = MediaRunner()
    r.configure(1)
    yield r
    r.shutdown()


def test_results_and_errors_come_back_from_a_child(runner, tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(_wav(1.5))
    assert runner.run(os.getpid) != os.getpid()
    info = runner.run(check_audio, wav)
    assert info.duration_s == pytest.approx(1.5) and info.sample_rate == 16000 and info.channels == 1
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"x" * 4000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path, code in ((pdf, "not_audio"), (empty, "empty_file")):
        with pytest.raises(AudioDecodeError) as e:
            runner.run(check_audio, path)
        assert e.value.code == code, e.value  # the code survives the trip back (pickling)


def test_a_child_that_dies_fails_its_call_only(runner):
    first = runner.run(os.getpid)
    with pytest.raises(AudioDecodeError) as e:
        runner.run(_die)
    assert e.value.code == "corrupt_audio" and "crashed" in str(e.value)
    again = runner.run(os.getpid)  # a fresh pool
    assert again not in (first, os.getpid())


def test_children_are_replaced_after_max_tasks():
    r = MediaRunner()
    r.configure(1, max_tasks=2)
    try:
        pids = [r.run(os.getpid) for _ in range(5)]
    finally:
        r.shutdown()
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] not in pids[:4]
    assert pids[1] != pids[2]


def test_recycling_under_concurrent_calls_never_hangs():
    """Many calls from several threads across pool replacements all finish (CPython 3.11's own
    max_tasks_per_child deadlocks in this situation: gh-115634, why api.media recycles itself)."""
    from concurrent.futures import ThreadPoolExecutor

    r = MediaRunner()
    r.configure(2, max_tasks=3)
    try:
        with ThreadPoolExecutor(6) as threads:
            futures = [threads.submit(r.run, os.getpid) for _ in range(24)]
            pids = [f.result(timeout=120) for f in futures]
    finally:
        r.shutdown()
    assert os.getpid() not in pids and len(set(pids)) >= 8  # 24 calls, a fresh pool every 3


def test_children_exit_when_their_parent_is_killed(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, sys, time; from api.media import MediaRunner; r = MediaRunner(); r.configure(1); "
        "print(r.run(os.getpid), flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
        parent.kill()  # SIGKILL: no clean-up runs in the parent
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # exited, not yet reaped
            time.sleep(0.2)
        alive = (
            Path(f"/proc/{child}").exists()
            and "Z" not in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        )
        assert not alive, "the media child outlived its killed parent"
    finally:
        parent.kill()


def test_in_process_when_not_configured(tmp_path):
    assert MediaRunner().run(os.getpid) == os.getpid()


def _maps_ffmpeg(pid: int) -> bool:
    return "libavformat" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 0])
def test_a_real_api_keeps_ffmpeg_out_of_its_process(processes, sqlite_url, tmp_path):
    import psutil

    logdir = tmp_path / "logs"
    logdir.mkdir()
    port = free_port()
    procs = Processes(logdir)
    try:
        api = procs.start(
            "api",
            "api",
            {
                "API_HOST": "127.0.0.1",
                "API_PORT": str(port),
                "DATA_DIR": str(tmp_path / "data"),
                "DATABASE_URL": sqlite_url,
                "REDIS_URL": "",
                "QUEUE_BACKEND": "sqlite",
                "JWT_SECRET": JWT_SECRET,
                "JWT_ISSUER": "",
                "TRITON_HTTP_URL": "",
                "MEDIA_PROCESSES": str(processes),
            },
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/health/live", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the api", procs)
        with httpx.Client(base_url=base, timeout=60) as c:
            user = register(c)
            sid = c.post(S, json={}, headers=user["headers"]).json()["id"]
            r = c.post(
                f"{S}{sid}/audio_files",
                files={"audio_file": ("m.wav", _wav(2.0), "audio/wav")},
                headers=user["headers"],
            )
            assert r.status_code == 201, r.text
            assert r.json()["duration_seconds"] == 2.0
            r = c.post(
                f"{S}{sid}/audio_files",
                files={"audio_file": ("m.pdf", b"%PDF-1.4\n" + b"x" * 4000, "application/pdf")},
                headers=user["headers"],
            )
            assert r.status_code == 415, r.text
        children = [p.pid for p in psutil.Process(api.pid).children(recursive=True)]
        if processes:
            assert not _maps_ffmpeg(api.pid), "FFmpeg's libraries were loaded in the api process"
            assert any(_maps_ffmpeg(pid) for pid in children), "no media child has FFmpeg loaded"
        else:
            assert _maps_ffmpeg(api.pid)
        assert api.poll() is None
    finally:
        procs.stop()
