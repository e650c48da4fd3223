"""Where pyannote's speaker selection is arbitrary: frames whose count-th and next-best clusters have
equal activation (a tie). pyannote breaks such ties with numpy's unstable ``argsort``, whose order
depends on the numpy build and the CPU; ours gives them to the lower cluster index. Comparisons with
pyannote's output therefore leave those frames out (and say how many there were)."""

from __future__ import annotations

import numpy as np

from speechlib.diarization.aggregate import global_frames, speaker_count
from speechlib.diarization.reconstruct import clustered_activations
from speechlib.diarization.windows import FrameGrid

Turn = tuple[float, float, str]


def tied_frames(
    binary: np.ndarray, hard_clusters: np.ndarray, chunks: FrameGrid, frames: FrameGrid, cap: float = np.inf
) -> np.ndarray:
    """Bool per global frame: the selection of the ``min(count, cap)`` most active clusters is not
    unique. ``binary``: (windows, frames, local speakers) 0/1; ``hard_clusters`` as clustering gives."""
    seg = np.asarray(binary)
    hard = np.array(hard_clusters, dtype=np.int64, copy=True)
    hard[np.sum(seg, axis=1) == 0] = -2
    count = speaker_count(seg, chunks, frames)
    act = clustered_activations(seg, hard, chunks, frames)
    n = min(len(count), len(act))
    c = np.minimum(count[:n], cap).astype(np.int64)
    vals = np.pad(-np.sort(-act[:n], axis=1), ((0, 0), (0, 1)))
    rows = np.arange(n)
    return (c > 0) & (vals[rows, np.maximum(c - 1, 0)] == vals[rows, c])


def tie_intervals(tied: np.ndarray, chunks: FrameGrid, frames: FrameGrid) -> list[tuple[float, float]]:
    """Seconds covered by tied frames (each frame: its middle ± half a frame step)."""
    grid = global_frames(chunks, frames)
    idx = np.flatnonzero(tied)
    if idx.size == 0:
        return []
    mids = grid.middle(idx)
    half = grid.step_s / 2
    out: list[list[float]] = []
    for m in mids:
        a, b = m - half, m + half
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
