"""POST /v1/audio/transcriptions read with the real ``openai`` client against the app under uvicorn on
loopback, with a real tritonserver: the trained ASR fixture (which transcribes its training clips
exactly) and the trained diarization fixture (which finds the speakers of held-out synthetic meetings).

The speech: two of the fixture's English clips that it transcribes exactly under VAD's margins, with
ITN on (the endpoint transcribes with ITN, as OpenAI answers with punctuation) or off, separated by
silences on the 10 ms grid.
"""

from __future__ import annotations

import io
import re
from collections import Counter

import httpx
import openai
import pytest
from openai.types.audio import Transcription, TranscriptionDiarized, TranscriptionVerbose

from inference_client.audio import decode_audio
from speechlib.interfaces import SAMPLE_RATE
from tests.api.sync_helpers import (
    SYNC_LIMIT_S,
    TEXTS,
    closed_port_url,
    served_app,
    speech_app,
    stored_transcription,
    wav_bytes,
)
from tests.api.sync_helpers import speech as clips_with_silences
from tests.diarization_helpers import frame_der
from tests.test_meeting_e2e import speaker_mapping


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with speech_app(tmp_path_factory) as s:
        yield s


@pytest.fixture(scope="module")
def speech():
    x, spans = clips_with_silences([1.0, 1.5, 1.0])
    return wav_bytes(x), spans, x.size / SAMPLE_RATE


def client(served, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{served.url}/v1", api_key=key or served.api_key, max_retries=0, timeout=120
    )


def create(served, audio: bytes, name: str = "speech.wav", key: str | None = None, **kwargs):
    return client(served, key).audio.transcriptions.create(
        file=(name, io.BytesIO(audio), "audio/wav"), model=kwargs.pop("model", "whisper-1"), **kwargs
    )


def test_json_text_and_the_call_recorded_in_history(served, speech):
    audio, _, duration = speech
    out = create(served, audio, name="slides.wav")
    assert isinstance(out, Transcription)
    assert out.text == " ".join(TEXTS)
    # recorded: a session of this user, its file in the blob store, its transcription (source openai)
    r = httpx.get(f"{served.url}/api/v1/sessions/", headers=served.auth, params={"q": "slides.wav"})
    sessions = r.json()
    assert r.status_code == 200 and len(sessions) == 1
    session = sessions[0]
    assert session["title"] == "OpenAI transcription: slides.wav" and session["status"] == "completed"
    assert abs(session["duration_seconds"] - duration) < 0.01
    files = httpx.get(f"{served.url}/api/v1/sessions/{session['id']}/audio_files", headers=served.auth).json()
    assert len(files) == 1 and files[0]["file_size_bytes"] == len(audio)
    row, current = stored_transcription(served.app, session["id"])
    assert current.source == "openai" and current.content == " ".join(TEXTS)
    assert current.audio_file_id is not None and str(current.audio_file_id) == files[0]["id"]
    assert row.language == "en"


def test_text_srt_and_vtt(served, speech):
    audio, spans, _ = speech
    text = create(served, audio, response_format="text")
    assert isinstance(text, str) and text.strip() == " ".join(TEXTS)

    srt = create(served, audio, response_format="srt")
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+?)\n\n", srt)
    assert [c[3] for c in cues] == TEXTS and [c[0] for c in cues] == ["1", "2"]
    for (_, start, end, _), (a, b) in zip(cues, spans, strict=True):
        assert abs(_seconds(start) - a) < 0.4 and abs(_seconds(end) - b) < 0.4

    vtt = create(served, audio, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n")
    times = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.+)\n", vtt)
    assert [t[2] for t in times] == TEXTS


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_verbose_json_with_segments_and_word_timestamps(served, speech):
    audio, spans, duration = speech
    out = create(
        served,
        audio,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert isinstance(out, TranscriptionVerbose)
    assert out.text == " ".join(TEXTS) and out.language == "english" and abs(out.duration - duration) < 0.01
    assert [s.text for s in out.segments] == TEXTS
    for seg, (a, b) in zip(out.segments, spans, strict=True):
        assert abs(seg.start - a) < 0.4 and abs(seg.end - b) < 0.4
        assert seg.tokens and all(isinstance(t, int) for t in seg.tokens)
        # from the CTC posteriors: the fixture is sure of its training clips, never certain
        assert -0.5 < seg.avg_logprob < 0.0
        assert seg.no_speech_prob == 0.0 and seg.compression_ratio > 0
    words = [w.word for w in out.words]
    # spoken words only, as OpenAI's: a clip's trailing "." (when it has one) is no word
    assert words == [w for text in TEXTS for w in text.rstrip(".").split()]
    assert all(a.start <= b.start for a, b in zip(out.words, out.words[1:], strict=False))
    first, second = spans
    n_first = len(TEXTS[0].split())
    assert all(first[0] - 0.4 <= w.start and w.end <= first[1] + 0.4 for w in out.words[:n_first])
    assert all(second[0] - 0.4 <= w.start and w.end <= second[1] + 0.4 for w in out.words[n_first:])

    only_segments = create(served, audio, response_format="verbose_json")
    assert only_segments.segments and not only_segments.words


def test_diarized_json_names_the_speakers_of_a_meeting(served):
    from tests.meetings import synthetic_meeting

    path, truth = synthetic_meeting(2, seconds=60.0, seed=101)
    out = create(served, path.read_bytes(), name="meeting.wav", response_format="diarized_json")
    assert isinstance(out, TranscriptionDiarized)
    assert out.task == "transcribe" and abs(out.duration - decode_audio(path).size / SAMPLE_RATE) < 0.01
    assert {s.speaker for s in out.segments} == {"A", "B"} and out.segments[0].speaker == "A"
    assert all(s.type == "transcript.text.segment" and s.text for s in out.segments)
    assert len({s.id for s in out.segments}) == len(out.segments)

    # Who spoke: each segment's speaker against the meeting's known turns. The ASR fixture does not know
    # these sentences: neither the text nor how much of each turn its words span is checked here;
    # speakers are what diarized_json adds. Each segment's true speaker is the one it overlaps most;
    # the labels, mapped by majority, must name two different speakers and be right for every
    # segment. The DER on the time the segments cover is printed and bounded loosely (the meeting's
    # overlaps count against one speaker per segment, VAD's margins as false alarm).
    def true_speaker(seg) -> str:
        spans = Counter()
        for t0, t1, spk in truth:
            spans[spk] += max(0.0, min(t1, seg.end) - max(t0, seg.start))
        return spans.most_common(1)[0][0]

    truths = [true_speaker(seg) for seg in out.segments]
    mapping = speaker_mapping(
        [(seg.start, seg.end, seg.speaker, seg.text) for seg in out.segments], [(t, "") for t in truths]
    )
    assert len(set(mapping.values())) == 2, (mapping, truths)
    assert [mapping[seg.speaker] for seg in out.segments] == truths
    covered = [
        (max(t0, seg.start), min(t1, seg.end), spk)
        for t0, t1, spk in truth
        for seg in out.segments
        if seg.start < t1 and t0 < seg.end
    ]
    der = frame_der(covered, [(seg.start, seg.end, seg.speaker) for seg in out.segments])
    print(f"diarized_json: {len(out.segments)} segments, DER on the time they cover {der:.1%}")
    assert der < 0.25


def test_errors_come_as_the_clients_exceptions(served, speech):
    audio, _, _ = speech
    with pytest.raises(openai.AuthenticationError) as e:
        create(served, audio, key="isk_00000000_notakey")
    assert e.value.status_code == 401 and e.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):  # an OpenAI key is not ours
        create(served, audio, key="sk-proj-abcdefghijklmnopqrstuvwxyz")
    # no credential at all (the client insists on a key: plain HTTP)
    r = httpx.post(
        f"{served.url}/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data={"model": "x"}
    )
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}

    with pytest.raises(openai.BadRequestError) as e:
        create(served, b"%PDF-1.4 not audio at all" * 100, name="doc.pdf")
    assert e.value.status_code == 400 and e.value.body["param"] == "file"

    with pytest.raises(openai.BadRequestError) as e:
        create(served, audio, response_format="mp3")
    assert e.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as e:
        create(served, audio, language="xx")
    assert e.value.body["param"] == "language" and "supported" in e.value.body["message"]

    long = wav_bytes(__import__("numpy").zeros(int((SYNC_LIMIT_S + 10) * SAMPLE_RATE), "float32"))
    with pytest.raises(openai.APIStatusError) as e:
        create(served, long, name="long.wav")
    assert e.value.status_code == 413 and "/api/v1/transcriptions/batch" in e.value.body["message"]

    # missing parameters: 400 (OpenAI's status), never FastAPI's 422
    r = httpx.post(f"{served.url}/v1/audio/transcriptions", headers=served.auth, data={"model": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"

    # a key without the transcribe scope
    from tests.api.sync_helpers import register_with_key

    _, reader, _ = register_with_key(served.url, scopes=["sessions:read"])
    with pytest.raises(openai.PermissionDeniedError):
        create(served, audio, key=reader)


def test_triton_down_is_503(tmp_path, served):
    with served_app(tmp_path, closed_port_url(), None) as down:
        with pytest.raises(openai.InternalServerError) as e:
            create(down, wav_bytes(__import__("numpy").zeros(SAMPLE_RATE, "float32")))
    assert e.value.status_code == 503 and "not available" in e.value.body["message"]
