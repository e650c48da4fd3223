"""Live segments into the LiveKit room as ``lk.transcription`` text streams.

The same wire format livekit-agents uses for its own user transcriptions
(``voice/room_io/_output.py``, non-delta mode): one text stream per update of a segment, opened with
``LocalParticipant.stream_text(topic="lk.transcription", sender_identity=<speaker>, attributes=...)``,
the segment's whole text written once, then closed. The attributes name the segment (an interim and
its final share ``lk.segment_id``, so front-ends replace the interim in place), the transcribed track
and whether this update is final. Standard LiveKit front-ends (``useTranscriptions`` and friends) show
them under the speaker's name.

A failure to publish (room gone, SDK error, timeout) is logged and counted, never raised: the room
copy is a convenience; the api copy (``ApiSegmentPublisher``) is the record.
"""

from __future__ import annotations

import asyncio
import logging

from livekit import rtc
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)

from agent import metrics
from agent.segments import LiveSegment

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = (
    5.0  # one segment's stream (open, write, close); a stuck SDK call must not stall the pipeline
)


def transcription_attributes(segment: LiveSegment) -> dict[str, str]:
    """The ``lk.transcription`` stream attributes of one segment update."""
    return {
        ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: segment.segment_id,
        ATTRIBUTE_TRANSCRIPTION_TRACK_ID: segment.track_sid,
        ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if segment.is_final else "false",
    }


class RoomTranscriptPublisher:
    """A :class:`agent.segments.TranscriptPublisher` writing to the room through ``local_participant``.

    ``published`` / ``failed`` count the segment updates sent / lost. Calls are serialized so an
    interim and its final reach the room in the order they were produced."""

    def __init__(self, local_participant: rtc.LocalParticipant, *, timeout: float = PUBLISH_TIMEOUT_S):
        self._participant = local_participant
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._closed = False
        self.published = 0
        self.failed = 0

    async def publish(self, segment: LiveSegment) -> None:
        if self._closed:
            return
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    writer = await self._participant.stream_text(
                        topic=TOPIC_TRANSCRIPTION,
                        sender_identity=segment.speaker,
                        attributes=transcription_attributes(segment),
                    )
                    try:
                        await writer.write(segment.text)
                    finally:
                        await writer.aclose()
            except Exception as e:  # noqa: BLE001 - the room copy never breaks the pipeline
                self.failed += 1
                metrics.ROOM_PUBLISH_ERRORS.inc()
                log.warning(
                    "could not publish segment %s of %s to the room (%d lost so far): %r",
                    segment.segment_id,
                    segment.speaker,
                    self.failed,
                    e,
                )
            else:
                self.published += 1

    async def aclose(self) -> None:
        """Later segments are ignored; one being sent finishes first."""
        self._closed = True
        async with self._lock:
            pass
