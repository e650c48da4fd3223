"""Speaker turns and word/segment → speaker alignment. Times are seconds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker's turn: [start_s, end_s) in seconds, speaker label "SPEAKER_00", ..."""

    start_s: float
    end_s: float
    speaker: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _times(item: Any) -> tuple[float, float]:
    """(start_s, end_s) of a segment/word given as an object with start_s/end_s or start/end
    attributes, a mapping with those keys, or a (start, end) pair — all in seconds."""
    if isinstance(item, dict):
        for a, b in (("start_s", "end_s"), ("start", "end")):
            if a in item and b in item:
                return float(item[a]), float(item[b])
        raise KeyError("segment needs start_s/end_s or start/end")
    for a, b in (("start_s", "end_s"), ("start", "end")):
        if hasattr(item, a) and hasattr(item, b):
            return float(getattr(item, a)), float(getattr(item, b))
    start, end = item
    return float(start), float(end)


def assign_speakers(items: Iterable[Any], turns: Sequence[SpeakerTurn]) -> list[str | None]:
    """Speaker of each ASR segment/word (times in seconds): the speaker whose turns overlap it the
    longest in total (use the *exclusive* diarization's turns); with no overlap, the speaker of the
    nearest turn (smallest gap; ties → the earlier turn); None when there are no turns.
    Equal overlaps go to the speaker whose first overlapping turn comes first."""
    items = list(items)
    if not turns:
        return [None] * len(items)
    ordered = sorted(turns, key=lambda t: (t.start_s, t.end_s))
    starts = np.array([t.start_s for t in ordered])
    ends = np.array([t.end_s for t in ordered])
    speakers = [t.speaker for t in ordered]
    # turns sorted by start; the longest turn bounds how far back an overlapping turn can start
    max_len = float(np.max(ends - starts)) if len(ordered) else 0.0
    out: list[str | None] = []
    for item in items:
        s, e = _times(item)
        if e < s:
            s, e = e, s
        lo = int(np.searchsorted(starts, s - max_len, side="left"))
        hi = int(np.searchsorted(starts, e, side="right"))
        totals: dict[str, float] = {}
        for i in range(lo, hi):
            ov = min(e, ends[i]) - max(s, starts[i])
            if ov > 0:
                totals[speakers[i]] = totals.get(speakers[i], 0.0) + ov
        if totals:
            best = max(totals.values())
            out.append(next(sp for sp, v in totals.items() if v == best))
            continue
        gaps = np.maximum(0.0, np.maximum(starts - e, s - ends))
        out.append(speakers[int(np.argmin(gaps))])
    return out
