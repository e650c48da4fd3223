"""What the agent produces: one live segment record, and where it goes.

``LiveSegment.to_api()`` is the live segment of docs/interfaces.md ("Live segment"); a
:class:`TranscriptPublisher` is anything that takes segments (the room's ``lk.transcription`` text
streams, the api, a test's recorder). Pipelines get their publishers injected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class LiveSegment:
    """One interim or final result of one participant's utterance. Times are seconds from the
    session start. An utterance keeps its ``segment_id`` from its first interim to its final."""

    segment_id: str
    speaker: str  # participant identity
    speaker_name: str | None
    track_sid: str  # the transcribed track (lk.transcribed_track_id)
    start_time: float
    end_time: float
    text: str
    language: str | None
    is_final: bool
    emotion: str | None = None
    event: str | None = None
    confidence_score: float | None = None
    words: tuple[dict[str, Any], ...] = field(default=())

    def to_api(self) -> dict[str, Any]:
        """The body element of ``POST /api/v1/realtime/sessions/{id}/segments``."""
        return {
            "segment_id": self.segment_id,
            "speaker": self.speaker,
            "speaker_name": self.speaker_name,
            "start_time": round(self.start_time, 3),
            "end_time": round(self.end_time, 3),
            "text": self.text,
            "language": self.language,
            "is_final": self.is_final,
            "confidence_score": self.confidence_score,
            "emotion": self.emotion,
            "event": self.event,
            "words": list(self.words),
        }


@runtime_checkable
class TranscriptPublisher(Protocol):
    """Takes each segment as it is produced (interims, then the final of the same ``segment_id``)."""

    async def publish(self, segment: LiveSegment) -> None: ...

    async def aclose(self) -> None: ...
