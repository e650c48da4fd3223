"""agent.pipeline.SpeakerPipeline and agent.audio_in against a real tritonserver (the real ``vad``,
``vad_stream`` and the trained ASR fixture ``asr``), with a recorder publisher.

Expected texts are the fixture clips' labels; expected utterance boundaries come from the offline
``vad`` model over the samples the pipeline actually received.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from livekit import rtc
from prometheus_client import REGISTRY

from agent.audio_in import frame_samples, track_samples
from agent.pipeline import SpeakerPipeline
from inference_client import TritonClient
from inference_client.client import RetryPolicy
from inference_client.vad import VADClient
from speechlib.interfaces import SAMPLE_RATE
from tests.agent.pipeline_helpers import (
    SEGMENT_ID,
    FailingPublisher,
    RecordingPublisher,
    make_agent_settings,
    track,
)
from tests.api.sync_helpers import closed_port_url

VAD_TOLERANCE_S = 0.03
PIECE = SAMPLE_RATE // 10  # 100 ms pushes


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def pipeline_for(client, settings, recorder, speaker: str, offset_s: float = 0.0, **kw) -> SpeakerPipeline:
    return SpeakerPipeline(
        triton=client,
        settings=settings,
        speaker=speaker,
        speaker_name=speaker.title(),
        track_sid=f"TR_{speaker}",
        offset_s=offset_s,
        publishers=kw.pop("publishers", [recorder]),
        **kw,
    )


async def push_paced(pipeline: SpeakerPipeline, x: np.ndarray, speed: float) -> None:
    """Push ``x`` in 100 ms pieces at ``speed`` x real time."""
    for i in range(0, x.size, PIECE):
        await pipeline.push(x[i : i + PIECE])
        await asyncio.sleep(PIECE / SAMPLE_RATE / speed)


def check_protocol(recorder: RecordingPublisher, pipelines: list[SpeakerPipeline]) -> None:
    """Per segment id: interims, then exactly one final, never an interim after it; ids valid; one
    timing per published segment."""
    final_seen: set[str] = set()
    for seg in recorder.segments:
        assert SEGMENT_ID.match(seg.segment_id), seg.segment_id
        assert seg.segment_id not in final_seen, f"{seg} after its final"
        if seg.is_final:
            final_seen.add(seg.segment_id)
        assert seg.start_time <= seg.end_time
    interim_ids = {s.segment_id for s in recorder.interims}
    assert interim_ids <= final_seen, "an interim without a final"
    timings = [t for p in pipelines for t in p.timings]
    assert len(timings) == len(recorder.segments)
    for t in timings:
        assert t.audio_start_s <= t.audio_end_s
        assert t.asr_sent_at <= t.asr_done_at <= t.published_at
        if t.is_final:
            assert t.audio_pushed_at <= t.vad_decided_at <= t.asr_sent_at


async def check_vad_parity(client, pipeline: SpeakerPipeline, finals, received: np.ndarray) -> None:
    """The finals' spans are where the offline ``vad`` cuts the received samples (± 30 ms)."""
    offline = await VADClient(client).segments(received)
    got = sorted((s.start_time - pipeline.offset_s, s.end_time - pipeline.offset_s) for s in finals)
    want = [(s.start, s.end) for s in offline]
    assert len(got) == len(want), (got, want)
    for (gs, ge), (ws, we) in zip(got, want, strict=True):
        assert abs(gs - ws) <= VAD_TOLERANCE_S and abs(ge - we) <= VAD_TOLERANCE_S, (got, want)


def finals_text(recorder: RecordingPublisher, speaker: str) -> list[str]:
    return [s.text for s in sorted(recorder.of(speaker), key=lambda s: s.start_time) if s.is_final]


# ---------------------------------------------------------------------------------------------------
def test_frame_samples_int16_to_float():
    pcm = np.array([0, 16384, -32768, 32767], np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, 4)
    np.testing.assert_array_equal(frame_samples(frame), pcm.astype(np.float32) / 32768)
    stereo = rtc.AudioFrame(np.array([100, 300, -200, -400], np.int16).tobytes(), SAMPLE_RATE, 2, 2)
    np.testing.assert_allclose(frame_samples(stereo), np.array([200, -300], np.float32) / 32768)
    with pytest.raises(ValueError, match="sample_rate=16000"):
        frame_samples(rtc.AudioFrame(pcm.tobytes(), 48000, 1, 4))


@pytest.mark.asyncio
async def test_real_time_rtc_meeting(agent_triton, agent_settings, recorder, speech_clips):
    """Two participants' audio through rtc.AudioSource -> LocalAudioTrack -> AudioStream (16 kHz
    mono) -> track_samples -> their pipelines, in real time."""
    (t1, c1), (t2, c2) = speech_clips.items()
    layouts = {"alice": track(0.6, c1, 2.0), "bob": track(2.2, c2, 1.5)}
    expected = {"alice": [t1], "bob": [t2]}
    received: dict[str, list[np.ndarray]] = {name: [] for name in layouts}
    async with TritonClient(agent_triton.ports.grpc_url) as client:
        await client.wait_ready(["vad", "vad_stream", "asr"])
        pipelines = {
            name: pipeline_for(client, agent_settings, recorder, name, offset_s=k * 0.5)
            for k, name in enumerate(layouts)
        }

        async def participant(name: str) -> None:
            x, _ = layouts[name]
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            mic = rtc.LocalAudioTrack.create_audio_track(f"mic-{name}", source)
            stream = rtc.AudioStream(mic, sample_rate=SAMPLE_RATE, num_channels=1)
            pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)

            async def speak() -> None:
                for i in range(0, pcm.size, 160):
                    await source.capture_frame(
                        rtc.AudioFrame(pcm[i : i + 160].tobytes(), SAMPLE_RATE, 1, 160)
                    )

            speaking = asyncio.create_task(speak())
            total = 0
            async for samples in track_samples(stream):  # keeps yielding silence after the source stops
                received[name].append(samples)
                await pipelines[name].push(samples)
                total += samples.size
                if total >= x.size + SAMPLE_RATE // 2:
                    break
            await speaking
            await stream.aclose()
            await pipelines[name].aclose()

        t0 = time.monotonic()
        await asyncio.gather(*(participant(name) for name in layouts))
        elapsed = time.monotonic() - t0
        for name, pipeline in pipelines.items():
            x = np.concatenate(received[name])
            assert pipeline.samples_received == x.size
            await check_vad_parity(client, pipeline, [s for s in recorder.finals if s.speaker == name], x)
    assert elapsed >= max(x.size for x, _ in layouts.values()) / SAMPLE_RATE * 0.9  # real time
    for name in layouts:
        assert finals_text(recorder, name) == expected[name]
        assert {s.speaker_name for s in recorder.of(name)} == {name.title()}
        assert {s.track_sid for s in recorder.of(name)} == {f"TR_{name}"}
        assert all(s.language == "en" for s in recorder.of(name) if s.is_final)
    check_protocol(recorder, list(pipelines.values()))
    assert recorder.interims, "no interim while someone spoke for over a second"


@pytest.mark.asyncio
async def test_pushed_meeting_two_speakers(agent_triton, agent_settings, recorder, speech_clips):
    """Numpy pushed at 8x real time: every sentence exactly once as a final under its speaker, cut
    where the offline vad cuts it, interims before finals, session times with the track offsets; a
    publisher that raises does not stop the others."""
    (t1, c1), (t2, c2) = speech_clips.items()
    layouts = {"alice": track(0.6, c1, 1.5, c2, 1.2), "bob": track(2.0, c2, 1.0, c1, 1.5)}
    offsets = {"alice": 0.0, "bob": 1.25}
    broken = FailingPublisher()
    async with TritonClient(agent_triton.ports.grpc_url) as client:
        pipelines = {
            name: pipeline_for(
                client, agent_settings, recorder, name, offsets[name], publishers=[broken, recorder]
            )
            for name in layouts
        }

        async def run(name: str) -> None:
            await push_paced(pipelines[name], layouts[name][0], speed=8)
            await pipelines[name].aclose()

        await asyncio.gather(*(run(name) for name in layouts))
        for name, pipeline in pipelines.items():
            finals = [s for s in recorder.finals if s.speaker == name]
            await check_vad_parity(client, pipeline, finals, layouts[name][0])
    assert finals_text(recorder, "alice") == [t1, t2]
    assert finals_text(recorder, "bob") == [t2, t1]
    assert broken.calls == len(recorder.segments)
    check_protocol(recorder, list(pipelines.values()))
    for name, (_, spans) in layouts.items():  # the clips lie within their finals, in session time
        finals = sorted((s for s in recorder.finals if s.speaker == name), key=lambda s: s.start_time)
        for seg, (a, b) in zip(finals, spans, strict=True):
            assert seg.start_time <= offsets[name] + a + VAD_TOLERANCE_S
            assert seg.end_time >= offsets[name] + b - VAD_TOLERANCE_S
            assert seg.words and seg.words[0]["start"] >= seg.start_time - 0.05
    assert len({s.segment_id for s in recorder.finals}) == 4


@pytest.mark.asyncio
async def test_monologue_is_cut_into_tiling_finals(agent_triton, recorder, speech_clips):
    """Speech with no pause long enough to end it, over a lowered utterance limit: finals of at most
    the limit that tile the offline vad's segment exactly (no sample lost or doubled at a cut)."""
    limit = 3.0
    settings = make_agent_settings(agent_triton.ports.grpc_url, agent_max_utterance_seconds=limit)
    (_, c1), (_, c2) = speech_clips.items()
    x, _ = track(0.5, c1, 0.25, c2, 0.25, c1, 0.25, c2, 1.5)
    async with TritonClient(agent_triton.ports.grpc_url) as client:
        offline = await VADClient(client).segments(x)
        assert len(offline) == 1, offline  # the input is one utterance for VAD
        pipeline = pipeline_for(client, settings, recorder, "carol")
        await push_paced(pipeline, x, speed=8)
        await pipeline.aclose()
    finals = sorted(recorder.finals, key=lambda s: s.start_time)
    assert len(finals) >= math.ceil(offline[0].duration / limit)
    assert abs(finals[0].start_time - offline[0].start) <= VAD_TOLERANCE_S
    assert abs(finals[-1].end_time - offline[0].end) <= VAD_TOLERANCE_S
    for a, b in zip(finals, finals[1:], strict=False):
        assert a.end_time == b.start_time  # the same sample index on both sides of the cut
    assert all(s.end_time - s.start_time <= limit + 1e-9 for s in finals)
    assert all(s.text for s in finals)
    check_protocol(recorder, [pipeline])


@pytest.mark.asyncio
async def test_queue_overflow_drops_oldest_and_counts_it(recorder):
    """Triton unreachable and a 1 s queue: pushing 3 s drops the oldest 2 s, counted."""
    settings = make_agent_settings(closed_port_url(), agent_buffer_max_seconds=1.0)
    dropped_before = metric("intrascribe_agent_dropped_audio_seconds_total")
    errors_before = metric("intrascribe_agent_triton_errors_total", model="vad_stream")
    async with TritonClient(
        settings.triton_grpc_url, retry=RetryPolicy(attempts=2, deadline_s=1.0)
    ) as client:
        pipeline = pipeline_for(client, settings, recorder, "dave", drain_timeout_s=1.0)
        rng = np.random.default_rng(0)
        for _ in range(30):
            await pipeline.push((rng.standard_normal(PIECE) * 0.1).astype(np.float32))
            await asyncio.sleep(0.05)
        buffered = metric("intrascribe_agent_buffered_audio_seconds")
        assert 0 < buffered <= 1.0 + 1e-9
        await asyncio.sleep(1.5)
        await pipeline.aclose()
    dropped = metric("intrascribe_agent_dropped_audio_seconds_total") - dropped_before
    assert pipeline.dropped_samples / SAMPLE_RATE == pytest.approx(dropped)
    assert dropped == pytest.approx(2.0, abs=0.11)
    assert metric("intrascribe_agent_triton_errors_total", model="vad_stream") > errors_before
    assert metric("intrascribe_agent_buffered_audio_seconds") == pytest.approx(0.0)
    assert recorder.segments == []


@pytest.mark.asyncio
async def test_monologue_over_30_s_default_limit(agent_triton, agent_settings, recorder, speech_clips):
    """Over 30 s of speech with the default limit: finals of at most 30 s that tile the utterance."""
    (_, c1), (_, c2) = speech_clips.items()
    parts: list = [0.5]
    while sum(p.size for p in parts if isinstance(p, np.ndarray)) < 40 * SAMPLE_RATE:
        parts += [c1, 0.2, c2, 0.2]
    x, _ = track(*parts[:-1], 1.5)
    async with TritonClient(agent_triton.ports.grpc_url) as client:
        offline = await VADClient(client).segments(x)
        pipeline = pipeline_for(client, agent_settings, recorder, "erin")
        await push_paced(pipeline, x, speed=20)
        await pipeline.aclose()
    finals = sorted(recorder.finals, key=lambda s: s.start_time)
    assert len(finals) >= 2
    assert abs(finals[0].start_time - offline[0].start) <= VAD_TOLERANCE_S
    assert abs(finals[-1].end_time - offline[-1].end) <= VAD_TOLERANCE_S
    for a, b in zip(finals, finals[1:], strict=False):
        assert a.end_time == b.start_time
    assert all(s.end_time - s.start_time <= agent_settings.agent_max_utterance_seconds + 1e-9 for s in finals)
    check_protocol(recorder, [pipeline])


@pytest.fixture
def own_triton(tmp_path):
    """A tritonserver of vad, vad_stream and asr that the test may stop and restart (same ports)."""
    from serving.launcher import MODEL_REPOSITORY, TritonServer

    server = TritonServer(
        MODEL_REPOSITORY, models=["vad", "vad_stream", "asr"], log_path=tmp_path / "triton.log"
    )
    with server:
        yield server


@pytest.mark.slow
@pytest.mark.asyncio
async def test_triton_restart_mid_session(own_triton, recorder, speech_clips):
    """Triton stopped while audio flows (mid-utterance) and started again on the same ports, the
    track going on meanwhile (silence once the speech runs out, as LiveKit delivers it): every
    utterance is transcribed exactly once, in order, where the offline vad cuts the audio."""
    (t1, c1), (t2, c2) = speech_clips.items()
    x, spans = track(0.5, c1, 1.2, c2, 1.2, c1, 1.2, c2, 1.5)
    settings = make_agent_settings(own_triton.ports.grpc_url)
    errors_before = metric("intrascribe_agent_triton_errors_total", model="vad_stream")
    pushed: list[np.ndarray] = []

    async def push(pipeline: SpeakerPipeline, audio: np.ndarray, speed: float) -> None:
        pushed.append(audio)
        await push_paced(pipeline, audio, speed)

    def restart() -> None:
        own_triton.stop()
        own_triton.start()

    async with TritonClient(own_triton.ports.grpc_url) as client:
        pipeline = pipeline_for(client, settings, recorder, "frank")
        stop_at = int((spans[1][0] + 0.8) * SAMPLE_RATE)  # inside the second utterance
        await push(pipeline, x[:stop_at], speed=2)
        async with asyncio.timeout(30):  # the first final is out before Triton goes
            while not recorder.finals:
                await asyncio.sleep(0.05)
        assert [s.text for s in recorder.finals] == [t1]
        restarting = asyncio.create_task(asyncio.to_thread(restart))
        resume_at = int((spans[2][1] + 1.0) * SAMPLE_RATE)  # the third utterance while Triton is away
        await push(pipeline, x[stop_at:resume_at], speed=1)
        while not restarting.done():  # the track goes on in real time
            await push(pipeline, np.zeros(PIECE, np.float32), speed=1)
        await restarting
        await push(pipeline, x[resume_at:], speed=2)
        await pipeline.aclose()
        await check_vad_parity(client, pipeline, recorder.finals, np.concatenate(pushed))
    assert finals_text(recorder, "frank") == [t1, t2, t1, t2]
    assert metric("intrascribe_agent_triton_errors_total", model="vad_stream") > errors_before
    check_protocol(recorder, [pipeline])


@pytest.mark.slow
@pytest.mark.asyncio
async def test_queue_overflow_then_triton_arrives(tmp_path, recorder, speech_clips):
    """Triton not there yet and a 4 s queue: the first sentence is dropped (counted); when Triton
    comes up, what stayed queued is transcribed, at its own session time."""
    from serving.launcher import MODEL_REPOSITORY, TritonServer

    (_, c1), (t2, c2) = speech_clips.items()
    x, spans = track(0.5, c1, 5.0, c2, 1.0)
    server = TritonServer(MODEL_REPOSITORY, models=["vad", "vad_stream", "asr"], log_path=tmp_path / "t.log")
    settings = make_agent_settings(server.ports.grpc_url, agent_buffer_max_seconds=4.0)
    dropped_before = metric("intrascribe_agent_dropped_audio_seconds_total")
    try:
        async with TritonClient(server.ports.grpc_url) as client:
            pipeline = pipeline_for(client, settings, recorder, "gina", offset_s=3.0)
            await push_paced(pipeline, x, speed=8)
            await asyncio.to_thread(server.start)
            await pipeline.aclose()
    finally:
        server.stop()
    dropped = metric("intrascribe_agent_dropped_audio_seconds_total") - dropped_before
    assert dropped == pytest.approx(x.size / SAMPLE_RATE - 4.0, abs=0.11)
    assert [s.text for s in recorder.finals] == [t2]
    (final,) = recorder.finals
    assert final.start_time <= 3.0 + spans[1][0] + VAD_TOLERANCE_S
    assert final.end_time >= 3.0 + spans[1][1] - VAD_TOLERANCE_S
    check_protocol(recorder, [pipeline])


@pytest.mark.slow
@pytest.mark.asyncio
async def test_audio_pause_closes_the_vad_sequence(agent_triton, agent_settings, recorder, speech_clips):
    """Audio stops mid-utterance (no frames, e.g. a paused track) for longer than IDLE_CLOSE_S: the
    pipeline closes its vad_stream sequence before Triton's idle timeout (the utterance gets its
    final), and the next audio starts a new sequence that works."""
    from agent.pipeline import IDLE_CLOSE_S

    (t1, c1), (t2, c2) = speech_clips.items()
    first, _ = track(0.5, c1, 0.2)
    second, _ = track(0.5, c2, 1.5)
    async with TritonClient(agent_triton.ports.grpc_url) as client:
        pipeline = pipeline_for(client, agent_settings, recorder, "hana")
        await push_paced(pipeline, first, speed=8)
        await asyncio.sleep(1.0)
        assert recorder.finals == []  # 0.2 s of silence does not end an utterance
        await asyncio.sleep(IDLE_CLOSE_S + 1.0)
        assert [s.text for s in recorder.finals] == [t1]
        await push_paced(pipeline, second, speed=8)
        await pipeline.aclose()
    assert finals_text(recorder, "hana") == [t1, t2]
    check_protocol(recorder, [pipeline])
