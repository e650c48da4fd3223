"""The scripted 2-speaker meeting of tests/test_meeting_e2e.py through the api: mp3 upload to
``POST /api/v1/transcriptions/batch`` -> a real worker process -> tritonserver serving the trained
fixtures (tests/fixture_models.py) -> the stored transcript and its SRT export, with the same
assertions as the library test (every sentence outside the overlap once, in order, under its
speaker; the monologue whole). The job runs with the api's defaults (language auto, ITN on)."""

from __future__ import annotations

import pytest
import srt

from tests.api.conftest import register
from tests.api.test_transcription_flow import stack_at, wait_job  # noqa: F401  (stack_at is a fixture)
from tests.meetings import scripted_meeting_mp3
from tests.test_meeting_e2e import check_two_speaker_transcript, fixture_server  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_mp3_meeting_upload_to_speaker_attributed_transcript_and_srt(stack_at, fixture_server, monkeypatch):  # noqa: F811
    server, _, params_dir = fixture_server
    # the worker processes read the diarization fixture's parameters (they inherit the environment)
    monkeypatch.setenv("DIARIZATION_PARAMS_DIR", str(params_dir))
    client, _, _, workers = stack_at(server.ports.grpc_url)
    mp3, meta = scripted_meeting_mp3(2)
    h = register(client)["headers"]
    with open(mp3, "rb") as f:
        r = client.post(
            "/api/v1/transcriptions/batch",
            files={"audio_file": (mp3.name, f, "audio/mpeg")},
            data={"title": "Scripted meeting"},
            headers=h,
        )
    assert r.status_code == 202, r.text
    sid = r.json()["session_id"]
    wait_job(client, h, r.json()["job_id"], workers)
    current = client.get(f"/api/v1/sessions/{sid}/transcription", headers=h).json()
    rows = [(s["start_time"], s["end_time"], s["speaker"], s["text"]) for s in current["segments"]]
    print("\n".join(f"  [{a:6.2f}-{b:6.2f}] {spk}: {text}" for a, b, spk, text in rows))
    check_two_speaker_transcript(rows, meta)

    # the SRT export carries the same segments: speaker and text per cue, in order
    r = client.get(f"/api/v1/sessions/{sid}/export", params={"format": "srt"}, headers=h)
    assert r.status_code == 200, r.text
    cues = [c.content.split(": ", 1) for c in srt.parse(r.text)]
    assert [(spk, text) for spk, text in cues] == [(spk, text) for _, _, spk, text in rows]
