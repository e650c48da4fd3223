"""Shared by the summary and template tests: an app with a user and transcribed sessions, and a
worker executor running jobs in this process (the worker's own code, its services)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from api.blobstore import make_blob_store
from api.crud import transcriptions as tcrud
from api.inference import WorkerInference
from api.jobs.kinds import load_job_modules
from api.jobs.runner import JobExecutor, JobServices
from api.jobs.store import JobStore
from api.main import create_app
from api.models import RecordingSession
from speechlib.transcript import Segment, Transcript
from tests.api.conftest import make_settings, register


class Env:
    """An app with a user and a transcribed session, and a worker executor in this process."""

    def __init__(self, tmp_path: Path, db_url: str, config: Path, **settings):
        self.settings = make_settings(tmp_path / "data", database_url=db_url, llm_config=config, **settings)
        self.app = create_app(self.settings)
        self.client = TestClient(self.app, raise_server_exceptions=False).__enter__()
        self.user = register(self.client)
        self.h = self.user["headers"]
        ctx = self.app.state.ctx
        inference = WorkerInference(self.settings)
        self.services = JobServices(self.settings, ctx.db, make_blob_store(self.settings), inference)
        self.executor = JobExecutor(
            JobStore(ctx.db), load_job_modules(), heartbeat_seconds=5, services=self.services
        )

    def session(self, segments: list[Segment], language: str = "en", template_id: str | None = None) -> str:
        body = {"title": "kickoff", "language": language}
        if template_id:
            body["template_id"] = template_id
        r = self.client.post("/api/v1/sessions/", json=body, headers=self.h)
        assert r.status_code == 201, r.text
        sid = uuid.UUID(r.json()["id"])
        with self.app.state.ctx.db.session() as s:
            tcrud.save_transcription(
                s,
                session=s.get(RecordingSession, sid),
                transcript=Transcript.from_segments(segments, language=language),
                source="batch",
            )
        return str(sid)

    def summarize(self, sid: str, **body) -> dict:
        r = self.client.post(f"/api/v1/sessions/{sid}/summary", json=body, headers=self.h)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        try:
            self.executor.run(job_id)
        except Exception:  # RetryLater for a retryable failure: the job says why
            pass
        return self.client.get(f"/api/v1/jobs/{job_id}", headers=self.h).json()

    def close(self) -> None:
        self.services.inference.close()
        self.client.__exit__(None, None, None)


@contextmanager
def env_factory(tmp_path: Path, db_url: str) -> Iterator:
    """``make(config_path, **settings) -> Env``; every Env is closed at the end."""
    envs: list[Env] = []

    def make(config: Path, **settings) -> Env:
        env = Env(tmp_path / f"e{len(envs)}", db_url, config, **settings)
        envs.append(env)
        return env

    try:
        yield make
    finally:
        for env in envs:
            env.close()
