"""The original's direct calls on Triton: POST /transcribe (JSON waveform) and POST /diarize-file
(multipart), against the app under uvicorn on loopback and a real tritonserver with the trained ASR
and diarization fixtures (tests/api/sync_helpers.py)."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pytest
from scipy.signal import resample_poly

from speechlib.interfaces import SAMPLE_RATE
from tests.api import sync_helpers as sh
from tests.api.sync_helpers import SYNC_LIMIT_S, TEXTS, served_app, stored_transcription, wav_bytes
from tests.diarization_helpers import frame_der


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with sh.speech_app(tmp_path_factory) as s:
        yield s


@pytest.fixture(scope="module")
def speech():
    return sh.speech([0.8, 1.5, 1.0])


def post(served, path: str, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", served.auth)
    return httpx.post(f"{served.url}{path}", headers=headers, timeout=120, **kwargs)


def transcribe(served, samples, sample_rate=SAMPLE_RATE, **fields) -> httpx.Response:
    body = {"audio_data": {"sample_rate": sample_rate, "audio_array": list(map(float, samples))}, **fields}
    return post(served, "/transcribe", json=body)


def test_transcribe_floats_answers_the_originals_shape_with_real_confidence(served, speech):
    x, spans = speech
    r = transcribe(served, x)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"success", "text", "confidence_score", "processing_time_ms", "error_message"} <= set(body)
    assert body["success"] is True and body["error_message"] is None
    assert body["text"] == " ".join(TEXTS) and body["language"] == "en"
    assert body["processing_time_ms"] > 0
    assert [s["text"] for s in body["segments"]] == TEXTS
    for seg, (a, b) in zip(body["segments"], spans, strict=True):
        assert abs(seg["start_time"] - a) < 0.4 and abs(seg["end_time"] - b) < 0.4
        assert 0.5 < seg["confidence_score"] < 1.0 and seg["language"] == "en"
    # the whole text's confidence lies between its segments' (a geometric mean over all tokens)
    low, high = sorted(s["confidence_score"] for s in body["segments"])
    assert low <= body["confidence_score"] <= high and body["confidence_score"] != 1.0

    # recorded in the caller's history: a new session with this transcription (source direct)
    session, current = stored_transcription(served.app, body["session_id"])
    assert str(session.user_id) and current.source == "direct" and current.content == body["text"]
    assert len(current.segments) == 2 and current.segments[0]["confidence_score"] == pytest.approx(
        body["segments"][0]["confidence_score"]
    )


def test_confidence_drops_when_the_speech_is_buried_in_noise(served, speech):
    x, _ = speech
    clean = transcribe(served, x).json()
    noisy_x = x + np.random.default_rng(0).normal(0, 0.08, x.size).astype(np.float32)
    noisy = transcribe(served, np.clip(noisy_x, -1, 1)).json()
    assert noisy["success"] is True
    assert noisy["confidence_score"] < clean["confidence_score"]


def test_int16_scale_values_and_other_rates_are_converted(served, speech):
    x, spans = speech
    int16 = np.round(x * 32767).astype(np.int16)
    r = transcribe(served, int16.astype(float))
    assert r.status_code == 200 and r.json()["text"] == " ".join(TEXTS)
    # Other rates are resampled to 16 kHz: the segments fall where the clips are (unresampled, 48 kHz
    # samples read as 16 kHz would put them 3x later). The tiny fixture knows its clips only as they
    # were at 16 kHz, so after a resampling round trip the text is checked to contain them.
    for rate, scale in ((48000, 1.0), (8000, 32767.0)):
        up, down = rate // 8000, SAMPLE_RATE // 8000
        xr = np.round(resample_poly(x, up, down) * scale) if scale > 1 else resample_poly(x, up, down)
        r = transcribe(served, xr, sample_rate=rate)
        body = r.json()
        assert r.status_code == 200 and body["success"] is True, r.text
        # at 8 kHz (telephone band) the tiny fixture may lose the second clip: the first is checked
        expected = 2 if rate > SAMPLE_RATE else 1
        assert len(body["segments"]) >= expected, body
        for seg, text, (a, b) in list(zip(body["segments"], TEXTS, spans, strict=False))[:expected]:
            assert set(text.split()) & set(seg["text"].split()), (rate, body)
            assert abs(seg["start_time"] - a) < 0.4, (rate, body)
            assert rate < SAMPLE_RATE or abs(seg["end_time"] - b) < 0.4, (rate, body)


def test_a_minute_of_samples_passes_the_body_limit(served):
    """60 s of float samples as JSON is ~20 MB: over MAX_BODY_BYTES (1 MiB), within this route's limit."""
    silence = np.zeros(60 * SAMPLE_RATE)
    r = transcribe(served, silence)
    assert len(json.dumps({"a": silence.tolist()})) > 1024 * 1024
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["text"] == ""


def test_transcribe_into_an_existing_session_and_not_into_anothers(served, speech):
    x, _ = speech
    r = httpx.post(f"{served.url}/api/v1/sessions/", json={"title": "standup"}, headers=served.auth)
    session_id = r.json()["id"]
    r = transcribe(served, x, session_id=session_id, language="en")
    assert r.status_code == 200 and r.json()["session_id"] == session_id
    session, current = stored_transcription(served.app, session_id)
    assert current.content == " ".join(TEXTS) and session.title == "standup"

    from tests.api.sync_helpers import register_with_key

    _, other_key, _ = register_with_key(served.url)
    r = post(
        served,
        "/transcribe",
        json={"audio_data": {"sample_rate": 16000, "audio_array": x.tolist()}, "session_id": session_id},
        headers={"Authorization": f"Bearer {other_key}"},
    )
    assert r.status_code == 404 and r.json()["success"] is False
    assert transcribe(served, x, session_id=str(uuid.uuid4())).status_code == 404


def test_transcribe_mistakes_are_4xx_with_the_originals_shape(served, speech):
    x, _ = speech
    r = httpx.post(f"{served.url}/transcribe", json={"audio_data": {"audio_array": [0.0]}})
    assert r.status_code == 401
    cases = [
        (transcribe(served, []), 400, "no samples"),
        (transcribe(served, x, language="klingon"), 400, "supported"),
        (transcribe(served, x * 1e6), 400, "int16"),
        (
            transcribe(served, np.zeros(int((SYNC_LIMIT_S + 5) * 8000)), 8000),
            413,
            "/api/v1/transcriptions/batch",
        ),
    ]
    for r, status, words in cases:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["success"] is False and words in body["error_message"] and body["text"] == ""
    nan = post(
        served,
        "/transcribe",
        content=b'{"audio_data": {"sample_rate": 16000, "audio_array": [0.1, NaN, 0.2]}}',
        headers={**served.auth, "Content-Type": "application/json"},
    )
    assert nan.status_code in (400, 422) and nan.status_code != 500
    missing = post(served, "/transcribe", json={"session_id": "x"})
    assert missing.status_code == 422


def test_a_body_over_the_routes_limit_is_refused_before_reading(served):
    limit = int(SYNC_LIMIT_S * 384_000) + 64 * 1024
    r = post(
        served,
        "/transcribe",
        content=b"[" + b"0.0," * (limit // 4 + 10) + b"0]",
        headers={**served.auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_diarize_file_finds_the_speakers_of_a_meeting(served):
    from tests.meetings import synthetic_meeting

    path, truth = synthetic_meeting(2, seconds=60.0, seed=101)
    r = post(served, "/diarize-file", files={"file": ("meeting.wav", path.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["error_message"] is None and body["processing_time_ms"] > 0
    assert body["speaker_count"] == 2
    segs = body["segments"]
    assert all(set(s) == {"start_time", "end_time", "speaker_label", "duration"} for s in segs)
    assert all(s["duration"] == pytest.approx(s["end_time"] - s["start_time"], abs=2e-3) for s in segs)
    hypothesis = [(s["start_time"], s["end_time"], s["speaker_label"]) for s in segs]
    assert frame_der([(a, b, k) for a, b, k in truth], hypothesis) <= 0.05
    # the same upload under the original's other field name, with a session id for the log
    again = post(
        served,
        "/diarize-file",
        files={"audio_file": ("m.wav", path.read_bytes())},
        data={"session_id": "abc", "num_speakers": "2"},
    )
    assert again.status_code == 200 and again.json()["speaker_count"] == 2


def test_diarize_file_mistakes(served):
    assert httpx.post(f"{served.url}/diarize-file", files={"file": ("a.wav", b"x")}).status_code == 401
    r = post(served, "/diarize-file", files={"file": ("notes.txt", b"just some text, not audio" * 50)})
    assert r.status_code == 400 and r.json()["success"] is False and "decode" in r.json()["error_message"]
    r = post(served, "/diarize-file", data={"session_id": "x"})
    assert r.status_code == 400 and r.json()["success"] is False
    long = wav_bytes(np.zeros(int((SYNC_LIMIT_S + 10) * SAMPLE_RATE), np.float32))
    r = post(served, "/diarize-file", files={"file": ("long.wav", long)})
    assert r.status_code == 413 and "/api/v1/transcriptions/batch" in r.json()["error_message"]


def test_triton_down_is_503(tmp_path, speech):
    x, _ = speech
    with served_app(tmp_path, sh.closed_port_url(), None) as down:
        r = transcribe(down, x[: SAMPLE_RATE * 2])
        assert r.status_code == 503 and r.json()["success"] is False
        r = post(down, "/diarize-file", files={"file": ("a.wav", wav_bytes(x[: SAMPLE_RATE * 2]))})
        assert r.status_code == 503 and "not available" in r.json()["error_message"]
