"""RoomTranscriptPublisher against autospecs of the installed SDK's LocalParticipant and
TextStreamWriter: every call must match the real signatures (an autospec raises TypeError on any
other), and the topic/attributes are the ones LiveKit front-ends read (written out here)."""

from __future__ import annotations

import asyncio
from unittest.mock import call, create_autospec

import pytest
from livekit import rtc

from agent.publisher import RoomTranscriptPublisher
from agent.segments import LiveSegment


def _segment(segment_id: str, text: str, *, final: bool, speaker: str = "u-ada-1") -> LiveSegment:
    return LiveSegment(
        segment_id=segment_id,
        speaker=speaker,
        speaker_name="Ada",
        track_sid="TR_AMic1",
        start_time=1.25,
        end_time=2.5,
        text=text,
        language="en",
        is_final=final,
    )


def _participant():
    participant = create_autospec(rtc.LocalParticipant, instance=True)
    writers = []

    async def stream_text(**kwargs):
        writer = create_autospec(rtc.TextStreamWriter, instance=True)
        writers.append(writer)
        return writer

    participant.stream_text.side_effect = stream_text
    return participant, writers


@pytest.mark.asyncio
async def test_interim_then_final_as_lk_transcription_streams():
    participant, writers = _participant()
    pub = RoomTranscriptPublisher(participant)
    await pub.publish(_segment("u-ada-1:0", "hello", final=False))
    await pub.publish(_segment("u-ada-1:0", "hello world.", final=True))
    await pub.publish(_segment("u-ada-1:1", "next", final=False, speaker="u-bob-2"))
    await pub.aclose()

    assert participant.stream_text.await_args_list == [
        call(
            topic="lk.transcription",
            sender_identity="u-ada-1",
            attributes={
                "lk.segment_id": "u-ada-1:0",
                "lk.transcribed_track_id": "TR_AMic1",
                "lk.transcription_final": "false",
            },
        ),
        call(
            topic="lk.transcription",
            sender_identity="u-ada-1",
            attributes={
                "lk.segment_id": "u-ada-1:0",
                "lk.transcribed_track_id": "TR_AMic1",
                "lk.transcription_final": "true",
            },
        ),
        call(
            topic="lk.transcription",
            sender_identity="u-bob-2",
            attributes={
                "lk.segment_id": "u-ada-1:1",
                "lk.transcribed_track_id": "TR_AMic1",
                "lk.transcription_final": "false",
            },
        ),
    ]
    # one stream per update: the whole text written once, then closed
    assert [w.write.await_args_list for w in writers] == [
        [call("hello")],
        [call("hello world.")],
        [call("next")],
    ]
    assert [w.aclose.await_count for w in writers] == [1, 1, 1]
    assert (pub.published, pub.failed) == (3, 0)


@pytest.mark.asyncio
async def test_failures_are_counted_never_raised():
    participant, writers = _participant()
    real = participant.stream_text.side_effect
    outcomes = iter([RuntimeError("room disconnected"), None])

    async def flaky(**kwargs):
        err = next(outcomes)
        if err:
            raise err
        return await real(**kwargs)

    participant.stream_text.side_effect = flaky
    pub = RoomTranscriptPublisher(participant)
    await pub.publish(_segment("s0", "lost", final=True))  # does not raise
    await pub.publish(_segment("s1", "sent", final=True))
    assert (pub.published, pub.failed) == (1, 1)
    assert writers[0].write.await_args_list == [call("sent")]


@pytest.mark.asyncio
async def test_a_failed_write_still_closes_the_stream():
    participant, writers = _participant()
    pub = RoomTranscriptPublisher(participant)

    async def stream_text(**kwargs):
        writer = create_autospec(rtc.TextStreamWriter, instance=True)
        writer.write.side_effect = RuntimeError("Stream is not open")
        writers.append(writer)
        return writer

    participant.stream_text.side_effect = stream_text
    await pub.publish(_segment("s0", "x", final=False))
    assert (pub.published, pub.failed) == (0, 1)
    assert writers[0].aclose.await_count == 1


@pytest.mark.asyncio
async def test_a_stuck_room_times_out_and_later_segments_are_ignored_after_close():
    participant, _ = _participant()
    stuck = asyncio.Event()

    async def never(**kwargs):
        await stuck.wait()

    participant.stream_text.side_effect = never
    pub = RoomTranscriptPublisher(participant, timeout=0.2)
    await asyncio.wait_for(pub.publish(_segment("s0", "x", final=True)), 5)
    assert (pub.published, pub.failed) == (0, 1)
    await pub.aclose()
    await pub.publish(_segment("s1", "y", final=True))
    assert participant.stream_text.await_count == 1
