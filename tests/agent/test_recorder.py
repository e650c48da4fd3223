"""agent.recorder against the real api: real speech (espeak-ng) pushed in 20 ms frames becomes
Ogg/Opus chunks 0, 1, 2, ... stored complete; finalize's mix is as long as what was pushed; an api
outage mid-recording loses no chunk; a participant's new track continues the numbering from its
session time."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from agent.api_client import AgentApiClient
from agent.recorder import TrackRecorder, encode_ogg_opus
from inference_client.audio import SAMPLE_RATE, decode_audio
from tests.agent.api_helpers import FlakyProxyTransport, RestartableApi, live_api_settings, live_session
from tests.api.recording_helpers import speech

FRAME = SAMPLE_RATE // 50  # 20 ms, as LiveKit's AudioStream delivers them
FAST_RETRIES = dict(retry_attempts=3, retry_min_wait=0.05, retry_max_wait=0.5)
TOLERANCE_S = 0.02


@pytest.fixture(scope="module")
def talk() -> np.ndarray:
    """~25 s of speech with its pauses (silence is recorded too)."""
    parts = [
        speech("good morning everyone, thank you for joining the weekly meeting", 6.0),
        speech("first item on the agenda is the release of the new transcription service", 7.0),
        speech("the second item is the budget for next quarter and the hiring plan", 6.5),
        speech("any questions before we move on? then let us continue", 5.7),
    ]
    return np.concatenate(parts)  # 25.2 s


@pytest.fixture
def api(tmp_path):
    with RestartableApi(live_api_settings(tmp_path)) as server:  # RECORDING_CHUNK_SECONDS: 10 (default)
        yield server


async def push_frames(recorder: TrackRecorder, audio: np.ndarray) -> None:
    for i in range(0, audio.size, FRAME):
        await recorder.push(audio[i : i + FRAME])
    await asyncio.sleep(0)


async def wait_for(predicate, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def track_of(listing: dict, participant: str) -> dict:
    (track,) = [p for p in listing["participants"] if p["participant"] == participant]
    return track


def mix_samples(live, audio_file_id: str) -> np.ndarray:
    r = httpx.get(
        f"{live.api_url}/api/v1/audio-files/{audio_file_id}/download", headers=live.user_headers, timeout=60
    )
    assert r.status_code == 200, r.text
    path = f"/tmp/mix-{audio_file_id}.ogg"
    with open(path, "wb") as f:
        f.write(r.content)
    return decode_audio(path)


def envelope(x: np.ndarray, window: int = SAMPLE_RATE // 10) -> np.ndarray:
    n = x.size // window
    return np.sqrt((x[: n * window].reshape(n, window) ** 2).mean(axis=1))


def test_encoded_chunk_decodes_to_its_length(tmp_path):
    """Whatever the length (not a multiple of Opus' 20 ms frame), the decoded Ogg/Opus file holds
    exactly the samples encoded, and they sound like them."""
    x = speech("one two three four five", 3.337)
    data = encode_ogg_opus(x)
    path = tmp_path / "c.ogg"
    path.write_bytes(data)
    y = decode_audio(path)
    assert y.size == x.size
    assert np.corrcoef(envelope(x), envelope(y))[0, 1] > 0.98
    assert data[:4] == b"OggS" and b"OpusHead" in data[:100]
    assert encode_ogg_opus(x) != data  # a random Ogg serial each time: never re-encode to retry
    assert io.BytesIO(data).getbuffer().nbytes < 3.337 * 32_000 / 8 * 1.3


def test_recording_chunks_stored_and_finalized(api, talk):
    live = live_session(api.url)
    offset = 1.25

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        listing = await client.get_recording()
        recorder = TrackRecorder(client, "u-alice", chunk_seconds=listing["chunk_seconds"], offset_s=offset)
        await push_frames(recorder, talk)
        await recorder.aclose()
        stats = recorder.stats
        assert (stats.stored, stats.failed) == (3, 0)
        assert sorted(stats.stored_seqs) == [0, 1, 2]
        per_second = stats.bytes_encoded / stats.seconds_encoded
        cpu_per_10s = stats.encode_cpu_s / stats.seconds_encoded * 10
        print(
            f"\nrecording: {per_second:.0f} bytes/s of audio, encode CPU {cpu_per_10s * 1000:.1f} ms per 10 s chunk"
        )
        assert per_second < 32_000 / 8 * 1.2
        out = await client.finalize()
        await client.aclose()
        return out

    final = asyncio.run(main())
    track = track_of(live.recording(), "u-alice")
    pushed_s = talk.size / SAMPLE_RATE
    assert track["seqs"] == [0, 1, 2] and track["missing"] == [] and track["next_seq"] == 3
    assert track["offset_seconds"] == offset
    assert track["recorded_seconds"] == pytest.approx(pushed_s, abs=TOLERANCE_S)
    assert final["duration_seconds"] == pytest.approx(offset + pushed_s, abs=TOLERANCE_S)
    assert final["participants"] == ["u-alice"]
    mix = mix_samples(live, final["audio_file_id"])
    assert mix.size / SAMPLE_RATE == pytest.approx(offset + pushed_s, abs=TOLERANCE_S)
    # the speech is where it was said: the mix's loudness follows the pushed audio's, 1.25 s later
    start = round(offset * SAMPLE_RATE)
    placed = mix[start : start + talk.size]
    assert np.corrcoef(envelope(talk[: placed.size]), envelope(placed))[0, 1] > 0.95


def test_outage_mid_recording_loses_no_chunk(api, talk):
    live = live_session(api.url)
    audio = np.concatenate([talk, talk[: 3 * SAMPLE_RATE]])  # 28.2 s: chunks 0, 1 whole, 2 of 8.2 s

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        recorder = TrackRecorder(client, "u-bob", chunk_seconds=10.0, offset_s=0.0, retry_pause_s=0.2)
        await push_frames(recorder, audio[: 12 * SAMPLE_RATE])
        await wait_for(lambda: recorder.stats.stored == 1)
        await asyncio.to_thread(api.stop)
        await push_frames(recorder, audio[12 * SAMPLE_RATE :])
        await wait_for(lambda: recorder.stats.encoded == 2)  # chunk 1 waits for the api
        await asyncio.sleep(1.5)
        assert recorder.stats.stored == 1 and recorder.pending_chunks == 1
        await asyncio.to_thread(api.start)
        await recorder.aclose()
        assert (recorder.stats.stored, recorder.stats.failed) == (3, 0)
        await client.aclose()

    asyncio.run(main())
    track = track_of(live.recording(), "u-bob")
    assert track["seqs"] == [0, 1, 2] and track["missing"] == []
    assert track["recorded_seconds"] == pytest.approx(audio.size / SAMPLE_RATE, abs=TOLERANCE_S)


def test_rejoin_continues_numbering_from_session_time(api, talk):
    """Track 1 at 0 s (12 s: chunks 0, 1); the participant rejoins at 25 s (10 s: chunk 2 holds
    5 s of silence then speech, chunk 3) and again at 36 s (6 s: 36-40 s fall in the stored chunk 3
    and are dropped, 40-42 s become chunk 4: the talk's 6-8 s, speech). The gaps are silence in the mix."""
    live = live_session(api.url)

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        # (track offset, the part of the talk it says, seq of its first sample)
        for offset, said, first_seq in ((0.0, (0, 12), 0), (25.0, (0, 10), 2), (36.0, (2, 8), 3)):
            recorder = TrackRecorder(client, "u-carol", chunk_seconds=10.0, offset_s=offset)
            await push_frames(recorder, talk[said[0] * SAMPLE_RATE : said[1] * SAMPLE_RATE])
            await recorder.aclose()
            assert recorder.first_seq() == first_seq
            assert recorder.stats.failed == 0
        out = await client.finalize()
        await client.aclose()
        return out

    final = asyncio.run(main())
    track = track_of(live.recording(), "u-carol")
    assert track["seqs"] == [0, 1, 2, 3, 4] and track["missing"] == []
    assert track["offset_seconds"] == 0.0
    assert final["duration_seconds"] == pytest.approx(42.0, abs=TOLERANCE_S)
    mix = mix_samples(live, final["audio_file_id"])
    loud = envelope(mix) > 1e-3
    assert not loud[125:195].any()  # 12.5-19.5 s: between the tracks (and before chunk 2's speech)
    assert loud[255:300].any() and loud[400:420].any()  # the second track, and the third one's chunk 4


def test_unsent_chunks_are_bounded(api, talk):
    """The api is away for the whole track: at most ``max_pending_chunks`` encoded chunks wait; the
    oldest but the one being sent are dropped (counted), the rest is stored when it returns."""
    live = live_session(api.url)
    audio = np.concatenate([talk, talk])  # 50.4 s: chunks 0-4 whole, 5 of 0.4 s

    def failed() -> float:
        return (
            REGISTRY.get_sample_value("intrascribe_agent_recording_chunks_total", {"result": "failed"}) or 0.0
        )

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        await asyncio.to_thread(api.stop)
        failed_before = failed()
        recorder = TrackRecorder(
            client,
            "u-dave",
            chunk_seconds=10.0,
            offset_s=0.0,
            recording={"participants": []},  # known to be new: no listing needed
            max_pending_chunks=2,
            retry_pause_s=0.2,
        )
        await push_frames(recorder, audio)
        await wait_for(lambda: recorder.stats.encoded == 5)
        # chunk 0 is being sent (retried): 1, 2, 3 made room for the newer ones
        assert recorder.pending_chunks == 2 and recorder.stats.failed == 3
        assert failed() == failed_before + 3
        await asyncio.to_thread(api.start)
        await recorder.aclose()  # chunk 5 (0.4 s) pushes chunk 4 out unless 0 was stored by then
        assert recorder.stats.stored + recorder.stats.failed == 6
        await client.aclose()
        return recorder.stats

    stats = asyncio.run(main())
    track = track_of(live.recording(), "u-dave")
    assert track["seqs"] == sorted(stats.stored_seqs) and track["seqs"][0] == 0 and track["seqs"][-1] == 5
    assert track["missing"] == [s for s in range(6) if s not in track["seqs"]]
    assert track["offset_seconds"] == 0.0


def test_lost_answers_are_retried_with_the_same_bytes(api, talk):
    """The api stores chunk 0 but its answer is lost (a connection reset), twice: the retries send
    the very same bytes (200, nothing changes), never a re-encoding (409 chunk_conflict)."""
    live = live_session(api.url)
    proxy = FlakyProxyTransport()

    async def main():
        client = AgentApiClient(api.url, live.job_token, transport=proxy, **FAST_RETRIES)
        await client.start()
        proxy.lose_answers["PUT"] = 2
        recorder = TrackRecorder(client, "u-erin", chunk_seconds=10.0, offset_s=0.0)
        await push_frames(recorder, talk)
        await recorder.aclose()
        assert (recorder.stats.stored, recorder.stats.failed) == (3, 0)
        await client.aclose()

    asyncio.run(main())
    assert [p.rsplit("/", 1)[1] for p in proxy.lost] == ["0", "0"]  # stored, then found stored twice
    track = track_of(live.recording(), "u-erin")
    assert track["seqs"] == [0, 1, 2] and track["missing"] == []
