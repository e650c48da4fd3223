"""Faults in the middle of a batch transcription job, with real processes: the worker killed with
SIGKILL, and Triton stopped and started again. Either way the job completes, no chunk is lost or
doubled (the stored segments equal those of one uninterrupted run over the same decoded audio) and
the session has exactly one transcription.

Audio: the ASR fixture's clips with silences between them (~3 minutes), cut into 20 s VAD chunks so
the job writes a checkpoint every few seconds; diarization uses the small random models of
``model_repository/`` (speakers are not compared here: only what ASR and the chunking decide).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from api.models import Job, Transcription
from inference_client import TritonClient
from inference_client.transcription import Transcriber, TranscriptionOptions
from serving.launcher import TritonServer
from speechlib.diarization.pipeline import PipelineSettings
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD, Segmentation, SpeakerEmbedding
from tests.api.conftest import make_settings, register
from tests.api.test_jobs_processes import Workers
from tests.conftest import MODEL_REPOSITORY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MODELS = [VAD.NAME, ASR.NAME, Segmentation.NAME, SpeakerEmbedding.NAME]
CHUNK_S = 20.0
LEASE_S = 3.0


@pytest.fixture(scope="module")
def meeting_wav(tmp_path_factory) -> Path:
    """~3 minutes: the fixture's clips in a shuffled order with 1-3 s silences (float WAV)."""
    data = np.load(MODEL_REPOSITORY / ASR.NAME / "1" / "fixture_clips.npz", allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    clips = [np.asarray(data[e["key"]], np.float32) for e in meta]
    rng = np.random.default_rng(7)
    parts, total = [], 0
    while total < 180 * SAMPLE_RATE:
        clip = clips[int(rng.integers(len(clips)))]
        gap = np.zeros(int(rng.uniform(1.0, 3.0) * 100) * SAMPLE_RATE // 100, np.float32)
        parts += [gap, clip]
        total += gap.size + clip.size
    parts.append(np.zeros(SAMPLE_RATE, np.float32))
    path = tmp_path_factory.mktemp("faults") / "meeting.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def server() -> TritonServer:
    """A server of its own (the test stops and restarts it on the same ports)."""
    s = TritonServer(MODEL_REPOSITORY, models=MODELS)
    s.start()
    yield s
    s.stop()


OPTIONS = TranscriptionOptions(language="auto", vad_chunk_s=CHUNK_S)


@pytest.fixture(scope="module")
def reference(server, meeting_wav) -> list[tuple[float, float, str]]:
    """One uninterrupted run of the engine over the same audio: (start, end, text) per segment."""

    async def run():
        async with TritonClient(server.ports.grpc_url) as client:
            settings = PipelineSettings.from_dir(MODEL_REPOSITORY / SpeakerEmbedding.NAME / "1")
            t = Transcriber(client, diarization_settings=settings)
            return await t.transcribe(meeting_wav, OPTIONS)

    result = asyncio.run(run())
    assert result.chunks >= 6, "the audio must take several VAD chunks"
    segments = [(round(s.start, 3), round(s.end, 3), s.text) for s in result.transcript.segments]
    assert len(segments) >= 20 and all(text for _, _, text in segments)
    return segments


@pytest.fixture
def deployment(tmp_path, server):
    """An api (in process) and a worker environment sharing one SQLite database and blob folder."""
    from api.db.migrate import upgrade

    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path}/faults.db"
    upgrade(url)
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(data),
        "REDIS_URL": "",
        "QUEUE_BACKEND": "sqlite",
        "AUTH_MODE": "embedded",
        "JWT_SECRET": "faults-" + "x" * 40,
        "TRITON_HTTP_URL": "",
        "TRITON_GRPC_URL": server.ports.grpc_url,
        "VAD_CHUNK_SECONDS": str(CHUNK_S),
        "JOB_LEASE_SECONDS": str(LEASE_S),
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_REAPER_INTERVAL_SECONDS": "0.5",
        "JOB_RETRY_DELAY_SECONDS": "0.5",
        "JOB_MAX_ATTEMPTS": "6",
        "WORKER_CONCURRENCY": "1",
        "LOG_LEVEL": "INFO",
        "EXTRA_JOB_MODULES": "",
    }
    settings = make_settings(
        data,
        database_url=url,
        jwt_secret=env["JWT_SECRET"],
        triton_grpc_url=server.ports.grpc_url,
        vad_chunk_seconds=CHUNK_S,
        job_lease_seconds=LEASE_S,
        job_max_attempts=6,
        extra_job_modules=[],
    )
    app = create_app(settings)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    workers = Workers(env, logdir)
    with TestClient(app) as client:
        yield client, app.state.ctx, workers
    workers.stop()


def _job(ctx, job_id: uuid.UUID) -> Job:
    with ctx.db.session() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def _wait(predicate, timeout: float, what: str, workers: Workers):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; worker logs:\n{workers.logs()}")


def _start_job(client, wav: Path) -> tuple[dict, uuid.UUID, uuid.UUID]:
    user = register(client)
    with open(wav, "rb") as f:
        r = client.post(
            "/api/v1/transcriptions/batch",
            files={"audio_file": ("meeting.wav", f, "audio/wav")},
            headers=user["headers"],
        )
    assert r.status_code == 202, r.text
    body = r.json()
    return user, uuid.UUID(body["job_id"]), uuid.UUID(body["session_id"])


def _chunks_saved(ctx, job_id: uuid.UUID) -> int:
    checkpoint = _job(ctx, job_id).checkpoint or {}
    return len(checkpoint.get("chunks", []))


def _check_outcome(client, ctx, user, job_id, session_id, reference, workers) -> dict:
    job = _wait(
        lambda: (j := _job(ctx, job_id)).status in ("completed", "failed") and j,
        300,
        "the job to end",
        workers,
    )
    assert job.status == "completed", (job.error, workers.logs())
    with ctx.db.session() as s:
        count = s.scalar(
            select(func.count()).select_from(Transcription).where(Transcription.session_id == session_id)
        )
    assert count == 1, f"{count} transcriptions stored for one job"
    r = client.get(f"/api/v1/sessions/{session_id}/transcription", headers=user["headers"])
    assert r.status_code == 200, r.text
    got = [
        (round(seg["start_time"], 3), round(seg["end_time"], 3), seg["text"]) for seg in r.json()["segments"]
    ]
    # no chunk lost or doubled: exactly the uninterrupted run's segments, in order
    assert got == reference
    return job.result


def test_worker_killed_mid_job_resumes_from_its_checkpoint(deployment, meeting_wav, reference):
    client, ctx, workers = deployment
    (first,) = workers.start(1)
    user, job_id, session_id = _start_job(client, meeting_wav)
    _wait(lambda: _chunks_saved(ctx, job_id) >= 2, 240, "two chunks checkpointed", workers)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert _job(ctx, job_id).status == "running", "the job ended before the kill: make the audio longer"
    workers.start(1)  # the reaper of the new worker re-queues the job once the lease expires
    result = _check_outcome(client, ctx, user, job_id, session_id, reference, workers)
    assert result["resumed_chunks"] >= 2, result
    assert _job(ctx, job_id).attempt >= 2


def test_triton_restarted_mid_job(deployment, server, meeting_wav, reference):
    client, ctx, workers = deployment
    workers.start(1)
    user, job_id, session_id = _start_job(client, meeting_wav)
    _wait(lambda: _chunks_saved(ctx, job_id) >= 1, 240, "a chunk checkpointed", workers)
    server.stop()
    time.sleep(2.0)
    assert _job(ctx, job_id).status in ("running", "queued"), _job(ctx, job_id).status
    server.start()
    _check_outcome(client, ctx, user, job_id, session_id, reference, workers)
