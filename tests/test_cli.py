"""The ``intrascribe`` CLI (bin/intrascribe -> intrascribe_cli) end to end, as a user runs it, against
a running stack: the api under uvicorn on a loopback port, a real worker process, tritonserver
serving the trained fixtures (tests/fixture_models.py), and the LLM provider's network boundary
(tests/api/fake_llm.py, a loopback OpenAI-compatible server) for summaries.

Checked: login (a wrong password is a message and a non-zero exit, the right one stores the token
owner-only), an unreachable server, a file that is not audio, the scripted 2-speaker meeting (mp3)
transcribed to JSON (speakers and sentences as tests/test_meeting_e2e.py checks them) and an m4a of
the ASR fixture's clips to SRT on stdout, a summary printed, a failed summary job's reason printed,
an API key from the environment."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
import srt
import webvtt

from api.db.migrate import upgrade
from api.main import create_app
from tests.api.conftest import JWT_SECRET, LoopbackServer, make_settings
from tests.api.fake_llm import FakeLLM, model_entry, write_config
from tests.api.sync_helpers import TEXTS, speech
from tests.api.test_jobs_processes import Workers
from tests.api.test_transcription_flow import norm
from tests.meetings import scripted_meeting_mp3
from tests.test_meeting_e2e import check_two_speaker_transcript, fixture_server  # noqa: F401
from tests.test_transcription import write_audio

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "bin" / "intrascribe"
PASSWORD = "a-long-cli-password"
SUMMARY = "# Minutes\n\nThe team met and **agreed** on the plan for the scripted meeting."


class LLMReplies:
    """What the fake provider answers: the summary JSON, or (``broken``) text that is not JSON."""

    broken = False

    def __call__(self, messages) -> str:
        if self.broken:
            return "I cannot produce JSON today."
        return json.dumps(
            {"summary": SUMMARY, "key_points": ["plan agreed"], "action_items": [], "decisions": []}
        )


class Stack:
    """The api over HTTP (``url``) on a SQLite database and queue, the fake LLM behind LLM_CONFIG;
    ``start_worker(grpc_url, params_dir)`` adds a worker process (only transcription needs Triton)."""

    def __init__(self, tmp: Path, fake: FakeLLM, replies: LLMReplies):
        self.replies = replies
        db_url = f"sqlite:///{tmp}/api.db"
        upgrade(db_url)
        config = write_config(tmp / "llm.yaml", [model_entry(fake)], max_output_tokens=300)
        self.settings = make_settings(
            tmp / "data", database_url=db_url, extra_job_modules=[], llm_config=config
        )
        self.env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": "",
            "QUEUE_BACKEND": "sqlite",
            "DATA_DIR": str(tmp / "data"),
            "AUTH_MODE": "embedded",
            "JWT_SECRET": JWT_SECRET,
            "TRITON_HTTP_URL": "",
            "LLM_CONFIG": str(config),
            "EXTRA_JOB_MODULES": "",
            "JOB_RETRY_DELAY_SECONDS": "0.2",
        }
        self.logdir = tmp / "logs"
        self.logdir.mkdir()
        self.workers: Workers | None = None
        self.url = ""

    def start_worker(self, grpc_url: str, params_dir: Path) -> Workers:
        if self.workers is None:
            env = {**self.env, "TRITON_GRPC_URL": grpc_url, "DIARIZATION_PARAMS_DIR": str(params_dir)}
            self.workers = Workers(env, self.logdir)
            self.workers.start(1)
        return self.workers

    def logs(self) -> str:
        return self.workers.logs() if self.workers else ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    replies = LLMReplies()
    with FakeLLM(replies) as fake:
        st = Stack(tmp_path_factory.mktemp("cli_stack"), fake, replies)
        try:
            with LoopbackServer(create_app(st.settings)) as api:
                st.url = api.url
                yield st
        finally:
            if st.workers:
                st.workers.stop()


@pytest.fixture(scope="module")
def worker(stack, fixture_server):  # noqa: F811
    """A worker process reaching tritonserver serving the trained fixtures."""
    server, _, params_dir = fixture_server
    return stack.start_worker(server.ports.grpc_url, params_dir)


@pytest.fixture(scope="module")
def account(stack) -> dict:
    url = stack.url
    email = "cli-user@example.com"
    r = httpx.post(f"{url}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return {"email": email, "token": r.json()["access_token"]}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """XDG_CONFIG_HOME of the CLI runs: where ``login`` stores its credentials."""
    return tmp_path_factory.mktemp("cli_home")


def run_cli(*args: str, url: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INTRASCRIBE_")}
    environ.update({"XDG_CONFIG_HOME": str(home), "INTRASCRIBE_URL": url, "COLUMNS": "120", **env})
    return subprocess.run([str(CLI), *args], env=environ, capture_output=True, text=True, timeout=600)


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr


@pytest.fixture(scope="module")
def logged_in(stack, account, home) -> dict:
    url = stack.url
    p = run_cli("login", "--email", account["email"], "--password", PASSWORD, url=url, home=home)
    assert p.returncode == 0, p.stderr
    return account


def test_help_names_every_command():
    p = subprocess.run([str(CLI), "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for command in ("login", "transcribe", "summarize", "sessions"):
        assert command in p.stdout
    assert "Usage: intrascribe" in p.stdout


def test_wrong_password_fails_with_a_message_right_one_stores_the_token_owner_only(stack, account, tmp_path):
    url = stack.url
    p = run_cli(
        "login", "--email", account["email"], "--password", "not-the-password", url=url, home=tmp_path
    )
    assert p.returncode != 0
    assert "wrong email or password" in p.stderr
    no_traceback(p)
    assert not (tmp_path / "intrascribe" / "credentials.json").exists()

    p = run_cli("login", "--email", account["email"], "--password", PASSWORD, url=url, home=tmp_path)
    assert p.returncode == 0, p.stderr
    path = tmp_path / "intrascribe" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["url"] == url and stored["email"] == account["email"]
    # the stored token is a working one
    r = httpx.get(
        f"{url}/api/v1/users/profile", headers={"authorization": f"Bearer {stored['access_token']}"}
    )
    assert r.status_code == 200 and r.json()["email"] == account["email"], r.text


def test_unreachable_server_and_missing_login_are_messages(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
        p = run_cli("login", "--email", "a@example.com", "--password", "x" * 12, url=closed, home=tmp_path)
    assert p.returncode == 3
    assert "cannot reach the Intrascribe server" in p.stderr and closed in p.stderr
    no_traceback(p)
    p = run_cli("sessions", url=closed, home=tmp_path)
    assert p.returncode == 1 and "not logged in" in p.stderr, p.stderr
    no_traceback(p)


def test_a_file_that_is_not_audio_is_refused_with_a_message(stack, logged_in, home, tmp_path):
    notes = tmp_path / "notes.m4a"
    notes.write_text("these are meeting notes, not a recording\n" * 50)
    p = run_cli("transcribe", str(notes), "--format", "srt", url=stack.url, home=home)
    assert p.returncode == 1
    assert "not an audio file" in p.stderr, p.stderr
    no_traceback(p)


@pytest.fixture(scope="module")
def meeting_json(stack, worker, logged_in, home, tmp_path_factory) -> tuple[dict, str, str, dict]:
    """The scripted meeting transcribed by the CLI to JSON: (document, session id, stderr, its meta)."""
    mp3, meta = scripted_meeting_mp3(2)
    out = tmp_path_factory.mktemp("cli_out") / "meeting.json"
    p = run_cli("transcribe", str(mp3), "--format", "json", "-o", str(out), url=stack.url, home=home)
    assert p.returncode == 0, f"{p.stderr}\nworker logs:\n{stack.logs()}"
    sid = p.stderr.split("session ", 1)[1].split(",", 1)[0]
    return json.loads(out.read_text()), sid, p.stderr, meta


def test_transcribe_meeting_to_json(meeting_json):
    doc, sid, stderr, meta = meeting_json
    assert doc["format"] == "intrascribe.transcript"
    rows = [(s["start_time"], s["end_time"], s["speaker"], s["text"]) for s in doc["segments"]]
    print("\n".join(f"  [{a:6.2f}-{b:6.2f}] {spk}: {text}" for a, b, spk, text in rows))
    check_two_speaker_transcript(rows, meta)
    # the progress bar was fed to the end (the job's SSE stream ended with `completed`)
    assert "100%" in stderr, stderr


def test_transcribe_m4a_to_srt_on_stdout(stack, worker, logged_in, home, tmp_path):
    audio, spans = speech([1.5, 1.5, 1.5])  # two clips the fixture transcribes exactly with ITN on
    # Apple Lossless in an .m4a (the fixture is trained on clean clips: a lossy codec may cost it a word)
    m4a = write_audio(tmp_path / "meeting.m4a", audio, "ipod", "alac")
    p = run_cli(
        "transcribe",
        str(m4a),
        "--format",
        "srt",
        "--speakers",
        "1",
        "--title",
        "Stand-up",
        url=stack.url,
        home=home,
    )
    assert p.returncode == 0, f"{p.stderr}\nworker logs:\n{stack.logs()}"
    cues = list(srt.parse(p.stdout))
    # the SRT is the session's stored transcript: speaker and text per cue, at its times
    sid = p.stderr.split("session ", 1)[1].split(",", 1)[0]
    stored = httpx.get(
        f"{stack.url}/api/v1/sessions/{sid}/transcription",
        headers={"authorization": f"Bearer {logged_in['token']}"},
    ).json()["segments"]
    assert [c.content for c in cues] == [f"{s['speaker']}: {s['text']}" for s in stored]
    assert [round(c.start.total_seconds(), 2) for c in cues] == [round(s["start_time"], 2) for s in stored]
    session = httpx.get(
        f"{stack.url}/api/v1/sessions/{sid}", headers={"authorization": f"Bearer {logged_in['token']}"}
    ).json()
    assert session["title"] == "Stand-up"
    # one cue per clip, where the clip is, one speaker (--speakers 1), the clip's words (the ASR
    # fixture, learned without ITN, may drop a word of a clip under the api's default ITN)
    assert len(cues) == len(TEXTS) and len({c.content.split(": ", 1)[0] for c in cues}) == 1, p.stdout
    for cue, text, (start, end) in zip(cues, TEXTS, spans, strict=True):
        assert abs(cue.start.total_seconds() - start) < 0.5 and abs(cue.end.total_seconds() - end) < 0.5, (
            cue,
            start,
        )
        heard, said = norm(cue.content.split(": ", 1)[1]), norm(text)
        assert len(heard) >= 0.6 * len(said) and (heard in said or said in heard), (heard, said)


def test_summarize_prints_the_summary_and_a_failed_job_its_reason(stack, meeting_json, home):
    url, replies = stack.url, stack.replies
    sid = meeting_json[1]
    p = run_cli("summarize", sid, url=url, home=home)
    assert p.returncode == 0, f"{p.stderr}\nworker logs:\n{stack.logs()}"
    assert p.stdout.strip() == SUMMARY  # not a terminal: the Markdown as the LLM wrote it
    replies.broken = True
    try:
        p = run_cli("summarize", sid, url=url, home=home)
    finally:
        replies.broken = False
    assert p.returncode == 1
    assert "the summary job" in p.stderr and "failed" in p.stderr, p.stderr
    assert "llm_malformed_output" in p.stderr, p.stderr
    no_traceback(p)
    p = run_cli("summarize", "00000000-0000-4000-8000-000000000000", url=url, home=home)
    assert p.returncode == 1 and "no session" in p.stderr, p.stderr


def test_api_key_from_the_environment_lists_sessions(stack, logged_in, meeting_json, tmp_path):
    url = stack.url
    r = httpx.post(
        f"{url}/api/v1/api-keys",
        json={"name": "cli"},
        headers={"authorization": f"Bearer {logged_in['token']}"},
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    # a fresh home: no stored login, the key alone
    p = run_cli("sessions", url=url, home=tmp_path, INTRASCRIBE_API_KEY=key)
    assert p.returncode == 0, p.stderr
    assert meeting_json[1] in p.stdout
    p = run_cli("sessions", url=url, home=tmp_path, INTRASCRIBE_API_KEY=key[:-4] + "abcd")
    assert p.returncode == 1 and "not authorised" in p.stderr, p.stderr
    no_traceback(p)
    # `login --api-key` checks the key and stores it (owner-only); later commands need nothing else
    p = run_cli("--api-key", key[:-4] + "abcd", "login", url=url, home=tmp_path)
    assert p.returncode == 1 and not (tmp_path / "intrascribe" / "credentials.json").exists(), p.stderr
    p = run_cli("--api-key", key, "login", url=url, home=tmp_path)
    assert p.returncode == 0, p.stderr
    path = tmp_path / "intrascribe" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text())["api_key"] == key
    p = run_cli("sessions", url=url, home=tmp_path)
    assert p.returncode == 0 and meeting_json[1] in p.stdout, p.stderr


def test_export_writes_vtt_txt_and_md_with_the_summary(stack, meeting_json, home, tmp_path):
    doc, sid = meeting_json[0], meeting_json[1]
    segments = [(s["speaker"], s["text"]) for s in doc["segments"]]
    out = tmp_path / "meeting.vtt"
    p = run_cli("export", sid, "--format", "vtt", "-o", str(out), url=stack.url, home=home)
    assert p.returncode == 0, p.stderr
    captions = webvtt.read(str(out))
    assert [(c.voice, c.text) for c in captions] == segments
    p = run_cli("export", sid, "--format", "txt", url=stack.url, home=home)
    assert p.returncode == 0, p.stderr
    lines = re.findall(r"^\[\d\d:\d\d:\d\d\] (\S+): (.+)$", p.stdout, re.M)
    assert lines == segments
    # Markdown minutes carry the latest summary (test_summarize_prints_... made one)
    p = run_cli("export", sid, "-f", "md", url=stack.url, home=home)
    assert p.returncode == 0, p.stderr
    assert "The team met and **agreed** on the plan" in p.stdout
    assert all(text in p.stdout for _, text in segments)
    p = run_cli("export", "00000000-0000-4000-8000-000000000000", url=stack.url, home=home)
    assert p.returncode == 1 and "not found" in p.stderr, p.stderr
    no_traceback(p)
