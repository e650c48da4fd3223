"""The ``live_transcribe`` job (finalize with ``retranscribe: true``): each participant's own track,
built from their Ogg/Opus chunks, through VAD + ASR on a real tritonserver (the trained ASR fixture),
the participant as speaker, times moved by the track's offset; stored as a new version, the live one
kept as history. Run by the worker's executor in this process."""

from __future__ import annotations

import json
import re
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.blobstore import make_blob_store
from api.inference import WorkerInference
from api.jobs.kinds import load_job_modules
from api.jobs.runner import JobExecutor, JobServices
from api.jobs.store import JobStore
from api.main import create_app
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD
from tests.api.conftest import make_settings, register
from tests.api.recording_helpers import CHUNK_S, chunk_url, live_settings, ogg_opus
from tests.api.sync_helpers import exact_clips
from tests.conftest import MODEL_REPOSITORY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BOB_OFFSET = 3.0
LEAD_S = 1.0  # silence before each clip in its track


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    data = np.load(MODEL_REPOSITORY / ASR.NAME / "1" / "fixture_clips.npz", allow_pickle=False)
    return {e["text"]: np.asarray(data[e["key"]], np.float32) for e in json.loads(str(data["meta"]))}


def _track(clip: np.ndarray, seconds: float) -> list[bytes]:
    """The clip after LEAD_S of silence, padded with silence to ``seconds``, in CHUNK_S Ogg/Opus chunks."""
    x = np.zeros(round(seconds * SAMPLE_RATE), np.float32)
    start = round(LEAD_S * SAMPLE_RATE)
    x[start : start + clip.size] = clip[: x.size - start]
    step = round(CHUNK_S * SAMPLE_RATE)
    return [ogg_opus(x[a : a + step]) for a in range(0, x.size, step)]


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def test_per_track_retranscription(tmp_path, sqlite_url, triton_models, clips):
    # two clips the ASR fixture transcribes exactly (which ones depends on the fixture's build: its
    # training is not bit-reproducible across machines; tests/api/sync_helpers.exact_clips)
    alice, bob = exact_clips(2)
    server = triton_models(VAD.NAME, ASR.NAME)
    settings = make_settings(
        tmp_path, database_url=sqlite_url, triton_grpc_url=server.ports.grpc_url, **live_settings()
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        user = register(client)
        h = user["headers"]
        sid = client.post("/api/v1/sessions/", json={"language": "en"}, headers=h).json()["id"]
        for participant, text, offset in (("alice", alice, None), ("bob", bob, BOB_OFFSET)):
            for seq, piece in enumerate(_track(clips[text], clips[text].size / SAMPLE_RATE + 1.5)):
                url = chunk_url(sid, participant, seq) + (f"?offset={offset}" if offset is not None else "")
                assert client.put(url, content=piece, headers=h).status_code == 201
        r = client.post(f"/api/v1/sessions/{sid}/finalize", json={"retranscribe": True}, headers=h)
        assert r.status_code == 200, r.text
        final = r.json()
        services = JobServices(
            settings, app.state.ctx.db, make_blob_store(settings), WorkerInference(settings)
        )
        try:
            executor = JobExecutor(
                JobStore(app.state.ctx.db), load_job_modules(), heartbeat_seconds=5, services=services
            )
            assert executor.run(final["job_id"]) == "completed"
        finally:
            services.inference.close()
        job = client.get(f"/api/v1/jobs/{final['job_id']}", headers=h).json()
        assert job["status"] == "completed", job

        t = client.get(f"/api/v1/sessions/{sid}/transcription", headers=h).json()
        assert t["source"] == "batch" and t["id"] != final["transcription_id"]
        by_speaker = {}
        for seg in t["segments"]:
            by_speaker.setdefault(seg["speaker"], []).append(seg)
        assert set(by_speaker) == {"alice", "bob"}
        assert _words(" ".join(s["text"] for s in by_speaker["alice"])) == _words(alice)
        assert _words(" ".join(s["text"] for s in by_speaker["bob"])) == _words(bob)
        # on the session's timeline: bob's speech starts LEAD_S into his track, which starts at his offset
        assert by_speaker["alice"][0]["start_time"] == pytest.approx(LEAD_S, abs=0.35)
        assert by_speaker["bob"][0]["start_time"] == pytest.approx(BOB_OFFSET + LEAD_S, abs=0.35)
        versions = client.get(f"/api/v1/sessions/{sid}/transcriptions", headers=h).json()
        assert [v["source"] for v in versions] == ["batch", "live"]
        assert client.get(f"/api/v1/sessions/{sid}", headers=h).json()["status"] == "completed"
        assert uuid.UUID(final["audio_file_id"])
