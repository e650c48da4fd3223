"""What the agent's tests share: settings that ignore the developer's ``.env``, a recorder publisher,
and the ASR fixture's clips laid out as per-speaker tracks (tests/api/sync_helpers.py)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from agent.config import AgentSettings
from agent.segments import LiveSegment
from speechlib.interfaces import SAMPLE_RATE

SEGMENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def make_agent_settings(triton_grpc_url: str, **overrides) -> AgentSettings:
    """``AgentSettings`` for a test: defaults plus ``overrides``, never the developer's ``.env``."""
    return AgentSettings(_env_file=None, triton_grpc_url=triton_grpc_url, **overrides)


@dataclass
class RecordingPublisher:
    """A ``TranscriptPublisher`` that keeps every segment it gets, with the time it got it."""

    segments: list[LiveSegment] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    closed: bool = False

    async def publish(self, segment: LiveSegment) -> None:
        self.segments.append(segment)
        self.received_at.append(time.monotonic())

    async def aclose(self) -> None:
        self.closed = True

    @property
    def finals(self) -> list[LiveSegment]:
        return [s for s in self.segments if s.is_final]

    @property
    def interims(self) -> list[LiveSegment]:
        return [s for s in self.segments if not s.is_final]

    def of(self, speaker: str) -> list[LiveSegment]:
        return [s for s in self.segments if s.speaker == speaker]


class FailingPublisher:
    """A ``TranscriptPublisher`` whose every publish raises (a broken room or api connection)."""

    def __init__(self) -> None:
        self.calls = 0

    async def publish(self, segment: LiveSegment) -> None:
        self.calls += 1
        raise ConnectionError("publisher is broken")

    async def aclose(self) -> None:
        pass


def silence(seconds: float) -> np.ndarray:
    """Whole 10 ms frames of digital silence."""
    return np.zeros(SAMPLE_RATE // 100 * round(seconds * 100), np.float32)


def track(*parts: np.ndarray | float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A track from clips (arrays) and silences (seconds): the waveform and each clip's (start_s, end_s)."""
    pieces, spans, pos = [], [], 0
    for part in parts:
        x = silence(part) if isinstance(part, int | float) else np.asarray(part, np.float32)
        if not isinstance(part, int | float):
            spans.append((pos / SAMPLE_RATE, (pos + x.size) / SAMPLE_RATE))
        pieces.append(x)
        pos += x.size
    return np.concatenate(pieces), spans
