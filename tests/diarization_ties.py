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
    """Seconds decided by the tied frames of a sliding window (start, step, duration in seconds).
    Turns start and end at frame middles (a speaker turns on at the middle of its first active frame
    and off at the middle of the first inactive one), so frame i's choice holds from its middle to
    the next frame's middle: [middle_i, middle_i + step). Consecutive ones are merged."""
    idx = np.flatnonzero(np.asarray(tied, bool))
    out: list[list[float]] = []
    for m in start_s + duration_s / 2 + idx * step_s:
        a, b = m, m + step_s
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


def frames_of(turns: list[Turn], grid: tuple[float, float, float], n: int) -> tuple[np.ndarray, list[str]]:
    """(n, speakers) bool on the frames of ``grid`` (start, step, duration s): a turn covers the frames
    whose middle lies in [start, end); one ending at the last frame's middle covers it."""
    t = grid[0] + grid[2] / 2 + grid[1] * np.arange(n)
    names = sorted({s for _, _, s in turns})
    out = np.zeros((n, max(len(names), 1)), bool)
    for start, end, speaker in turns:
        on = (t >= start - 1e-6) & (t < end - 1e-6)
        if n and end >= t[-1] - 1e-6:
            on[-1] = True
        out[on, names.index(speaker)] = True
    return out, names


def untied_frames_differing(theirs: list[Turn], ours: list[Turn], tied: np.ndarray, grid) -> int:
    """Frames, outside pyannote's ties, whose speakers differ between the two diarizations (speakers
    matched one to one by the most frames in common): the real disagreements."""
    from scipy.optimize import linear_sum_assignment

    tied = np.asarray(tied, bool)
    a, _ = frames_of(theirs, grid, len(tied))
    b, _ = frames_of(ours, grid, len(tied))
    k = max(a.shape[1], b.shape[1])
    a, b = np.pad(a, ((0, 0), (0, k - a.shape[1]))), np.pad(b, ((0, 0), (0, k - b.shape[1])))
    rows, cols = linear_sum_assignment(a.T.astype(np.int64) @ b.astype(np.int64), maximize=True)
    differ = (a[:, rows] != b[:, cols]).any(axis=1)
    return int((differ & ~tied).sum())


def der_with_and_without_ties(
    theirs: list[Turn], ours: list[Turn], tied: np.ndarray, grid: tuple[float, float, float]
) -> tuple[float, float, float]:
    """(DER on all frames, DER without pyannote's tied frames, fraction of frames tied) between
    pyannote's turns and ours; ``grid`` = (start, step, duration) s of ``tied``'s frames."""
    skip = tie_intervals(tied, *grid)
    tied = np.asarray(tied, bool)
    return frame_der(theirs, ours), frame_der(cut(theirs, skip), cut(ours, skip)), float(tied.mean())
