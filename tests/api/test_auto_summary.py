"""Auto-summary after a successful transcription: real audio uploaded through the batch endpoint,
the worker's ``transcribe`` job run in this process against a real tritonserver (VAD, the trained
ASR fixture, segmentation, embeddings), then the summary job it queued run against a loopback
OpenAI-compatible server (tests/api/fake_llm.py, LiteLLM's real client).

Who gets one: the user's ``auto_summary`` preference, else the ``AUTO_SUMMARY_DEFAULT`` setting; a
summary job of the session that is already queued or running is not doubled."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from api.models import Job
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD, Segmentation, SpeakerEmbedding
from tests.api.conftest import register
from tests.api.fake_llm import FakeLLM, model_entry, write_config
from tests.api.summary_env import env_factory
from tests.conftest import MODEL_REPOSITORY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LINES = ["hello everyone", "the meeting starts at nine"]  # clips the ASR fixture transcribes exactly


def _answer(messages) -> str:
    return json.dumps(
        {
            "summary": "## Summary\nThe meeting starts at nine.",
            "key_points": ["start at nine"],
            "action_items": [],
            "decisions": [],
        }
    )


@pytest.fixture(scope="module")
def triton_server(triton_models):
    return triton_models(VAD.NAME, ASR.NAME, Segmentation.NAME, SpeakerEmbedding.NAME)


@pytest.fixture(scope="module")
def wav() -> bytes:
    """The fixture's clips of LINES with a second of silence around each, as float WAV."""
    data = np.load(MODEL_REPOSITORY / ASR.NAME / "1" / "fixture_clips.npz", allow_pickle=False)
    clips = {e["text"]: np.asarray(data[e["key"]], np.float32) for e in json.loads(str(data["meta"]))}
    silence = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([silence, clips[LINES[0]], silence, clips[LINES[1]], silence])
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _summary_jobs(env, sid: str) -> list[Job]:
    with env.app.state.ctx.db.session() as s:
        return list(
            s.scalars(
                select(Job)
                .where(Job.session_id == uuid.UUID(sid), Job.kind == "summarize")
                .order_by(Job.created_at)
            )
        )


def _set_auto_summary(env, headers, value: bool) -> None:
    r = env.client.put("/api/v1/users/preferences", json={"auto_summary": value}, headers=headers)
    assert r.status_code == 200, r.text


def _upload_and_transcribe(env, headers, wav: bytes) -> str:
    """Batch upload, then the transcribe job run by the worker's executor; the session's id."""
    r = env.client.post(
        "/api/v1/transcriptions/batch",
        files={"audio_file": ("meeting.wav", wav, "audio/wav")},
        data={"language": "en"},
        headers=headers,
    )
    assert r.status_code == 202, r.text
    assert env.executor.run(r.json()["job_id"]) == "completed"
    return r.json()["session_id"]


def _retranscribe(env, headers, sid: str) -> None:
    r = env.client.post(f"/api/v1/sessions/{sid}/transcribe", json={"language": "en"}, headers=headers)
    assert r.status_code == 202, r.text
    assert env.executor.run(r.json()["job_id"]) == "completed"


def test_auto_summary_follows_the_preference_after_batch_and_re_transcription(
    tmp_path, sqlite_url, triton_server, wav
):
    grpc = triton_server.ports.grpc_url
    with FakeLLM(_answer) as fake, env_factory(tmp_path, sqlite_url) as make:
        env = make(write_config(tmp_path / "llm.yaml", [model_entry(fake)]), triton_grpc_url=grpc)
        assert env.settings.auto_summary_default is False
        queue = env.app.state.ctx.queue
        _set_auto_summary(env, env.h, True)
        sid = _upload_and_transcribe(env, env.h, wav)
        transcript = env.client.get(f"/api/v1/sessions/{sid}/transcription", headers=env.h)
        assert transcript.status_code == 200, transcript.text
        (job,) = _summary_jobs(env, sid)
        assert job.status == "queued" and job.params["auto"] is True and job.user_id is not None
        assert queue.pending() >= 1  # the worker's wake-up was sent (the transcribe job's was taken)
        assert env.executor.run(job.id) == "completed"
        summary = env.client.get(f"/api/v1/sessions/{sid}/summary", headers=env.h).json()
        assert summary["summary"].startswith("## Summary") and summary["ai_model"] == fake.name
        assert summary["key_points"] == ["start at nine"]
        user_prompt = fake.prompts()[0][1]["content"].lower()
        assert all(line in user_prompt for line in LINES), user_prompt  # the transcript was summarised

        # a re-transcription is a successful transcription too: another version
        _retranscribe(env, env.h, sid)
        jobs = _summary_jobs(env, sid)
        assert len(jobs) == 2 and jobs[1].status == "queued"
        assert env.executor.run(jobs[1].id) == "completed"
        versions = env.client.get(f"/api/v1/sessions/{sid}/summaries", headers=env.h).json()
        assert len(versions) == 2

        # opted out, and never set (AUTO_SUMMARY_DEFAULT false here): no summary job, no LLM call
        calls = len(fake.requests)
        opted_out = register(env.client)["headers"]
        _set_auto_summary(env, opted_out, False)
        never_set = register(env.client)["headers"]
        for headers in (opted_out, never_set):
            sid = _upload_and_transcribe(env, headers, wav)
            assert _summary_jobs(env, sid) == []
            assert env.client.get(f"/api/v1/sessions/{sid}/summary", headers=headers).status_code == 404
        assert len(fake.requests) == calls

        # AUTO_SUMMARY_DEFAULT=true: a user who never set the preference gets one, one who opted
        # out does not; a summary job already queued for the session is not doubled
        env = make(
            write_config(tmp_path / "llm2.yaml", [model_entry(fake)]),
            triton_grpc_url=grpc,
            auto_summary_default=True,
        )
        sid = _upload_and_transcribe(env, env.h, wav)
        (job,) = _summary_jobs(env, sid)
        assert job.status == "queued"
        _retranscribe(env, env.h, sid)
        assert [j.id for j in _summary_jobs(env, sid)] == [job.id]
        assert env.executor.run(job.id) == "completed"
        opted_out = register(env.client)["headers"]
        _set_auto_summary(env, opted_out, False)
        sid = _upload_and_transcribe(env, opted_out, wav)
        assert _summary_jobs(env, sid) == []
