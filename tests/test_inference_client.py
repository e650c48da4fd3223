"""inference_client against a real tritonserver serving the test-only models in tests/triton_models/.

Those models are tiny Python-backend stand-ins (an echo model with ragged dynamic batching, a sequence
model that keeps per-CORRID state, and fakes of ``vad`` / ``vad_stream`` with the real tensor names),
so these tests check the client's contract, not the networks.
"""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from inference_client import (
    InvalidRequestError,
    ModelExecutionError,
    ModelNotFoundError,
    RetryPolicy,
    SpeechEvent,
    SpeechSegment,
    TritonClient,
    TritonUnavailableError,
    VADClient,
    decode_audio,
    validate_waveform,
)
from inference_client import metrics as m
from serving.launcher import TritonPorts, TritonServer
from speechlib.interfaces import BATCH_SIZE_METRIC, SAMPLE_RATE, VAD, VADStream
from tests.audio import known_silence_file

TEST_MODELS = Path(__file__).parent / "triton_models"
ALL_MODELS = ["echo_ragged", "sequence_state", VAD.NAME, VADStream.NAME]


@pytest.fixture(scope="module")
def server():
    with TritonServer(TEST_MODELS, models=ALL_MODELS) as s:
        yield s


@pytest_asyncio.fixture
async def client(server):
    async with TritonClient(server.ports.grpc_url, max_in_flight=32) as c:
        yield c


def tone_bursts(spans_s: list[tuple[float, float]], total_s: float) -> np.ndarray:
    """Silence with 440 Hz tone (amplitude 0.3) over each ``(start_s, end_s)``."""
    x = np.zeros(int(total_s * SAMPLE_RATE), np.float32)
    t = np.arange(x.size) / SAMPLE_RATE
    for a, b in spans_s:
        i, j = int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)
        x[i:j] = 0.3 * np.sin(2 * np.pi * 440 * t[i:j])
    return x


# -- raw infer ------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_infer_round_trip(client):
    x = np.arange(7, dtype=np.float32)[None]
    out = await client.infer("echo_ragged", {"INPUT": x}, ["OUTPUT"])
    assert list(out) == ["OUTPUT"]
    np.testing.assert_array_equal(out["OUTPUT"], 2 * x)
    assert out["OUTPUT"].dtype == np.float32 and out["OUTPUT"].size == 7  # numpy-2 models send 0 bytes

    everything = await client.infer("echo_ragged", {"INPUT": x})  # outputs=None: all of them
    assert set(everything) == {"OUTPUT", "BATCH"}


@pytest.mark.asyncio
async def test_concurrent_requests_batch_through_the_window(server):
    url = server.ports.metrics_url
    before = m.settled_counts(url, "echo_ragged")
    hist_before = m.batch_sizes(m.scrape(url), "echo_ragged")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, int(n))).astype(np.float32) for n in rng.integers(1, 400, 64)]
    async with TritonClient(server.ports.grpc_url, max_in_flight=32) as client:
        outs = await asyncio.gather(*(client.infer("echo_ragged", {"INPUT": x}) for x in xs))
        assert client.stats.max_in_flight_seen == 32
        assert client.stats.attempts == client.stats.requests == 64
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["OUTPUT"], 2 * x)  # ragged: each gets its own length back
    assert max(int(out["BATCH"][0, 0]) for out in outs) > 1

    delta = m.counts_after(url, "echo_ragged", before, 64)
    assert delta.inferences == 64
    assert delta.executions < delta.inferences / 2, delta  # batching is visible in Triton's counters
    hist = m.batch_sizes(m.scrape(url), "echo_ragged") - hist_before
    assert hist.count == delta.executions and hist.sum == 64 and hist.mean > 2


@pytest.mark.asyncio
async def test_window_caps_requests_in_flight(server):
    async with TritonClient(server.ports.grpc_url, max_in_flight=3) as client:
        x = np.ones((1, 10), np.float32)
        await asyncio.gather(*(client.infer("echo_ragged", {"INPUT": x}) for _ in range(12)))
        assert client.stats.max_in_flight_seen == 3 and client.stats.in_flight == 0


@pytest.mark.asyncio
async def test_invalid_argument_is_not_retried(client):
    with pytest.raises(InvalidRequestError) as err:
        await client.infer("echo_ragged", {"INPUT": np.ones((1, 4), np.int32)})
    assert err.value.model == "echo_ragged"
    assert err.value.status == "INVALID_ARGUMENT"
    assert "FP32" in err.value.message and "request id" not in err.value.message
    assert client.stats.attempts == 1 and client.stats.retries == 0


@pytest.mark.asyncio
async def test_one_failing_request_does_not_poison_its_batch(client):
    good = [np.full((1, 5), i, np.float32) for i in range(24)]
    bad = np.full((1, 5), -np.inf, np.float32)  # the echo model fails exactly this request
    calls = [client.infer("echo_ragged", {"INPUT": x}, ["OUTPUT"]) for x in good]
    calls.insert(5, client.infer("echo_ragged", {"INPUT": bad}))
    calls += [client.infer("echo_ragged", {"INPUT": np.ones((1, 5), np.int32)})]  # invalid dtype
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[5], ModelExecutionError) and "-inf" in str(results[5])
    assert isinstance(results[-1], InvalidRequestError)
    ok = results[:5] + results[6:-1]
    for i, out in enumerate(ok):
        np.testing.assert_array_equal(out["OUTPUT"], np.full((1, 5), 2 * i, np.float32))
    assert client.stats.retries == 0


@pytest.mark.asyncio
async def test_unknown_model(client):
    with pytest.raises(ModelNotFoundError, match="nope"):
        await client.infer("nope", {"INPUT": np.ones((1, 1), np.float32)})


@pytest.mark.asyncio
async def test_rejects_non_array_inputs(client):
    with pytest.raises(TypeError, match="numpy array"):
        await client.infer("echo_ragged", {"INPUT": [1.0, 2.0]})


@pytest.mark.asyncio
async def test_server_state_calls(client):
    await client.wait_ready(ALL_MODELS, timeout_s=10)
    meta = await client.server_metadata()
    assert meta["name"] == "triton" and meta["version"]
    config = await client.model_config(VADStream.NAME)
    assert config["max_batch_size"] == 8 and "sequence_batching" in config
    with pytest.raises(TimeoutError, match="not_a_model"):
        await client.wait_ready(["not_a_model"], timeout_s=0.5)


# -- retries --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.asyncio
async def test_retries_until_the_server_comes_up():
    ports = TritonPorts.free()
    server = TritonServer(TEST_MODELS, ports=ports, models=["echo_ragged"])
    failed: list[BaseException] = []

    def start_later():
        time.sleep(2.0)
        try:
            server.start()
        except BaseException as exc:  # surfaced by the assertion below
            failed.append(exc)

    thread = threading.Thread(target=start_later, daemon=True)
    thread.start()
    try:
        policy = RetryPolicy(attempts=200, initial_backoff_s=0.05, max_backoff_s=0.5, deadline_s=120)
        async with TritonClient(ports.grpc_url, retry=policy, timeout_s=10) as client:
            t0 = time.monotonic()
            out = await client.infer("echo_ragged", {"INPUT": np.ones((1, 3), np.float32)})
            assert not failed, failed
            assert time.monotonic() - t0 >= 2.0
            np.testing.assert_array_equal(out["OUTPUT"], np.full((1, 3), 2, np.float32))
            assert client.stats.retries >= 1 and client.stats.attempts == client.stats.retries + 1
    finally:
        thread.join()
        server.stop()


@pytest.mark.asyncio
async def test_gives_up_when_the_server_stays_away():
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02, jitter_s=0.0)
    async with TritonClient(TritonPorts.free().grpc_url, retry=policy, timeout_s=2) as client:
        with pytest.raises(TritonUnavailableError) as err:
            await client.infer("echo_ragged", {"INPUT": np.ones((1, 3), np.float32)})
    assert err.value.attempts == 3 and client.stats.attempts == 3
    assert err.value.status == "UNAVAILABLE" and "3 attempts" in str(err.value)


# -- sequences ------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_sequence_flags_reach_the_model(client):
    async def run(seq_id: int, sizes: list[int]) -> list[list[int]]:
        states = []
        for k, n in enumerate(sizes):
            out = await client.infer(
                "sequence_state",
                {"INPUT": np.ones((1, n), np.float32)},
                ["STATE"],
                sequence_id=seq_id,
                sequence_start=k == 0,
                sequence_end=k == len(sizes) - 1,
            )
            states.append(out["STATE"].reshape(-1).tolist())
        return states

    a, b = await asyncio.gather(run(1001, [3, 4, 5]), run(2**62 + 7, [10, 20]))
    assert a == [[1, 3, 1, 0, 1001], [2, 7, 1, 0, 1001], [3, 12, 1, 1, 1001]]
    assert b == [[1, 10, 1, 0, 2**62 + 7], [2, 30, 1, 1, 2**62 + 7]]
    with pytest.raises(InvalidRequestError, match="START"):  # the sequence ended with END
        await client.infer("sequence_state", {"INPUT": np.ones((1, 1), np.float32)}, sequence_id=1001)


# -- VAD ------------------------------------------------------------------------------------------
SPEECH = [(0.5, 1.5), (1.8, 2.8), (4.0, 4.5)]  # the fake VAD merges gaps < 500 ms by default


@pytest.mark.asyncio
async def test_vad_segments(client):
    vad = VADClient(client)
    x = tone_bursts(SPEECH, 5.0)
    assert await vad.segments(x) == [SpeechSegment(500, 2800), SpeechSegment(4000, 4500)]
    split = await vad.segments(x, max_end_silence_ms=200)
    assert [(s.start, s.end) for s in split] == [(0.5, 1.5), (1.8, 2.8), (4.0, 4.5)]
    assert split[0].duration == 1.0 and split[0].samples() == slice(8000, 24000)
    assert await vad.segments(np.zeros(SAMPLE_RATE, np.float32)) == []
    assert await vad.segments(np.zeros(0, np.float32)) == []
    assert await vad.segments(x.astype(np.float64), 200) == split  # other float dtypes are converted


@pytest.mark.asyncio
async def test_vad_segments_many_batches(server, client):
    url = server.ports.metrics_url
    before = m.settled_counts(url, VAD.NAME)
    waveforms = [tone_bursts([(0.1 * (i % 5), 0.1 * (i % 5) + 0.5)], 1.0 + 0.01 * i) for i in range(40)]
    many = await VADClient(client).segments_many(waveforms, max_end_silence_ms=300)
    starts = [round(0.1 * (i % 5) * 1000) for i in range(40)]
    assert many == [[SpeechSegment(s, s + 500)] for s in starts]
    delta = m.counts_after(url, VAD.NAME, before, 40)
    assert delta.inferences == 40 and delta.executions < 40


def test_validate_waveform_errors():
    with pytest.raises(ValueError, match="2 channels"):
        validate_waveform(np.zeros((2, 1600), np.float32))
    with pytest.raises(TypeError, match="32768"):
        validate_waveform(np.zeros(1600, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        validate_waveform(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="int16-scaled"):
        validate_waveform(np.full(10, 1000.0, np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        validate_waveform([0.0, 0.1])
    assert validate_waveform(np.zeros(3, np.float64)).dtype == np.float32


@pytest.mark.asyncio
async def test_vad_rejects_bad_silence_and_the_model_checks_too(client):
    with pytest.raises(ValueError, match="max_end_silence_ms"):
        await VADClient(client).segments(np.zeros(1600, np.float32), max_end_silence_ms=-1)
    inputs = {
        VAD.WAVEFORM: np.zeros((1, 1600), np.float32),
        VAD.MAX_END_SILENCE_MS: np.array([[-5]], np.int32),
    }
    with pytest.raises(InvalidRequestError, match="MAX_END_SILENCE_MS"):  # a model's INVALID_ARG
        await client.infer(VAD.NAME, inputs)
    assert client.stats.retries == 0


def pair_events(events: list[SpeechEvent]) -> list[SpeechSegment]:
    segments, start = [], None
    for e in events:
        if e.start_ms is not None:
            assert start is None, events
            start = e.start_ms
        if e.end_ms is not None:
            assert start is not None, events
            segments.append(SpeechSegment(start, e.end_ms))
            start = None
    assert start is None, events
    return segments


@pytest.mark.asyncio
async def test_vad_stream_matches_offline(client):
    vad = VADClient(client)
    x = tone_bursts(SPEECH + [(4.7, 5.0)], 5.0)  # speech still open when the stream ends
    offline = await vad.segments(x, max_end_silence_ms=200)

    async def stream(chunk: int) -> tuple[list[SpeechEvent], list[SpeechEvent], int]:
        events = []
        async with vad.stream(max_end_silence_ms=200) as s:
            for i in range(0, x.size, chunk):
                events += await s.send(x[i : i + chunk])
            last = await s.close()
            assert s.closed and s.samples_sent == x.size
            return events + last, last, s.sequence_id

    (ev100, last100, id1), (ev_odd, _, id2) = await asyncio.gather(stream(1600), stream(2777))
    assert id1 != id2
    assert pair_events(ev100) == pair_events(ev_odd) == offline
    assert offline[-1] == SpeechSegment(4700, 5000)
    assert last100 == [SpeechEvent(None, 5000)]  # END closed the open segment
    assert SpeechEvent(500, None) in ev100 and SpeechEvent(None, 1500) in ev100


@pytest.mark.asyncio
async def test_vad_stream_lifecycle(client):
    vad = VADClient(client)
    before = client.stats.attempts
    async with vad.stream() as s:
        pass  # never sent anything: no request at all
    assert s.closed and client.stats.attempts == before

    s = vad.stream()
    await s.send(np.zeros(1600, np.float32))
    assert await s.close(tone_bursts([(0.0, 0.1)], 0.1)) == [SpeechEvent(100, 200)]
    assert await s.close() == []  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await s.send(np.zeros(160, np.float32))

    with pytest.raises(ZeroDivisionError):  # an error inside the block still ends the sequence
        async with vad.stream() as s:
            await s.send(np.zeros(1600, np.float32))
            raise ZeroDivisionError
    assert s.closed


# -- metrics and audio (no server) -----------------------------------------------------------------
def test_metrics_parse():
    text = f"""# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{{model="vad",version="1"}} 40
nv_inference_count{{model="vad",version="2"}} 2
nv_inference_count{{model="asr",version="1"}} 7
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{{model="vad",version="1"}} 5
nv_inference_exec_count{{model="vad",version="2"}} 1
# HELP {BATCH_SIZE_METRIC} batch size
# TYPE {BATCH_SIZE_METRIC} histogram
{BATCH_SIZE_METRIC}_bucket{{model="vad",le="1"}} 1
{BATCH_SIZE_METRIC}_bucket{{model="vad",le="+Inf"}} 6
{BATCH_SIZE_METRIC}_sum{{model="vad"}} 42
{BATCH_SIZE_METRIC}_count{{model="vad"}} 6
"""
    metrics = m.parse(text)
    counts = m.inference_counts(metrics, "vad")
    assert counts == (42, 6) and counts.mean_batch == 7
    assert m.inference_counts(metrics, "segmentation") == (0, 0)
    sizes = m.batch_sizes(metrics, "vad")
    assert sizes == (6, 42) and sizes.mean == 7
    assert m.total(metrics, f"{BATCH_SIZE_METRIC}_bucket", model="vad", le="1") == 1


def test_decode_audio_mixes_down_and_resamples(tmp_path):
    rate, n = 22050, 22050
    t = np.arange(n) / rate
    left = (0.5 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2")
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.stack([left, np.zeros_like(left)], axis=1).tobytes())
    x = decode_audio(path)
    assert x.dtype == np.float32 and x.shape == (SAMPLE_RATE,)
    assert abs(float(np.abs(x).max()) - 0.25) < 0.01  # mono = mean of the two channels


# -- docs and the real models ----------------------------------------------------------------------
def test_interfaces_doc_names_every_vad_tensor():
    doc = (Path(__file__).parents[1] / "docs" / "interfaces.md").read_text()
    names = [VAD.NAME, VAD.WAVEFORM, VAD.MAX_END_SILENCE_MS, VAD.SEGMENTS, VADStream.NAME]
    names += [VADStream.AUDIO_CHUNK, VADStream.EVENTS, VADStream.START, VADStream.END, VADStream.READY]
    names += [VADStream.CORRID, BATCH_SIZE_METRIC]
    for name in names:
        assert f"`{name}`" in doc, f"docs/interfaces.md does not describe `{name}`"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_real_vad_models_through_the_client(triton_vad):
    """The client against the real `vad` / `vad_stream` (conftest's server over model_repository/):
    offline, batched and streaming results agree on speech with known silences."""
    path, regions = known_silence_file()
    x = decode_audio(path)
    async with TritonClient(triton_vad.ports.grpc_url) as client:
        await client.wait_ready([VAD.NAME, VADStream.NAME])
        vad = VADClient(client)
        offline = await vad.segments(x)
        assert len(offline) == len(regions), (offline, regions)
        assert await vad.segments_many([x] * 8) == [offline] * 8
        events = []
        async with vad.stream() as stream:
            for i in range(0, x.size, 1600):
                events += await stream.send(x[i : i + 1600])
            events += await stream.close()
        assert pair_events(events) == offline


def test_a_model_without_a_ready_version_is_transient_an_unknown_one_is_not():
    """While Triton loads a model, or unloads it as the server stops or restarts, it answers
    NOT_FOUND "... has no available versions": retried, then TritonUnavailableError; an unknown
    name stays ModelNotFoundError (the exact messages of tritonserver 2.x)."""
    from tritonclient.utils import InferenceServerException

    from inference_client.errors import TritonUnavailableError, is_transient, translate

    loading = InferenceServerException(
        "Request for unknown model: 'asr' has no available versions", status="StatusCode.NOT_FOUND"
    )
    unknown = InferenceServerException(
        "Request for unknown model: 'nope' is not found", status="StatusCode.NOT_FOUND"
    )
    assert is_transient(loading) and not is_transient(unknown)
    assert isinstance(translate(loading, "asr", 3), TritonUnavailableError)
    assert isinstance(translate(unknown, "nope"), ModelNotFoundError)
