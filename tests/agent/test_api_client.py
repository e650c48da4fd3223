"""agent.api_client against the real api (uvicorn on a loopback port): the job-token exchange, the
agent token's renewal (and the fall-back to the job token when a renewal is refused), a forged job
token refused at once, segments posted in the background with interims coalesced, and an api
outage during which no final is lost."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from agent.api_client import (
    AgentApiClient,
    AgentApiError,
    AgentAuthError,
    ApiRejectedError,
    ApiSegmentPublisher,
    ApiUnavailableError,
)
from agent.segments import LiveSegment, TranscriptPublisher
from tests.agent.api_helpers import (
    CountingTransport,
    FlakyProxyTransport,
    RestartableApi,
    live_api_settings,
    live_session,
)
from tests.api.live_helpers import LIVEKIT_SECRET, job_token, room_of

FAST_RETRIES = dict(retry_attempts=3, retry_min_wait=0.05, retry_max_wait=0.5)


def api_errors(operation: str) -> float:
    return REGISTRY.get_sample_value("intrascribe_agent_api_errors_total", {"operation": operation}) or 0.0


def seg(
    segment_id: str, text: str, *, final: bool, start: float = 1.0, speaker: str = "u-alice"
) -> LiveSegment:
    return LiveSegment(
        segment_id=segment_id,
        speaker=speaker,
        speaker_name="Alice",
        track_sid="TR_alice",
        start_time=start,
        end_time=start + 1.5,
        text=text,
        language="en",
        is_final=final,
    )


def posted_segments(transport: CountingTransport, session_id: str) -> list[list[dict]]:
    """The ``segments`` lists of every POST .../segments the client sent."""
    path = f"/api/v1/realtime/sessions/{session_id}/segments"
    return [
        json.loads(body)["segments"] for method, p, body in transport.sent if method == "POST" and p == path
    ]


@pytest.fixture
def api(tmp_path):
    with RestartableApi(live_api_settings(tmp_path, agent_token_ttl_seconds=60)) as server:
        yield server


def test_exchange_renewal_and_forged_token(api):
    live = live_session(api.url)

    async def main():
        client = AgentApiClient(api.url, live.job_token, renew_before_s=57, **FAST_RETRIES)
        token = await client.start()
        assert token.session_id == live.session_id == client.session_id
        assert token.room_name == live.room
        assert client.identity == "agent-AJ_test"
        assert 55 <= token.expires_in <= 60
        # renewed 0.9 x 60 s before expiry, i.e. after ~6 s, with the agent token itself
        deadline = time.monotonic() + 20
        while client.renewals < 1:
            assert time.monotonic() < deadline, "the token was not renewed"
            await asyncio.sleep(0.2)
        assert client.token is not None and client.token.access_token != token.access_token
        status = await client.patch_status(recording=True, participants=[])
        assert status["recording"] is True and status["session_id"] == live.session_id
        await client.aclose()

        # a job token signed with another secret: refused at once, with the api's reason
        before = api_errors("token")
        forged = AgentApiClient(api.url, job_token(live.room, secret=LIVEKIT_SECRET[::-1]), **FAST_RETRIES)
        with pytest.raises(AgentAuthError, match="401") as e:
            await forged.start()
        assert e.value.status_code == 401
        assert api_errors("token") == before + 1  # not retried
        await forged.aclose()

        # a genuine job token for the room of a session this api does not have
        orphan = AgentApiClient(api.url, job_token(room_of(uuid.uuid4())), **FAST_RETRIES)
        with pytest.raises(AgentAuthError, match="session not found") as e:
            await orphan.start()
        assert e.value.status_code == 404
        await orphan.aclose()

    asyncio.run(main())


def test_refused_renewal_falls_back_to_the_job_token(tmp_path):
    """Past MAX_TOKEN_LIFETIME_SECONDS after the first exchange the api refuses renewals with the
    agent token: the client presents its (still valid) job token instead. The session and user are
    made on an app with the default lifetime; the agent talks to one with a 1 s renewal window."""
    settings = live_api_settings(tmp_path, agent_token_ttl_seconds=60)
    with RestartableApi(settings) as users_api:
        live = live_session(users_api.url)
        with RestartableApi(settings.model_copy(update={"max_token_lifetime_seconds": 1})) as agent_api:

            async def main():
                client = AgentApiClient(agent_api.url, live.job_token, renew_before_s=1, **FAST_RETRIES)
                first = await client.start()
                await asyncio.sleep(2.5)
                before = api_errors("token")
                renewed = await client.renew()
                assert api_errors("token") == before + 1  # the agent token's renewal: 401
                assert renewed.access_token != first.access_token
                assert renewed.session_id == live.session_id
                await client.patch_status(recording=False)  # the new token works
                await client.aclose()

            asyncio.run(main())


def test_segments_coalesced_and_final_wins(api):
    live = live_session(api.url)
    transport = CountingTransport()

    async def main():
        client = AgentApiClient(api.url, live.job_token, transport=transport, **FAST_RETRIES)
        await client.start()
        publisher = ApiSegmentPublisher(client)
        assert isinstance(publisher, TranscriptPublisher)
        # three interims of one utterance in a row: only the newest is pending when the sender runs
        for text in ("good", "good morning", "good morning every"):
            await publisher.publish(seg("s1", text, final=False))
        await publisher.publish(seg("s2", "hello", final=False, start=4.0, speaker="u-bob"))
        await asyncio.sleep(0)  # (publish never waited: the sender starts only now)
        while publisher.pending:
            await asyncio.sleep(0.01)
        await publisher.publish(seg("s1", "Good morning everyone.", final=True))
        await publisher.publish(seg("s1", "good morning everyone and", final=False))  # late interim: ignored
        await publisher.publish(seg("s2", "Hello there.", final=True, start=4.0, speaker="u-bob"))
        await publisher.aclose()
        assert publisher.dropped == 0
        await client.aclose()

    asyncio.run(main())
    sent = [
        (s["segment_id"], s["text"], s["is_final"])
        for batch in posted_segments(transport, live.session_id)
        for s in batch
    ]
    assert ("s1", "good", False) not in sent and ("s1", "good morning", False) not in sent
    assert ("s1", "good morning everyone and", False) not in sent
    assert sent[:2] == [("s1", "good morning every", False), ("s2", "hello", False)]
    assert sorted(sent[2:]) == [("s1", "Good morning everyone.", True), ("s2", "Hello there.", True)]
    stored = {s["segment_id"]: (s["text"], s["is_final"], s["speaker"]) for s in live.transcription()}
    assert stored == {
        "s1": ("Good morning everyone.", True, "u-alice"),
        "s2": ("Hello there.", True, "u-bob"),
    }


def test_api_outage_loses_no_final(api):
    """The api stops while segments are published and comes back on the same port: every final
    arrives; pending interims of an utterance whose final came meanwhile are never sent."""
    live = live_session(api.url)
    transport = CountingTransport()

    async def main():
        client = AgentApiClient(api.url, live.job_token, transport=transport, **FAST_RETRIES)
        await client.start()
        publisher = ApiSegmentPublisher(client, close_timeout=30)
        await publisher.publish(seg("u0", "Before the outage.", final=True, start=0.5))
        while publisher.pending:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(api.stop)
        errors_before = api_errors("segments")
        for i in range(1, 41):
            await publisher.publish(seg(f"u{i}", f"interim {i}", final=False, start=i * 2.0))
            await publisher.publish(seg(f"u{i}", f"interim {i} longer", final=False, start=i * 2.0))
            await publisher.publish(seg(f"u{i}", f"Final number {i}.", final=True, start=i * 2.0))
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # the sender keeps failing meanwhile
        assert api_errors("segments") > errors_before
        await asyncio.to_thread(api.start)
        await publisher.aclose()
        assert publisher.dropped == 0
        await client.aclose()

    asyncio.run(main())
    stored = {s["segment_id"]: (s["text"], s["is_final"]) for s in live.transcription()}
    expected = {"u0": ("Before the outage.", True)} | {
        f"u{i}": (f"Final number {i}.", True) for i in range(1, 41)
    }
    assert stored == expected
    sent_interims = {
        s["text"] for batch in posted_segments(transport, live.session_id) for s in batch if not s["is_final"]
    }
    assert sent_interims == set()  # each final replaced its pending interims before they were sent
    assert all(len(batch) <= 100 for batch in posted_segments(transport, live.session_id))


def test_rejected_calls_are_not_retried(api):
    """A 4xx other than 401/408/429 is the api's final word: raised once, with its detail."""
    live = live_session(api.url)

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        before = api_errors("chunk")
        with pytest.raises(ApiRejectedError) as e:
            await client.put_chunk("u-alice", 0, b"not audio at all", 0.0)
        assert e.value.status_code == 415 and "not_audio" in str(e.value.detail)
        assert api_errors("chunk") == before + 1
        assert await client.finalize() is None  # nothing recorded yet: 409 nothing_recorded
        await client.aclose()

    asyncio.run(main())


def test_a_401_re_exchanges_the_job_token(tmp_path):
    """The api restarts with another token issuer: the agent token it holds is refused (401) on the
    next call; the client exchanges its job token again, once, and the call goes through."""
    settings = live_api_settings(tmp_path)
    with RestartableApi(settings) as users_api:
        live = live_session(users_api.url)
        agent_api = RestartableApi(settings)
        with agent_api:

            async def main():
                client = AgentApiClient(agent_api.url, live.job_token, **FAST_RETRIES)
                first = await client.start()
                await asyncio.to_thread(agent_api.stop)
                agent_api.settings = settings.model_copy(update={"jwt_issuer": "intrascribe-rotated"})
                await asyncio.to_thread(agent_api.start)
                before = (api_errors("status"), api_errors("token"))
                status = await client.patch_status(recording=True)
                assert status["recording"] is True
                assert (api_errors("status"), api_errors("token")) == (before[0] + 1, before[1])
                assert client.token is not None and client.token.access_token != first.access_token
                await client.aclose()

            asyncio.run(main())


def test_pending_segments_are_bounded_finals_kept(api):
    """While the api is away at most ``max_pending`` segment ids wait: the oldest interims go first,
    finals stay."""
    live = live_session(api.url)

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        publisher = ApiSegmentPublisher(client, max_pending=5, close_timeout=30)
        await asyncio.to_thread(api.stop)
        await publisher.publish(seg("f0", "In flight.", final=True, start=0.0))
        await asyncio.sleep(0.3)  # the sender holds f0 and retries
        dropped_before = api_errors("segments_dropped")
        for i in range(1, 4):
            await publisher.publish(seg(f"i{i}", f"interim {i}", final=False, start=i))
        for i in range(1, 5):
            await publisher.publish(seg(f"f{i}", f"Final {i}.", final=True, start=10.0 + i))
        await publisher.publish(
            seg("i4", "interim 4", final=False, start=20.0)
        )  # the oldest interim (i3) goes
        assert publisher.pending == 5 and publisher.dropped == 3
        assert api_errors("segments_dropped") == dropped_before + 3
        await asyncio.to_thread(api.start)
        await publisher.aclose()
        await client.aclose()

    asyncio.run(main())
    stored = {s["segment_id"]: s["is_final"] for s in live.transcription()}
    assert stored == {"f0": True, "f1": True, "f2": True, "f3": True, "f4": True, "i4": False}


def test_transient_answers_are_retried_a_bounded_number_of_times(api):
    """5xx, 408 and 429 (from a proxy in front of the api) are retried with backoff; past the
    attempts the call raises ApiUnavailableError naming the status."""
    live = live_session(api.url)
    proxy = FlakyProxyTransport()

    async def main():
        client = AgentApiClient(api.url, live.job_token, transport=proxy, **FAST_RETRIES)  # 3 attempts
        proxy.failures = [503, 429]
        await client.start()
        assert proxy.answered == 1
        before = api_errors("status")
        proxy.failures = [502, 408]
        assert (await client.patch_status(recording=True))["recording"] is True
        assert api_errors("status") == before + 2
        proxy.failures = [503, 503, 503, 503]
        with pytest.raises(ApiUnavailableError, match="503") as e:
            await client.patch_status(recording=False)
        assert e.value.status_code == 503 and proxy.failures == [503]  # exactly 3 attempts
        await client.aclose()

    asyncio.run(main())


def test_start_waits_for_the_api_and_calls_wait_for_start(api):
    """A job that begins while the api is down: start(wait=True) keeps trying; the publisher's
    segments wait meanwhile and arrive once the api is back."""
    live = live_session(api.url)

    async def main():
        await asyncio.to_thread(api.stop)
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        starting = asyncio.create_task(client.start(wait=True))
        publisher = ApiSegmentPublisher(client)
        await publisher.publish(seg("early", "Said before the api was up.", final=True))
        await asyncio.sleep(1.0)
        assert not starting.done() and publisher.posted == 0
        await asyncio.to_thread(api.start)
        token = await asyncio.wait_for(starting, 30)
        assert token.session_id == live.session_id
        await publisher.aclose()
        assert publisher.posted == 1 and publisher.dropped == 0
        await client.aclose()

        # never started: a clear error, not a request without credentials
        idle = AgentApiClient(api.url, live.job_token)
        with pytest.raises(AgentApiError, match="start"):
            await idle.get_recording()
        await idle.aclose()

    asyncio.run(main())
    assert [s["segment_id"] for s in live.transcription()] == ["early"]


def test_a_refused_segment_does_not_lose_its_batch(api):
    """The api refuses a batch for one invalid segment (422): the others are posted one by one and
    stored; only the invalid one is dropped (and counted)."""
    live = live_session(api.url)

    async def main():
        client = AgentApiClient(api.url, live.job_token, **FAST_RETRIES)
        await client.start()
        publisher = ApiSegmentPublisher(client)
        before = api_errors("segments_dropped")
        await publisher.publish(seg("a", "First.", final=True, start=1.0))
        await publisher.publish(seg("not valid!", "Bad id.", final=True, start=2.0))  # [A-Za-z0-9._:-] only
        await publisher.publish(seg("c", "Third.", final=True, start=3.0))
        await publisher.aclose()
        assert (publisher.posted, publisher.dropped) == (2, 1)
        assert api_errors("segments_dropped") == before + 1
        await client.aclose()

    asyncio.run(main())
    assert [s["segment_id"] for s in live.transcription()] == ["a", "c"]
