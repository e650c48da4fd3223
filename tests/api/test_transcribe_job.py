"""The ``transcribe`` job's failures and its idempotent completion, run in this process by the
worker's executor with the worker's services (no Triton needed: each case ends before a request).

A failed job says why (a stable code, not retried when retrying cannot help), the session says
``failed`` — or stays ``completed`` with its current transcript untouched when a re-transcription
fails — and the audio file carries the reason."""

from __future__ import annotations

import json
import uuid

import pytest

from api.blobstore import make_blob_store
from api.crud import transcriptions as tcrud
from api.db.session import Database
from api.inference import WorkerInference
from api.jobs.kinds import load_job_modules
from api.jobs.runner import JobExecutor, JobServices, RetryLater
from api.jobs.store import JobStore
from api.models import AudioFile, Job, RecordingSession, Transcription, User
from api.transcribe_job import KIND, job_params
from speechlib.transcript import Segment, Transcript
from tests.api.conftest import make_settings
from tests.api.fakes import FakeStorage, serve
from tests.api.test_transcription_api import wav_bytes


@pytest.fixture
def services(tmp_path, any_db_url):
    # nothing listens on port 9: a request would fail, and none must be sent in these cases
    settings = make_settings(tmp_path / "data", database_url=any_db_url, triton_grpc_url="127.0.0.1:9")
    db = Database(any_db_url)
    inference = WorkerInference(settings)
    yield JobServices(settings, db, make_blob_store(settings), inference)
    inference.close()
    db.dispose()


def _executor(services: JobServices) -> JobExecutor:
    return JobExecutor(JobStore(services.db), load_job_modules(), heartbeat_seconds=5, services=services)


def _session_with_audio(
    services: JobServices, data: bytes, **params
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A user's session whose audio file holds ``data``, and a queued transcribe job for it."""
    with services.db.session() as s:
        user = User(email=f"{uuid.uuid4().hex}@example.com")
        s.add(user)
        s.flush()
        session = RecordingSession(user_id=user.id, language="auto", status="processing")
        s.add(session)
        s.flush()
        path = f"{user.id}/{session.id}/{uuid.uuid4()}.wav"
        stored = services.blobs.put(path, [data])
        audio = AudioFile(
            session_id=session.id,
            user_id=user.id,
            storage_backend=stored.backend,
            storage_path=stored.path,
            file_size_bytes=stored.size,
        )
        s.add(audio)
        s.flush()
        job = JobStore.create(
            s, KIND, {**job_params(audio.id, "auto"), **params}, user_id=user.id, session_id=session.id
        )
        return session.id, audio.id, job.id


def _state(services: JobServices, session_id, audio_id, job_id):
    with services.db.session() as s:
        job = s.get(Job, job_id)
        return (
            job.status,
            (job.error or {}).get("code"),
            job.attempt,
            s.get(RecordingSession, session_id).status,
            s.get(AudioFile, audio_id),
        )


def test_undecodable_audio_fails_the_job_at_once_with_the_decoders_code(services):
    session_id, audio_id, job_id = _session_with_audio(services, b"this is a text file, not audio\n" * 40)
    assert _executor(services).run(job_id) == "failed"
    status, code, attempt, session_status, audio = _state(services, session_id, audio_id, job_id)
    assert (status, code, attempt, session_status) == ("failed", "not_audio", 1, "failed")
    assert audio.processing_status == "failed" and audio.error_message.startswith("not_audio: ")


def test_on_supabase_storage_the_job_downloads_the_blob_and_triton_down_is_retried(tmp_path, sqlite_url):
    """A worker without the blob's file (remote store) downloads it into the job's work folder and
    decodes it there; Triton not answering is a retryable failure: the job goes back to the queue
    (``triton_unavailable``), the session stays ``processing`` and the work folder (download and
    decoded audio) is kept for the next attempt."""
    key = "service-role-key-for-tests"
    fake = FakeStorage(key)
    with serve(fake) as url:
        settings = make_settings(
            tmp_path / "data",
            database_url=sqlite_url,
            blob_backend="supabase",
            supabase_url=url,
            supabase_service_role_key=key,
            triton_grpc_url="127.0.0.1:9",  # nothing listens there
        )
        db = Database(sqlite_url)
        services = JobServices(settings, db, make_blob_store(settings), WorkerInference(settings))
        try:
            data = wav_bytes(2.0)
            session_id, audio_id, job_id = _session_with_audio(services, data)
            with pytest.raises(RetryLater):
                _executor(services).run(job_id)
            status, code, attempt, session_status, audio = _state(services, session_id, audio_id, job_id)
            assert (status, code, attempt, session_status) == (
                "queued",
                "triton_unavailable",
                1,
                "processing",
            )
            workdir = settings.data_dir / "jobs" / str(job_id)
            assert (workdir / "source.wav").read_bytes() == data
            assert (workdir / "audio.f32").stat().st_size == 2 * 16000 * 4  # decoded, float32
        finally:
            services.inference.close()
            db.dispose()


def test_a_failed_retranscription_keeps_the_current_transcript(services):
    session_id, audio_id, job_id = _session_with_audio(services, b"")
    with services.db.session() as s:
        session = s.get(RecordingSession, session_id)
        kept = tcrud.save_transcription(
            s,
            session=session,
            transcript=Transcript.from_segments([Segment(1, 0.0, 1.0, "kept text", "SPEAKER_00", "en")]),
            source="batch",
        ).id
    assert _executor(services).run(job_id) == "failed"
    status, code, _, session_status, _ = _state(services, session_id, audio_id, job_id)
    assert (status, code, session_status) == ("failed", "empty_file", "completed")
    with services.db.session() as s:
        current = tcrud.current_transcription(s, session_id)
        assert (current.id, current.content) == (kept, "kept text")


@pytest.mark.parametrize(
    ("params", "code"),
    [({"num_speakers": 0}, "invalid_options"), ({"language": "fr"}, "invalid_options")],
)
def test_bad_options_in_a_job_are_not_retried(services, params, code):
    session_id, audio_id, job_id = _session_with_audio(services, b"RIFF", **params)
    assert _executor(services).run(job_id) == "failed"
    status, got, attempt, session_status, _ = _state(services, session_id, audio_id, job_id)
    assert (status, got, attempt, session_status) == ("failed", code, 1, "failed")


def test_deleted_audio_fails_with_audio_missing(services):
    session_id, audio_id, job_id = _session_with_audio(services, b"RIFF")
    with services.db.session() as s:
        s.delete(s.get(AudioFile, audio_id))
    assert _executor(services).run(job_id) == "failed"
    with services.db.session() as s:
        assert s.get(Job, job_id).error["code"] == "audio_missing"


def test_a_failed_job_removes_the_checkpoint_blobs_of_an_earlier_attempt(services):
    """A job retried after a crash whose audio was deleted meanwhile: nothing will resume the partial
    results its earlier attempt saved, so they go with the failure (no orphan blobs)."""
    session_id, audio_id, job_id = _session_with_audio(services, b"RIFF")
    with services.db.session() as s:
        session = s.get(RecordingSession, session_id)
        prefix = f"{session.user_id}/{session.id}/jobs/{job_id}"
        paths = [f"{prefix}/chunk-00000.json", f"{prefix}/chunk-00001.json", f"{prefix}/diarization.npz"]
        for path in paths:
            services.blobs.put(path, [b"{}"])
        s.get(Job, job_id).checkpoint = {"chunks": paths[:2], "diarization": paths[2]}
        s.delete(s.get(AudioFile, audio_id))
    assert all(services.blobs.exists(p) for p in paths)
    assert _executor(services).run(job_id) == "failed"
    with services.db.session() as s:
        assert s.get(Job, job_id).error["code"] == "audio_missing"
    assert not any(services.blobs.exists(p) for p in paths)


def test_a_job_whose_transcription_is_stored_completes_without_work(services):
    """A retried completion: the transcription of this job exists, so the attempt returns it and
    stores nothing (the audio here is not even decodable: no decoding happens)."""
    session_id, audio_id, job_id = _session_with_audio(services, b"not audio")
    with services.db.session() as s:
        row = tcrud.save_transcription(
            s,
            session=s.get(RecordingSession, session_id),
            transcript=Transcript.from_segments([Segment(1, 0.0, 1.0, "done once", "SPEAKER_00", "en")]),
            source="batch",
            job_id=job_id,
        )
        row_id = row.id
    assert _executor(services).run(job_id) == "completed"
    with services.db.session() as s:
        job = s.get(Job, job_id)
        assert job.result["transcription_id"] == str(row_id) and job.result["already_stored"] is True
        assert s.query(Transcription).filter(Transcription.session_id == session_id).count() == 1


def test_resume_keeps_readable_chunks_made_with_the_same_options(services):
    """What an earlier attempt saved is reused only while it fits: a chunk made with other options
    (another VAD_CHUNK_SECONDS) and every chunk after it are redone, as is a blob that is gone."""
    from api.transcribe_job import _load_resume
    from inference_client.transcription import ChunkCheckpoint, RecognizedSegment, TranscriptionOptions

    same = TranscriptionOptions(vad_chunk_s=20).checked().chunk_key()
    other = TranscriptionOptions(vad_chunk_s=600).checked().chunk_key()

    def chunk(i: int, key: str) -> str:
        cp = ChunkCheckpoint(
            i,
            i * 20000,
            i * 20000,
            (i + 1) * 20000,
            (i + 1) * 20000,
            False,
            (RecognizedSegment(i * 20000 + 10, i * 20000 + 900, f"c{i}", "en", "", ""),),
            key,
        )
        path = f"u/s/jobs/j/chunk-{i:05d}.json"
        services.blobs.put(path, [json.dumps(cp.to_dict()).encode()])
        return path

    paths = [chunk(0, same), chunk(1, same), chunk(2, other), chunk(3, same)]
    loaded = _load_resume(services, {"chunks": paths, "diarization": None}, same)
    assert [c.index for c in loaded] == [0, 1]
    assert [c.segments[0].text for c in loaded] == ["c0", "c1"]
    services.blobs.delete([paths[1]])
    loaded = _load_resume(services, {"chunks": paths, "diarization": "u/s/jobs/j/diarization.npz"}, same)
    assert [c.index for c in loaded] == [0]  # chunk 1's blob is gone; the missing diarization is redone


def test_missing_diarization_parameters_fail_the_job_saying_where_they_are_read(tmp_path, sqlite_url):
    settings = make_settings(
        tmp_path / "data",
        database_url=sqlite_url,
        triton_grpc_url="127.0.0.1:9",
        diarization_params_dir=tmp_path / "not-mounted",
    )
    db = Database(sqlite_url)
    services = JobServices(settings, db, make_blob_store(settings), WorkerInference(settings))
    try:
        session_id, audio_id, job_id = _session_with_audio(services, wav_bytes(1.0))
        assert _executor(services).run(job_id) == "failed"
        status, code, attempt, session_status, audio = _state(services, session_id, audio_id, job_id)
        assert (status, code, attempt, session_status) == ("failed", "diarization_unavailable", 1, "failed")
        assert "DIARIZATION_PARAMS_DIR" in audio.error_message and "not-mounted" in audio.error_message
    finally:
        services.inference.close()
        db.dispose()
