"""The ``vad`` and ``vad_stream`` Triton models, served by a real tritonserver with fsmn-VAD's real
weights: ground truth, streaming == offline, isolation of streams, real batching, errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from inference_client import TritonClient
from inference_client.audio import decode_audio
from inference_client.errors import InferenceError
from inference_client.metrics import batch_sizes, scrape
from inference_client.vad import VADClient
from speechlib.interfaces import SAMPLE_RATE, VAD, VADStream
from speechlib.vad import events_to_segments
from tests.audio import known_silence_file, merge_regions, pyannote_sample
from tests.batching import send_mixed

CHUNK = SAMPLE_RATE // 5  # 200 ms
MAX_END_SILENCE_MS = 800


def run(coro):
    return asyncio.run(coro)


async def offline(server, waves, max_end_silence_ms=MAX_END_SILENCE_MS):
    async with TritonClient(server.ports.grpc_url) as client:
        vad = VADClient(client)
        return await asyncio.gather(*(vad.segments(w, max_end_silence_ms) for w in waves))


async def streamed(client, wave, chunk=CHUNK, max_end_silence_ms=MAX_END_SILENCE_MS, pause=0.0):
    vad = VADClient(client)
    events = []
    async with vad.stream(max_end_silence_ms) as stream:
        for start in range(0, len(wave), chunk):
            events += await stream.send(wave[start : start + chunk])
            if pause:
                await asyncio.sleep(pause)
        events += await stream.close()
    return events_to_segments(events)


def as_pairs(segments):
    return [(s.start_ms, s.end_ms) for s in segments]


@pytest.fixture(scope="module")
def speech_files():
    path, regions = known_silence_file()
    sample_path, turns = pyannote_sample()
    return {
        "known": (decode_audio(path), regions),
        "sample": (decode_audio(sample_path), [(s, e) for s, e, _ in turns]),
    }


def check_against_truth(segments_ms, regions_s, end_silence_ms):
    """Every true region is covered; starts 0-350 ms early; ends within +-300 ms; no segment in silence."""
    regions = merge_regions(sorted(regions_s), end_silence_ms / 1000.0)
    segs = [(s / 1000.0, e / 1000.0) for s, e in segments_ms]
    assert segs, "no speech detected"
    for rs, re_ in regions:
        covering = [(s, e) for s, e in segs if s < re_ and e > rs]
        assert covering, f"true speech {rs:.2f}-{re_:.2f} s not detected; got {segs}"
        first, last = covering[0], covering[-1]
        assert 0.0 <= rs - first[0] <= 0.35, f"start {first[0]:.3f} vs true {rs:.3f}"
        assert abs(last[1] - re_) <= 0.30, f"end {last[1]:.3f} vs true {re_:.3f}"
    for s, e in segs:
        assert any(s < re_ and e > rs for rs, re_ in regions), (
            f"segment {s:.2f}-{e:.2f} s lies wholly in silence"
        )


def test_known_silences_ground_truth(triton_vad, speech_files):
    wave, regions = speech_files["known"]
    (segments,) = run(offline(triton_vad, [wave]))
    check_against_truth(as_pairs(segments), regions, MAX_END_SILENCE_MS)


def test_pyannote_sample_ground_truth(triton_vad, speech_files):
    wave, turns = speech_files["sample"]
    (segments,) = run(offline(triton_vad, [wave]))
    check_against_truth(as_pairs(segments), turns, MAX_END_SILENCE_MS)


def test_end_silence_setting_changes_segmentation(triton_vad, speech_files):
    wave, _ = speech_files["sample"]
    short = as_pairs(run(offline(triton_vad, [wave], max_end_silence_ms=200))[0])
    long_ = as_pairs(run(offline(triton_vad, [wave], max_end_silence_ms=3000))[0])
    assert len(short) > len(long_) >= 1


@pytest.mark.slow
def test_streaming_equals_offline_and_streams_are_isolated(triton_vad, speech_files):
    known, _ = speech_files["known"]
    sample, _ = speech_files["sample"]
    rng = np.random.default_rng(1)
    # 8 interleaved streams: different files, offsets and chunk sizes (100-200 ms).
    waves = [
        known,
        sample,
        known[8000:],
        sample[16000 * 3 :],
        known * 0.5,
        sample[: 16000 * 12],
        known[::-1].copy(),
        sample,
    ]
    chunks = [int(c) for c in rng.choice([1600, 2400, 3200], len(waves))]
    offline_results = [as_pairs(s) for s in run(offline(triton_vad, waves))]

    async def all_streams():
        async with TritonClient(triton_vad.ports.grpc_url) as client:
            return await asyncio.gather(
                *(streamed(client, w, c, pause=0.001) for w, c in zip(waves, chunks, strict=True))
            )

    streamed_results = run(all_streams())
    for i, (off, st) in enumerate(zip(offline_results, streamed_results, strict=True)):
        assert off, f"stream {i}: no speech found offline"
        assert st == off, f"stream {i} (chunk {chunks[i]}): streamed {st} != offline {off}"


def test_batching_is_real_and_batched_results_equal_single(triton_vad, speech_files):
    wave, _ = speech_files["sample"]
    rng = np.random.default_rng(2)
    lengths = rng.integers(SAMPLE_RATE * 9, len(wave), 20)  # first speech in sample.wav is at 6.7 s
    waves = [wave[: int(n)] for n in lengths]
    singles = [as_pairs(run(offline(triton_vad, [w]))[0]) for w in waves[:4]]
    before = batch_sizes(scrape(triton_vad.ports.metrics_url), VAD.NAME)
    batched = [as_pairs(s) for s in run(offline(triton_vad, waves))]
    delta = batch_sizes(scrape(triton_vad.ports.metrics_url), VAD.NAME) - before
    assert delta.mean > 1.0, f"network ran {delta.count} calls with mean batch {delta.mean:.2f}: no batching"
    assert batched[:4] == singles
    for segs in batched:
        assert segs, "empty result for speech"


def test_stream_batching_across_streams(triton_vad, speech_files):
    wave, _ = speech_files["sample"]
    before = batch_sizes(scrape(triton_vad.ports.metrics_url), VADStream.NAME)

    async def many():
        async with TritonClient(triton_vad.ports.grpc_url) as client:
            return await asyncio.gather(*(streamed(client, wave[: SAMPLE_RATE * 8]) for _ in range(16)))

    results = run(many())
    delta = batch_sizes(scrape(triton_vad.ports.metrics_url), VADStream.NAME) - before
    assert all(r == results[0] for r in results) and results[0]
    assert delta.mean > 1.0, f"streams did not batch (mean network batch {delta.mean:.2f})"


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.1, np.nan] * 4000, np.float32), "NaN"),
        (np.zeros(SAMPLE_RATE, np.float64), "FP32"),
        (np.zeros((2, SAMPLE_RATE), np.float32), "one waveform"),
    ],
)
def test_bad_input_fails_alone(triton_vad, speech_files, bad, message):
    """A bad request in the same execution as good ones (Triton's counters prove they shared it) gets
    its own error and the good ones their segments; a wrong dtype is refused by Triton before any
    batch."""
    wave, _ = speech_files["known"]
    good = [{VAD.WAVEFORM: wave[None, :]} for _ in range(3)]
    run = send_mixed(
        triton_vad, VAD.NAME, good, {VAD.WAVEFORM: bad if bad.ndim == 2 else bad[None, :]}, [VAD.SEGMENTS]
    )
    if bad.dtype != np.float32:
        assert run.refused_before_batching, run
    else:
        assert run.shared_one_execution, f"never shared one execution with the good requests: {run}"
    assert isinstance(run.bad, InferenceError), run.bad
    assert message.lower() in str(run.bad).lower()
    for g in run.good:
        assert not isinstance(g, Exception), g
        assert g[VAD.SEGMENTS].size > 0


def test_too_long_and_bad_setting_are_clear_errors(triton_vad):
    async def go():
        async with TritonClient(triton_vad.ports.grpc_url) as client:
            too_long = np.zeros((1, SAMPLE_RATE * 3601), np.float32)
            r1 = client.infer(VAD.NAME, {VAD.WAVEFORM: too_long}, [VAD.SEGMENTS])
            r2 = client.infer(
                VAD.NAME,
                {
                    VAD.WAVEFORM: np.zeros((1, SAMPLE_RATE), np.float32),
                    VAD.MAX_END_SILENCE_MS: np.array([[-5]], np.int32),
                },
                [VAD.SEGMENTS],
            )
            return await asyncio.gather(r1, r2, return_exceptions=True)

    r1, r2 = run(go())
    assert isinstance(r1, InferenceError) and "at most 3600 s" in str(r1)
    assert isinstance(r2, InferenceError) and "MAX_END_SILENCE_MS" in str(r2)


def test_stream_without_start_is_rejected(triton_vad):
    async def go():
        async with TritonClient(triton_vad.ports.grpc_url) as client:
            return await client.infer(
                VADStream.NAME,
                {VADStream.AUDIO_CHUNK: np.zeros((1, CHUNK), np.float32)},
                [VADStream.EVENTS],
                sequence_id=987654321,
            )

    with pytest.raises(InferenceError):
        run(go())


def test_silence_gives_no_segments(triton_vad):
    rng = np.random.default_rng(5)
    quiet = (rng.normal(0, 1e-4, SAMPLE_RATE * 5)).astype(np.float32)
    (segments,) = run(offline(triton_vad, [quiet]))
    assert segments == []
