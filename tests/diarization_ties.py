"""Where pyannote's speaker selection is arbitrary, as pyannote's own run recorded it
(``export_scripts.reference_diarization.record_selection``: frames whose ``count``-th and next most
active clusters have equal activation, decided on pyannote's activations and count). pyannote
breaks such ties with numpy's unstable ``argsort``, whose order depends on the numpy build and the
CPU; ours gives them to the lower cluster index. Comparisons with pyannote's output leave those
frames out (and say how many there were); every other frame must agree."""

from __future__ import annotations

import numpy as np

from tests.diarization_helpers import Turn, frame_der


def tie_intervals(
    tied: np.ndarray, start_s: float, step_s: float, duration_s: float
) -> list[tuple[float, float]]:
    """Seconds covered by the tied frames of a sliding window (start, step, duration in seconds):
    each frame is its middle ± half a step, consecutive ones merged."""
    idx = np.flatnonzero(np.asarray(tied, bool))
    out: list[list[float]] = []
    for m in start_s + duration_s / 2 + idx * step_s:
        a, b = m - step_s / 2, m + step_s / 2
        if out and a <= out[-1][1] + 1e-9:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def cut(turns: list[Turn], intervals: list[tuple[float, float]]) -> list[Turn]:
    """``turns`` with the time inside ``intervals`` removed (turns split where needed)."""
    out: list[Turn] = []
    for start, end, speaker in turns:
        pieces = [(start, end)]
        for a, b in intervals:
            if b <= start or a >= end:
                continue
            pieces = [p for s, e in pieces for p in ((s, min(e, a)), (max(s, b), e)) if p[1] - p[0] > 1e-9]
        out += [(s, e, speaker) for s, e in pieces]
    return out


def der_with_and_without_ties(
    theirs: list[Turn], ours: list[Turn], tied: np.ndarray, grid: tuple[float, float, float]
) -> tuple[float, float, float]:
    """(DER on all frames, DER without pyannote's tied frames, fraction of frames tied) between
    pyannote's turns and ours; ``grid`` = (start, step, duration) s of ``tied``'s frames."""
    skip = tie_intervals(tied, *grid)
    tied = np.asarray(tied, bool)
    return frame_der(theirs, ours), frame_der(cut(theirs, skip), cut(ours, skip)), float(tied.mean())
