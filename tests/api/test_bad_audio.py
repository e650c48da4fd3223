"""Bad input at upload: every row of docs/bad-input.md's table, uploaded through the api.

The expected outcomes are read from the table (so the table stays true): each row's file is made here
(PyAV / soundfile, nothing committed), uploaded as multipart, and the answer's status and code, the
recorded duration, and — for a refused file — that no blob and no row was kept are asserted. On the
local blob store for every row; on Supabase Storage (a loopback fake at the network boundary, where
the probe reads a temporary copy) for a few.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from api.models import AudioFile, Job, RecordingSession
from inference_client.audio import AudioDecodeError, decode_to_file, probe_audio
from tests.api.conftest import make_settings, register
from tests.api.fakes import FakeStorage, serve
from tests.test_audio_decode import encode, tone, video_only, zeroed_m4a

DOC = Path(__file__).parents[2] / "docs" / "bad-input.md"
S = "/api/v1/sessions/"
LIMIT = 8 * 1024 * 1024  # MAX_UPLOAD_BYTES in these tests
SERVICE_KEY = "service-role-key-for-bad-audio"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
TEXT = ("meeting notes, not audio\n" * 200).encode()


# -- the table ---------------------------------------------------------------------------------------


def table() -> dict[str, dict[str, str]]:
    """docs/bad-input.md's table: id -> {column: cell}."""
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(header), line
        row = dict(zip(header, cells, strict=True))
        rows[row["id"].strip("`")] = row
    return rows


ROWS = table()


def expected_upload(cell: str) -> tuple[int, str | None]:
    """'201' -> (201, None); '415 `not_audio`' -> (415, 'not_audio')."""
    m = re.fullmatch(r"(\d{3})(?: `(\w+)`)?", cell)
    assert m, f"upload cell {cell!r} is not 'STATUS' or 'STATUS `code`'"
    return int(m.group(1)), m.group(2)


# -- the files: one maker per row ----------------------------------------------------------------------


def wav(path: Path, x: np.ndarray, rate: int, subtype: str) -> Path:
    sf.write(str(path), x.T if x.ndim == 2 else x, rate, subtype=subtype)
    return path


def cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def cut_in_half(path: Path) -> Path:
    return cut(path, path.stat().st_size // 2)


def with_bad_sample(value: float) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        x = tone(16000)[0]
        x[8000] = value
        return wav(d / "meeting.wav", x, 16000, "FLOAT")

    return make


def streamed_header(d: Path) -> Path:
    path = wav(d / "meeting.wav", tone(16000, seconds=1.5)[0], 16000, "PCM_16")
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def late_nan(d: Path) -> Path:
    x = np.full(8000 * 120, 0.01, np.float32)
    x[8000 * 90] = math.nan
    return wav(d / "meeting.wav", x, 8000, "FLOAT")


def written(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def renamed(make: Callable[[Path], Path], name: str) -> Callable[[Path], Path]:
    return lambda d: make(d).rename(d / name)


def mp3(d: Path) -> Path:
    return encode(d / "meeting.mp3", "libmp3lame", 44100, tone(44100, channels=2))


FILES: dict[str, Callable[[Path], Path]] = {
    "wav-8k-stereo": lambda d: wav(d / "meeting.wav", tone(8000, channels=2), 8000, "PCM_16"),
    "wav-96k-float": lambda d: wav(d / "meeting.wav", tone(96000), 96000, "FLOAT"),
    "wav-16k": lambda d: wav(d / "meeting.wav", tone(16000), 16000, "PCM_16"),
    "mp3": mp3,
    "m4a": lambda d: encode(d / "meeting.m4a", "aac", 48000, tone(48000, channels=2)),
    "ogg-opus": lambda d: encode(d / "meeting.ogg", "libopus", 48000, tone(48000)),
    "webm-opus": lambda d: encode(d / "meeting.webm", "libopus", 48000, tone(48000)),
    "flac": lambda d: encode(d / "meeting.flac", "flac", 22050, tone(22050)),
    "mp4-video": lambda d: encode(d / "meeting.mp4", "aac", 44100, tone(44100), video=True),
    "mkv-video": lambda d: encode(d / "meeting.mkv", "libopus", 48000, tone(48000), video=True),
    "mp3-as-wav": renamed(mp3, "meeting.wav"),
    "clip-150ms": lambda d: encode(d / "blip.ogg", "libopus", 48000, tone(48000, seconds=0.15)),
    "silence": lambda d: encode(d / "silence.flac", "flac", 16000, np.zeros((1, 16000 * 120), np.float32)),
    "empty": written("meeting.wav", b""),
    "pdf": written("report.pdf", PDF),
    "pdf-as-wav": written("meeting.wav", PDF),
    "text-as-mp3": written("notes.mp3", TEXT),
    "text": written("notes.txt", TEXT),
    "random-as-m4a": written("meeting.m4a", np.random.default_rng(0).bytes(50_000)),
    "video-only": lambda d: video_only(d / "film.mp4"),
    "wav-header-only": lambda d: wav(d / "meeting.wav", np.zeros(0, np.float32), 16000, "PCM_16"),
    "mp3-cut": lambda d: cut_in_half(
        encode(d / "meeting.mp3", "libmp3lame", 44100, tone(44100, seconds=4.0))
    ),
    "wav-cut": lambda d: cut(
        wav(d / "meeting.wav", tone(16000, seconds=3.0)[0], 16000, "PCM_16"), 44 + 32000
    ),
    "wav-streamed-header": streamed_header,
    "m4a-cut": lambda d: cut_in_half(encode(d / "meeting.m4a", "aac", 48000, tone(48000, seconds=4.0))),
    "m4a-zeroed": lambda d: zeroed_m4a(d / "meeting.m4a"),
    "nan": with_bad_sample(math.nan),
    "inf": with_bad_sample(math.inf),
    "nan-late": late_nan,
    "clip-50ms": lambda d: wav(d / "blip.wav", tone(16000, seconds=0.05)[0], 16000, "PCM_16"),
    "over-limit": lambda d: wav(d / "meeting.wav", np.zeros(LIMIT // 2 + 16000, np.int16), 16000, "PCM_16"),
}
MULTIPART_ROWS = {"bad-multipart"}  # not a file: a broken request body, made in the test


def test_every_row_of_the_table_has_a_file_and_every_file_a_row():
    assert set(ROWS) == set(FILES) | MULTIPART_ROWS


# -- the uploads -----------------------------------------------------------------------------------

ROUTES = ["session", "batch"]  # POST /api/v1/sessions/{id}/audio_files, POST /api/v1/transcriptions/batch
BATCH = "/api/v1/transcriptions/batch"


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One app on the local blob store and SQLite for the whole table (the rows are independent:
    each uploads into its own session; accepted batch jobs stay queued, no worker runs here)."""
    tmp = tmp_path_factory.mktemp("bad-audio")
    from api.db.migrate import upgrade

    url = f"sqlite:///{tmp}/api.db"
    upgrade(url)
    settings = make_settings(tmp, database_url=url, max_upload_bytes=LIMIT, max_active_jobs_per_user=1000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, register(client), lambda: blob_files(settings.data_dir / "blobs")


def target(client: TestClient, user: dict, route: str) -> tuple[str, str | None]:
    """(the url to post to, the session's id: a new session for the session route, None for batch)."""
    if route == "batch":
        return BATCH, None
    sid = client.post(S, json={}, headers=user["headers"]).json()["id"]
    return f"{S}{sid}/audio_files", sid


def snapshot(client: TestClient, blobs: Callable[[], list]) -> dict:
    """Everything an upload may leave: blobs, sessions, audio files, jobs."""
    with client.app.state.ctx.db.session() as s:
        rows = {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (RecordingSession, AudioFile, Job)
        }
    return {"blobs": blobs(), **rows}


def upload(client, user, path: Path, route: str, blobs: Callable[[], list]):
    url, sid = target(client, user, route)
    before = snapshot(client, blobs)
    with open(path, "rb") as f:
        files = {"audio_file": (path.name, f, "application/octet-stream")}
        r = client.post(url, files=files, headers=user["headers"])
    if route == "batch" and r.status_code == 202:
        sid = r.json()["session_id"]
    return sid, r, before, snapshot(client, blobs)


def assert_outcome(client, user, row: dict[str, str], route: str, sid, r, before: dict, now: dict):
    status, code = expected_upload(row["upload"])
    accepted = 202 if route == "batch" else 201  # the batch route answers 202 with the job's id
    assert r.status_code == (accepted if status == 201 else status), (row["id"], r.status_code, r.text)
    if status == 201:
        listed = client.get(f"{S}{sid}/audio_files", headers=user["headers"]).json()
        assert len(listed) == 1
        f = listed[0]
        if route == "session":
            assert r.json() == f
        assert f["duration_seconds"] == pytest.approx(float(row["duration recorded (s)"]), abs=0.05), f
        assert f["sample_rate"] and f["channels"] and f["format"]
        added = {k: now[k] - before[k] for k in ("recording_sessions", "audio_files", "jobs")}
        assert added == {
            "recording_sessions": int(route == "batch"),
            "audio_files": 1,
            "jobs": int(route == "batch"),
        }
        assert len(now["blobs"]) == len(before["blobs"]) + 1
        return f
    assert now == before, "a refused upload left something behind"
    if sid is not None:
        assert client.get(f"{S}{sid}/audio_files", headers=user["headers"]).json() == []
    assert row["duration recorded (s)"] == "—"
    body = r.json()
    assert isinstance(body, dict) and body.get("detail"), body
    if code is not None:  # the stable code reaches the client, then the reason
        assert isinstance(body["detail"], str) and body["detail"].startswith(f"{code}: "), body
    assert "/tmp" not in r.text and "Traceback" not in r.text
    return None


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", sorted(FILES))
def test_upload_outcome_is_the_tables(api, tmp_path, case, route):
    client, user, blobs = api
    path = FILES[case](tmp_path)
    f = assert_outcome(client, user, ROWS[case], route, *upload(client, user, path, route, blobs))
    if case == "mp3-as-wav":
        assert f["format"] == "mp3" and f["original_filename"] == "meeting.wav"
    if case in ("m4a", "webm-opus"):  # the two libsndfile could not describe
        assert (f["format"], f["sample_rate"]) == (case.split("-")[0], 48000)


@pytest.mark.parametrize("route", ROUTES)
def test_a_malformed_multipart_body_is_422(api, route):
    client, user, blobs = api
    assert expected_upload(ROWS["bad-multipart"]["upload"]) == (422, None)
    url, sid = target(client, user, route)
    before = snapshot(client, blobs)
    not_multipart = client.post(
        url, content=b"RIFF....", headers={**user["headers"], "Content-Type": "audio/wav"}
    )
    no_file_part = client.post(
        url, data={"title": "x"}, files={"other": ("a.wav", b"x")}, headers=user["headers"]
    )
    broken = client.post(
        url,
        content=b'--zz\r\nContent-Disposition: form-data; name="audio_file"; filename="a.wav"\r\n\r\nRIFF',
        headers={**user["headers"], "Content-Type": "multipart/form-data; boundary=zz"},
    )
    for r in (not_multipart, no_file_part):
        assert r.status_code == 422, r.text
    # a body cut before its closing boundary: the part so far is the file, judged as audio
    assert broken.status_code == 415 and broken.json()["detail"].startswith("not_audio: "), broken.text
    assert snapshot(client, blobs) == before


# -- a remote blob store: the probe reads a temporary copy of the whole file ------------------------


@pytest.fixture(scope="module")
def supabase_api(tmp_path_factory):
    """One app on Supabase Storage (a loopback fake of its REST API) for the rows below."""
    tmp = tmp_path_factory.mktemp("bad-audio-supabase")
    from api.db.migrate import upgrade

    db_url = f"sqlite:///{tmp}/api.db"
    upgrade(db_url)
    fake = FakeStorage(SERVICE_KEY)
    with serve(fake) as url:
        settings = make_settings(
            tmp,
            database_url=db_url,
            blob_backend="supabase",
            supabase_url=url,
            supabase_service_role_key=SERVICE_KEY,
            max_upload_bytes=LIMIT,
            max_active_jobs_per_user=1000,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client, register(client), fake


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", ["m4a", "webm-opus", "mp3-cut", "pdf-as-wav", "empty", "nan", "clip-50ms"])
def test_on_supabase_storage_the_same_outcomes_and_nothing_kept(supabase_api, tmp_path, case, route):
    client, user, fake = supabase_api
    path = FILES[case](tmp_path)
    outcome = upload(client, user, path, route, lambda: sorted(fake.objects))
    f = assert_outcome(client, user, ROWS[case], route, *outcome)
    if f is not None:
        assert fake.objects[("audio-recordings", f["storage_path"])][0] == path.read_bytes()


# -- the job column: what the transcription job's decode makes of what the upload accepted --------


def expected_job(cell: str) -> str | None:
    """'completed…' -> None; 'failed `code`' -> 'code'."""
    m = re.fullmatch(r"completed.*|failed `(\w+)`", cell)
    assert m, f"job cell {cell!r} is neither 'completed…' nor 'failed `code`'"
    return m.group(1)


@pytest.mark.parametrize("case", sorted(c for c in FILES if expected_upload(ROWS[c]["upload"])[0] == 201))
def test_the_jobs_decode_of_an_accepted_upload_is_the_tables(tmp_path, case):
    """The job decodes with inference_client.audio.decode_to_file (after probe_audio): a row the
    table says completes decodes whole, to the recorded duration; a row it says fails raises the
    code the failed job carries (api/transcribe_job.py: AudioDecodeError -> JobError(code))."""
    row = ROWS[case]
    path = FILES[case](tmp_path)
    code = expected_job(row["the job"])
    if code is None:
        probe_audio(path)
        decoded = decode_to_file(path, tmp_path / "decoded.f32")
        assert decoded.duration_s == pytest.approx(float(row["duration recorded (s)"]), abs=0.06)
    else:
        with pytest.raises(AudioDecodeError) as e:
            decode_to_file(path, tmp_path / "decoded.f32")
        assert e.value.code == code
        assert not list(tmp_path.glob("decoded.f32*"))  # nothing half-written is left


# -- the job column, through the real job: uploaded by the batch route, run by the worker's executor
# in this process against a real tritonserver (the models of the batch flow's end-to-end test) ----

JOB_CASES = ["webm-opus", "m4a", "mkv-video", "mp3-cut", "silence", "nan-late"]


@pytest.fixture(scope="module")
def job_stack(tmp_path_factory, triton_models):
    from api.blobstore import make_blob_store
    from api.db.migrate import upgrade
    from api.db.session import Database
    from api.inference import WorkerInference
    from api.jobs.kinds import load_job_modules
    from api.jobs.runner import JobExecutor, JobServices
    from api.jobs.store import JobStore
    from speechlib.interfaces import ASR, VAD, Segmentation, SpeakerEmbedding

    server = triton_models(VAD.NAME, ASR.NAME, Segmentation.NAME, SpeakerEmbedding.NAME)
    tmp = tmp_path_factory.mktemp("bad-audio-jobs")
    url = f"sqlite:///{tmp}/api.db"
    upgrade(url)
    settings = make_settings(
        tmp / "data", database_url=url, triton_grpc_url=server.ports.grpc_url, max_active_jobs_per_user=1000
    )
    db, inference = Database(url), WorkerInference(settings)
    services = JobServices(settings, db, make_blob_store(settings), inference)
    executor = JobExecutor(JobStore(db), load_job_modules(), heartbeat_seconds=5, services=services)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, register(client), executor
    inference.close()
    db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("case", JOB_CASES)
def test_the_job_outcome_is_the_tables(job_stack, tmp_path, case):
    from api.crud.transcriptions import current_transcription

    assert expected_upload(ROWS[case]["upload"])[0] == 201
    client, user, executor = job_stack
    path = FILES[case](tmp_path)
    with open(path, "rb") as f:
        r = client.post(
            BATCH, files={"audio_file": (path.name, f, "application/octet-stream")}, headers=user["headers"]
        )
    assert r.status_code == 202, r.text
    job_id, sid = r.json()["job_id"], r.json()["session_id"]
    code = expected_job(ROWS[case]["the job"])
    assert executor.run(job_id) == ("failed" if code else "completed")
    job = client.get(f"/api/v1/jobs/{job_id}", headers=user["headers"]).json()
    session = client.get(f"{S}{sid}", headers=user["headers"]).json()
    if code:
        assert (job["status"], job["error"]["code"], session["status"]) == ("failed", code, "failed"), job
        return
    assert (job["status"], session["status"]) == ("completed", "completed"), job
    with client.app.state.ctx.db.session() as s:
        stored = current_transcription(s, uuid.UUID(sid))
        assert stored is not None
        if "empty transcript" in ROWS[case]["the job"]:
            assert stored.segments == [] and not stored.content
