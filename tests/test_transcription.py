"""The long-audio transcription engine (inference_client.transcription) against a real tritonserver.

Audio: the ASR fixture's training clips (which the tiny SenseVoice transcribes exactly) laid out with
silences between them, every clip on the 10 ms frame grid (the fixture recognises a clip exactly only
when VAD cuts it with the margins it saw in training; off the grid, or after a lossy codec, some texts
change — the mp3 test therefore compares with the one-request path on the same decoded audio).
Segmentation and embedding models are small random ones: speaker labels are checked for structure.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from inference_client import TritonClient
from inference_client.asr import ASRClient
from inference_client.audio import AudioDecodeError, DecodedAudio, decode_audio, decode_to_file
from inference_client.errors import TritonUnavailableError
from inference_client.transcription import (
    STAGES,
    ChunkCheckpoint,
    DiarizationCheckpoint,
    Transcriber,
    TranscriptionOptions,
    plan_chunk,
)
from inference_client.vad import SpeechSegment, VADClient
from speechlib.diarization.pipeline import PipelineSettings
from speechlib.interfaces import ASR, SAMPLE_RATE, VAD, Segmentation, SpeakerEmbedding
from tests.conftest import MODEL_REPOSITORY

# Clips the fixture transcribes exactly under VAD's margins, without ITN and with language auto.
ROBUST = ["hello everyone", "the meeting starts at nine", "thank you for listening", "你好世界"]
GRID = SAMPLE_RATE // 100  # 10 ms
CHUNK_S = 20.0  # seconds per VAD request in these tests: a 60 s recording takes 4 requests
OPTIONS = TranscriptionOptions(language="auto", use_itn=False, vad_chunk_s=CHUNK_S)


def run(coro):
    return asyncio.run(coro)


# -- audio ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    data = np.load(MODEL_REPOSITORY / ASR.NAME / "1" / "fixture_clips.npz", allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    out = {e["text"]: np.asarray(data[e["key"]], np.float32) for e in meta}
    assert all(out[k].size % GRID == 0 for k in ROBUST)
    return out


@pytest.fixture(scope="module")
def meeting(clips):
    """~63 s: 20 clips with 1.0-2.5 s silences; (waveform, [(text, start_s, end_s)])."""
    rng = np.random.default_rng(0)
    parts, spans, pos = [], [], 0
    for i in range(20):
        gap = np.zeros(GRID * int(100 * rng.uniform(1.0, 2.5)), np.float32)
        text = ROBUST[i % 4] if i % 5 else ROBUST[(i * 3) % 4]
        parts += [gap, clips[text]]
        pos += gap.size
        spans.append((text, pos / SAMPLE_RATE, (pos + clips[text].size) / SAMPLE_RATE))
        pos += clips[text].size
    parts.append(np.zeros(SAMPLE_RATE, np.float32))
    return np.concatenate(parts), spans


def write_audio(path: Path, x: np.ndarray, fmt: str, codec: str, rate: int = SAMPLE_RATE, bit_rate=None):
    """Encode mono ``x`` (16 kHz float) with PyAV: float WAV keeps the samples exactly."""
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        x = resample_poly(x, rate // SAMPLE_RATE, 1).astype(np.float32)
    float_codec = codec == "pcm_f32le"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if bit_rate:
            stream.bit_rate = bit_rate
        pcm = x.astype(np.float32) if float_codec else (np.clip(x, -1, 1) * 32767).astype(np.int16)
        for i in range(0, pcm.size, 1024):
            frame = av.AudioFrame.from_ndarray(
                pcm[None, i : i + 1024], format="flt" if float_codec else "s16", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def meeting_wav(meeting, tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("tx") / "meeting.wav", meeting[0], "wav", "pcm_f32le")


@pytest.fixture(scope="module")
def meeting_mp3(meeting, tmp_path_factory):
    # 48 kHz: decoding resamples too.
    return write_audio(
        tmp_path_factory.mktemp("tx") / "meeting.mp3", meeting[0], "mp3", "libmp3lame", 48000, 320000
    )


# -- clients ----------------------------------------------------------------------------------------


class CountingClient(TritonClient):
    """A TritonClient that counts requests per model and can fail chosen requests as UNAVAILABLE."""

    def __init__(
        self, *args, fail: dict[str, set[int]] | None = None, down_after: int | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.counts: dict[str, int] = {}
        self.fail = fail or {}
        self.down_after = down_after  # every ASR request from this one on fails: the server is gone

    async def infer(self, model, inputs, outputs=None, **kwargs):
        n = self.counts.get(model, 0)
        self.counts[model] = n + 1
        if n in self.fail.get(model, ()) or (
            model == ASR.NAME and self.down_after is not None and n >= self.down_after
        ):
            raise TritonUnavailableError(model, "UNAVAILABLE", "injected: server restarting", 8)
        return await super().infer(model, inputs, outputs, **kwargs)


@pytest.fixture(scope="module")
def settings() -> PipelineSettings:
    return PipelineSettings.from_dir(MODEL_REPOSITORY / SpeakerEmbedding.NAME / "1")


def transcribe(triton, source, options=OPTIONS, settings=None, fail=None, down_after=None, **kwargs):
    async def go():
        async with CountingClient(triton.ports.grpc_url, fail=fail, down_after=down_after) as client:
            transcriber = Transcriber(client, diarization_settings=settings, retry_pause_s=0.05)
            result = await transcriber.transcribe(source, options, **kwargs)
            return result, client.counts

    return run(go())


@pytest.fixture(scope="module")
def full_run(triton, meeting_wav, settings, tmp_path_factory):
    """One diarized run of the float WAV, with its progress reports and checkpoints (JSON round trip)."""
    reports, checkpoints = [], []
    result, counts = transcribe(
        triton,
        meeting_wav,
        settings=settings,
        progress=reports.append,
        on_checkpoint=checkpoints.append,
        workdir=tmp_path_factory.mktemp("work"),
    )
    return result, counts, reports, checkpoints


# -- the cut, without Triton ------------------------------------------------------------------------


def S(a, b):
    return SpeechSegment(a, b)


def test_plan_keeps_segments_closed_before_the_guard_and_redoes_the_rest():
    plan = plan_chunk(
        [S(1000, 3000), S(5000, 9000), S(18500, 20000)],
        read_start_ms=0,
        read_end_ms=20000,
        cut_ms=0,
        final=False,
    )
    # guard = 800 + 100 + 1000 ms: 18500-20000 ends too late; the next chunk starts 3 s before it.
    assert plan.segments == (S(1000, 3000), S(5000, 9000))
    assert (plan.next_cut_ms, plan.next_read_start_ms, plan.final) == (9000, 15100, False)


def test_plan_drops_the_tail_seen_again_and_keeps_speech_running_past_the_cut():
    # The pre-roll reached back into the segment the last chunk kept (10000-15300): seen again, dropped.
    tail = plan_chunk(
        [S(12000, 15300), S(16000, 17000)], read_start_ms=12000, read_end_ms=32000, cut_ms=15300, final=True
    )
    assert tail.segments == (S(16000, 17000),)
    on = plan_chunk([S(14000, 18000)], read_start_ms=13000, read_end_ms=33000, cut_ms=15000, final=True)
    assert on.segments == (S(15000, 18000),)


def test_plan_cut_inside_capped_speech_rereads_from_the_start_of_the_run():
    segs = [S(1000, 4000), S(6000, 36000), S(36000, 40000), S(47000, 48000)]
    plan = plan_chunk(segs, read_start_ms=0, read_end_ms=41000, cut_ms=0, final=False)
    assert plan.segments == (S(1000, 4000), S(6000, 36000))
    assert plan.next_cut_ms == 36000 and plan.next_read_start_ms == 3000


def test_plan_without_any_silence_keeps_the_segment_as_seen_and_moves_on():
    # A segment still open at the end of the request (closed there by the end of the input).
    plan = plan_chunk([S(0, 20000)], read_start_ms=0, read_end_ms=20000, cut_ms=0, final=False)
    assert plan.segments == (S(0, 20000),) and plan.next_cut_ms == 20000 and plan.next_read_start_ms == 17000
    # The next request sees it run on from the pre-roll: the part after the cut is kept.
    after = plan_chunk([S(17000, 26000)], read_start_ms=17000, read_end_ms=37000, cut_ms=20000, final=False)
    assert after.segments == (S(20000, 26000),)


def test_options_are_checked():
    with pytest.raises(ValueError, match="too short"):
        TranscriptionOptions(vad_chunk_s=5).checked()
    with pytest.raises(ValueError, match="3600"):
        TranscriptionOptions(vad_chunk_s=4000).checked()
    with pytest.raises(ValueError, match="unsupported language"):
        TranscriptionOptions(language="xx").checked()
    assert TranscriptionOptions(language="en-US").checked().language == "en"


# -- decoding once ----------------------------------------------------------------------------------


def test_decode_to_file_equals_decode_audio_and_reads_in_pieces(meeting_mp3, tmp_path):
    decoded = decode_to_file(meeting_mp3, tmp_path / "a.f32")
    whole = decode_audio(meeting_mp3)
    assert decoded.num_samples == whole.size and decoded.source.format == "mp3"
    assert decoded.duration_s == pytest.approx(whole.size / SAMPLE_RATE)
    assert np.array_equal(np.concatenate(list(decoded.blocks(7.0))), whole)
    assert np.array_equal(decoded.read(12345, 23456), whole[12345:23456])
    assert DecodedAudio.open(tmp_path / "a.f32").num_samples == whole.size
    assert not (tmp_path / "a.f32.partial").exists()


def test_decode_to_file_is_bit_exact_at_16k_mono_and_memory_stays_bounded(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(1)
    x = (rng.standard_normal(SAMPLE_RATE * 600) * 3000).clip(-32768, 32767).astype(np.int16)  # 10 min
    sf.write(tmp_path / "long.wav", x, SAMPLE_RATE, subtype="PCM_16")
    del x
    tracemalloc.start()
    try:
        decoded = decode_to_file(tmp_path / "long.wav", tmp_path / "long.f32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded.num_samples == SAMPLE_RATE * 600
    assert peak < 16 * 2**20, f"decoding 10 min held {peak / 2**20:.1f} MB (38 MB of samples)"
    expected, _ = sf.read(
        tmp_path / "long.wav", dtype="float32", start=SAMPLE_RATE * 300, stop=SAMPLE_RATE * 301
    )
    assert np.array_equal(decoded.read(SAMPLE_RATE * 300, SAMPLE_RATE * 301), expected)


# -- against Triton ---------------------------------------------------------------------------------


def test_vad_in_chunks_equals_one_request(triton, meeting_mp3, tmp_path):
    audio = decode_to_file(meeting_mp3, tmp_path / "a.f32")
    whole = decode_audio(meeting_mp3)

    async def go():
        async with CountingClient(triton.ports.grpc_url) as client:
            one = await VADClient(client).segments(whole)
            transcriber = Transcriber(client)
            chunked = {}
            for chunk_s in (CHUNK_S, 13.0):
                plans = [
                    p async for p in transcriber.plan_chunks(audio, TranscriptionOptions(vad_chunk_s=chunk_s))
                ]
                chunked[chunk_s] = plans
            return one, chunked, client.counts

    one, chunked, counts = run(go())
    assert len(one) == 20
    for chunk_s, plans in chunked.items():
        assert len(plans) >= 4 and plans[-1].final and not any(p.final for p in plans[:-1])
        got = [s for p in plans for s in p.segments]
        assert got == one, f"{chunk_s} s chunks"
        # every chunk after the first cut inside a silence: between the segments the other chunks kept
        for p in plans[1:]:
            assert p.read_start_ms < p.cut_ms
    assert counts[VAD.NAME] == 1 + sum(len(p) for p in chunked.values())


def _union(segments):
    out = []
    for s in segments:
        if out and s.start_ms <= out[-1][1]:
            out[-1][1] = max(out[-1][1], s.end_ms)
        else:
            out.append([s.start_ms, s.end_ms])
    return out


def test_vad_cut_in_noise_and_in_speech_longer_than_30_s(triton, clips, tmp_path):
    """Low noise instead of digital silence, pauses from 0.3 s, and two stretches of 70 s and 40 s
    without a pause VAD ends a segment at (VAD caps them at 30 s, back to back)."""
    rng = np.random.default_rng(7)
    pool = list(clips.values())

    def talk(seconds, pause):
        out, n = [], 0
        while n < seconds * SAMPLE_RATE:
            clip = pool[rng.integers(len(pool))]
            gap = np.zeros(int(SAMPLE_RATE * rng.uniform(*pause)), np.float32)
            out += [clip, gap]
            n += clip.size + gap.size
        return out

    parts = (
        talk(20, (0.3, 2.5))
        + talk(70, (0.1, 0.1))
        + talk(20, (1.0, 2.0))
        + talk(40, (0.1, 0.1))
        + talk(15, (1, 2))
    )
    x = np.concatenate(parts)
    x = (x + 0.005 * rng.standard_normal(x.size)).astype(np.float32)
    x.astype("<f4").tofile(tmp_path / "a.f32")
    audio = DecodedAudio.open(tmp_path / "a.f32")

    async def go():
        async with TritonClient(triton.ports.grpc_url) as client:
            one = await VADClient(client).segments(x)
            transcriber = Transcriber(client)
            out = {}
            for chunk_s in (11.0, 20.0, 80.0):
                plans = [
                    p async for p in transcriber.plan_chunks(audio, TranscriptionOptions(vad_chunk_s=chunk_s))
                ]
                out[chunk_s] = [s for p in plans for s in p.segments]
            return one, out

    one, chunked = run(go())
    capped = [s for s in one if s.end_ms - s.start_ms >= 29_000]
    assert len(capped) >= 3 and any(a.end_ms == b.start_ms for a, b in zip(one, one[1:], strict=False))
    # A run of capped segments that fits in one request (with guard and pre-roll) comes out identical.
    assert chunked[80.0] == one
    # Shorter requests cannot hold the 70 s run: its caps move, the speech it covers does not.
    for chunk_s in (11.0, 20.0):
        got = chunked[chunk_s]
        assert all(a.end_ms <= b.start_ms for a, b in zip(got, got[1:], strict=False)), chunk_s
        assert _union(got) == _union(one), chunk_s
        assert all(s.end_ms - s.start_ms <= 30_000 for s in got)


def test_transcript_holds_every_clip_once_in_order_with_speakers(full_run, meeting):
    result, counts, _, _ = full_run
    _, spans = meeting
    t = result.transcript
    assert [s.text for s in t.segments] == [text for text, _, _ in spans]
    for seg, (_, start, end) in zip(t.segments, spans, strict=True):
        assert start - 0.4 <= seg.start and seg.end <= end + 0.4, (seg, start, end)
        assert seg.words and all(start - 0.4 <= w.start <= w.end <= end + 0.4 for w in seg.words)
        assert seg.speaker and all(w.speaker == seg.speaker for w in seg.words)
        assert 0.0 < seg.confidence <= 1.0  # from the tokens' CTC posteriors (asr TOKEN_PROBS)
    assert t.language == "en" and t.duration == pytest.approx(meeting[0].size / SAMPLE_RATE)
    assert [s.index for s in t.segments] == list(range(1, 21))
    assert result.chunks == 4 and result.resumed_chunks == 0
    assert counts[ASR.NAME] == 20 and counts[VAD.NAME] == 4
    assert result.turns and counts[Segmentation.NAME] > 0


def test_progress_covers_every_stage_and_ends_at_one(full_run):
    _, _, reports, _ = full_run
    for stage in STAGES:
        fractions = [r.fraction for r in reports if r.stage == stage]
        assert fractions and fractions[-1] == 1.0, stage
        assert fractions == sorted(fractions), stage
    assert reports[-1].stage == "align"


def test_resume_after_chunk_k_sends_only_the_rest(triton, full_run, meeting_wav, settings):
    first, _, _, checkpoints = full_run
    chunks = [c for c in checkpoints if isinstance(c, ChunkCheckpoint)]
    diarization = [c for c in checkpoints if isinstance(c, DiarizationCheckpoint)]
    assert [c.index for c in chunks] == [0, 1, 2, 3] and chunks[-1].final and len(diarization) == 1
    k = 1  # chunks 0 and 1 are done; the stored forms go through JSON and npz bytes
    stored = [ChunkCheckpoint.from_dict(json.loads(json.dumps(c.to_dict()))) for c in chunks[: k + 1]]
    stored.append(DiarizationCheckpoint.from_bytes(diarization[0].to_bytes()))
    again = []
    result, counts = transcribe(
        triton, meeting_wav, settings=settings, resume=stored, on_checkpoint=again.append
    )
    assert result.transcript == first.transcript
    assert counts.get(VAD.NAME) == len(chunks) - (k + 1)
    assert counts.get(ASR.NAME) == sum(len(c.segments) for c in chunks[k + 1 :])
    assert Segmentation.NAME not in counts and SpeakerEmbedding.NAME not in counts
    assert [c.index for c in again] == [2, 3]
    assert [c.segments for c in again] == [c.segments for c in chunks[2:]]
    # checkpoints made with other options are refused, before any request
    with pytest.raises(ValueError, match="other options"):
        transcribe(
            triton, meeting_wav, TranscriptionOptions(use_itn=True, vad_chunk_s=CHUNK_S), resume=stored
        )


def test_unavailable_requests_are_retried_not_lost_or_doubled(triton, full_run, meeting_wav):
    first, _, _, _ = full_run
    options = TranscriptionOptions(language="auto", use_itn=False, vad_chunk_s=CHUNK_S, diarize=False)
    result, counts = transcribe(triton, meeting_wav, options, fail={ASR.NAME: {3, 11}, VAD.NAME: {2}})
    assert [s.text for s in result.transcript.segments] == [s.text for s in first.transcript.segments]
    assert [(s.start, s.end) for s in result.transcript.segments] == [
        (s.start, s.end) for s in first.transcript.segments
    ]
    assert counts[ASR.NAME] == 20 + 2 and counts[VAD.NAME] == 4 + 1


def test_a_job_that_dies_midway_resumes_to_the_same_transcript(triton, full_run, meeting_wav):
    first, _, _, _ = full_run
    options = TranscriptionOptions(language="auto", use_itn=False, vad_chunk_s=CHUNK_S, diarize=False)
    saved = []
    with pytest.raises(TritonUnavailableError):
        transcribe(
            triton, meeting_wav, options, down_after=9, on_checkpoint=lambda c: saved.append(c.to_dict())
        )
    assert 1 <= len(saved) < 4 and [c["index"] for c in saved] == list(range(len(saved)))
    done = sum(len(c["segments"]) for c in saved)
    assert done <= 9
    resume = [ChunkCheckpoint.from_dict(json.loads(json.dumps(c))) for c in saved]
    result, counts = transcribe(triton, meeting_wav, options, resume=resume)
    assert [(s.text, s.start, s.end) for s in result.transcript.segments] == [
        (s.text, s.start, s.end) for s in first.transcript.segments
    ]
    assert counts[ASR.NAME] == 20 - done and result.resumed_chunks == len(saved)


def test_mp3_equals_the_one_request_path_on_the_same_audio(triton, meeting_mp3, meeting):
    options = TranscriptionOptions(language="auto", use_itn=False, vad_chunk_s=CHUNK_S, diarize=False)
    result, counts = transcribe(triton, meeting_mp3, options)

    async def reference():
        async with TritonClient(triton.ports.grpc_url) as client:
            return await ASRClient(client).transcribe_segments(decode_audio(meeting_mp3), "auto", False)

    ref = run(reference())
    segs = result.transcript.segments
    kept = [r for r in ref if r.text.strip()]
    assert [s.text for s in segs] == [r.text for r in kept]
    assert [(s.start, s.end) for s in segs][:3] and len(segs) == len(meeting[1])
    for seg, (_, start, end) in zip(segs, meeting[1], strict=True):
        assert start - 0.4 <= seg.start < seg.end <= end + 0.4
    assert all(s.speaker is None for s in segs) and not result.turns
    assert SpeakerEmbedding.NAME not in counts


def test_silence_and_empty_audio_give_an_empty_transcript(triton, settings, tmp_path):
    silent = write_audio(tmp_path / "silence.m4a", np.zeros(SAMPLE_RATE * 15, np.float32), "ipod", "aac")
    result, counts = transcribe(triton, silent, settings=settings)
    assert result.transcript.segments == () and result.transcript.language is None
    assert result.transcript.duration == pytest.approx(15, abs=0.2)
    assert ASR.NAME not in counts and counts[VAD.NAME] == 1

    import soundfile as sf

    sf.write(tmp_path / "empty.wav", np.zeros(0, np.int16), SAMPLE_RATE, subtype="PCM_16")
    result, counts = transcribe(triton, tmp_path / "empty.wav", settings=settings)
    assert result.transcript.segments == () and result.transcript.duration == 0.0 and counts == {}


def test_undecodable_input_fails_at_the_start(triton, tmp_path):
    (tmp_path / "notes.mp3").write_text("these are not audio samples\n" * 100)
    with pytest.raises(AudioDecodeError):
        transcribe(triton, tmp_path / "notes.mp3")


def test_memory_stays_flat_as_the_recording_grows(triton, clips, tmp_path):
    """Python-side peak (tracemalloc: numpy buffers, request bytes) for 2 and 6 minutes with 20 s VAD
    chunks: the same few MB, while the audio is 7.7 and 22 MB (diarization left out: its memory is
    tests/test_diarization_triton.py's)."""
    clip = clips[ROBUST[0]]

    def recording(minutes: int) -> tuple[DecodedAudio, int]:
        parts, n = [], 0
        while n < minutes * 60 * SAMPLE_RATE:
            parts += [np.zeros(SAMPLE_RATE * 8, np.float32), clip]
            n += SAMPLE_RATE * 8 + clip.size
        parts.append(np.zeros(SAMPLE_RATE, np.float32))
        np.concatenate(parts).astype("<f4").tofile(tmp_path / f"{minutes}.f32")
        return DecodedAudio.open(tmp_path / f"{minutes}.f32"), len(parts) // 2

    async def go(audio: DecodedAudio):
        async with TritonClient(triton.ports.grpc_url) as client:
            tracemalloc.start()
            try:
                options = TranscriptionOptions(use_itn=False, vad_chunk_s=CHUNK_S, diarize=False)
                result = await Transcriber(client).transcribe(audio, options)
                return result, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    peaks = {}
    for minutes in (2, 6):
        audio, count = recording(minutes)
        result, peaks[minutes] = run(go(audio))
        assert [s.text for s in result.transcript.segments] == [ROBUST[0]] * count
    assert peaks[6] < 1.5 * peaks[2] and peaks[6] < 10 * 2**20, {m: p / 2**20 for m, p in peaks.items()}


# -- real speakers: the trained diarization fixture ---------------------------------------------------


@pytest.fixture(scope="module")
def speaker_server(tmp_path_factory):
    """vad + asr from model_repository/, segmentation + speaker_embedding from the trained fixture."""
    import shutil

    from serving.launcher import TritonServer
    from tests.diarization_helpers import diarization_repository, trained_fixture_artifacts

    artifacts = trained_fixture_artifacts()
    repo = diarization_repository(tmp_path_factory.mktemp("speaker_repo"), artifacts)
    for model in (VAD.NAME, ASR.NAME):
        src = MODEL_REPOSITORY / model
        (repo / model / "1").mkdir(parents=True)
        shutil.copy2(src / "config.pbtxt", repo / model / "config.pbtxt")
        for f in (src / "1").iterdir():
            if f.is_file():
                (repo / model / "1" / f.name).symlink_to(f.resolve())
    with TritonServer(repo) as server:
        yield server, PipelineSettings.from_dir(artifacts)


def test_speakers_of_a_held_out_two_speaker_meeting(speaker_server, tmp_path):
    from tests.meetings import synthetic_meeting

    server, settings = speaker_server
    path, truth = synthetic_meeting(2, seconds=60.0, seed=101)
    mp3 = write_audio(tmp_path / "meeting.mp3", decode_audio(path), "mp3", "libmp3lame", bit_rate=128000)
    options = TranscriptionOptions(use_itn=False, vad_chunk_s=CHUNK_S)
    result, counts = transcribe(server, mp3, options, settings=settings)
    t = result.transcript
    assert len(t.speakers) == 2 and counts[VAD.NAME] >= 3
    # Segments that lie within one reference turn: their speaker, mapped by majority, is that turn's.
    pairs = []
    for seg in t.segments:
        inside = [k for s, e, k in truth if s - 0.3 <= seg.start and seg.end <= e + 0.3]
        overlapping = {k for s, e, k in truth if s < seg.end and seg.start < e}
        if len(inside) == 1 and overlapping == set(inside):
            pairs.append((seg.speaker, inside[0]))
    assert len(pairs) >= 8, pairs
    mapping = {}
    for ours in {p for p, _ in pairs}:
        theirs = [k for p, k in pairs if p == ours]
        mapping[ours] = max(set(theirs), key=theirs.count)
    assert len(set(mapping.values())) == 2
    right = sum(mapping[p] == k for p, k in pairs)
    print(f"{right} of {len(pairs)} single-turn segments under their speaker; {len(t.segments)} segments")
    assert right >= 0.9 * len(pairs), (right, len(pairs), pairs)
    for seg in t.segments:
        assert all(w.speaker == seg.speaker for w in seg.words)
