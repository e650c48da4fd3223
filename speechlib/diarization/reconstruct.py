"""From clustered local speakers to global speaker turns (pyannote 4.0.7 ``SpeakerDiarization``:
``reconstruct`` → ``to_diarization`` → ``to_annotation``).

Units: ``chunks`` window grid and ``frames`` segmentation frame grid in seconds (see windows.py);
``count`` and activations are per global frame (``aggregate.global_frames``); turns are in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from speechlib.diarization.aggregate import chunk_start_frames, global_frames, num_global_frames
from speechlib.diarization.turns import SpeakerTurn
from speechlib.diarization.windows import FrameGrid

_SEGMENT_PRECISION = 1e-6  # pyannote.core: a segment shorter than this is empty


def clustered_activation_blocks(
    segmentations: np.ndarray,
    hard_clusters: np.ndarray,
    chunks: FrameGrid,
    frames: FrameGrid,
    num_columns: int | None = None,
    block_frames: int = 1 << 12,
) -> Iterator[tuple[int, np.ndarray]]:
    """Per global frame and global cluster, the sum over overlapping windows of the window's activity
    for that cluster (max over the window's local speakers assigned to it), ``block_frames`` global
    frames at a time: yields ``(first_frame, block)`` with ``block`` (frames, num_columns) float32.

    segmentations: (num_windows, num_frames, num_local_speakers) 0/1; hard_clusters:
    (num_windows, num_local_speakers) with -2 for speakers to ignore (inactive / unassigned).
    ``num_columns`` ≥ number of clusters (max(hard_clusters) + 1, the default); extra columns stay 0.
    Only one block is held at a time: memory is O(block_frames × num_columns), whatever the length.
    (The sums are small integers, so the result does not depend on the order of the additions.)
    """
    num_chunks, num_frames, _ = segmentations.shape
    num_clusters = max(int(np.max(hard_clusters, initial=-1)) + 1, 0)
    width = num_clusters if num_columns is None else max(num_columns, num_clusters)
    n = num_global_frames(num_chunks, chunks, frames)
    starts = chunk_start_frames(num_chunks, chunks, frames)
    for a in range(0, n, block_frames):
        b = min(a + block_frames, n)
        out = np.zeros((b - a, width), dtype=np.float32)
        # windows overlapping [a, b): starts are increasing
        lo = int(np.searchsorted(starts, a - num_frames, side="right"))
        hi = int(np.searchsorted(starts, b, side="left"))
        for c in range(lo, hi):
            cluster = hard_clusters[c]
            s = int(starts[c])
            f0, f1 = max(a - s, 0), min(b - s, num_frames)
            if f1 <= f0:
                continue
            for k in np.unique(cluster):
                if k < 0:
                    continue
                seg = segmentations[c, f0:f1][:, cluster == k]
                act = np.nan_to_num(np.max(seg, axis=1).astype(np.float64), nan=0.0)
                out[s + f0 - a : s + f1 - a, k] += act
        yield a, out


def clustered_activations(
    segmentations: np.ndarray,
    hard_clusters: np.ndarray,
    chunks: FrameGrid,
    frames: FrameGrid,
) -> np.ndarray:
    """All of :func:`clustered_activation_blocks` at once: (num_global_frames, num_clusters) float32
    (for tests and small inputs; :func:`reconstruct` streams the blocks)."""
    blocks = [blk for _, blk in clustered_activation_blocks(segmentations, hard_clusters, chunks, frames)]
    if not blocks:
        num_clusters = max(int(np.max(hard_clusters, initial=-1)) + 1, 0)
        return np.zeros((0, num_clusters), dtype=np.float32)
    return np.concatenate(blocks)


def select_speakers(activations: np.ndarray, count: np.ndarray, block_frames: int = 1 << 12) -> np.ndarray:
    """Keep, per frame, the ``count[t]`` clusters with the highest activation. Ties (activations are
    small integers: they are frequent) go to the lower cluster index. pyannote sorts with numpy's
    default unstable ``np.argsort``, whose order among equal values depends on the numpy version and
    the CPU's SIMD support, so its choice among tied clusters is arbitrary; ours is the same on every
    machine. Pads with silent clusters when a frame counts more speakers than there are clusters.
    Returns (num_frames, num_speakers) float32 0/1."""
    count = np.asarray(count).reshape(-1)
    num_frames, num_speakers = activations.shape
    max_count = int(np.max(count)) if count.size else 0
    if num_speakers < max_count:
        activations = np.pad(activations, ((0, 0), (0, max_count - num_speakers)))
        num_speakers = max_count
    n = min(num_frames, count.shape[0])
    binary = np.zeros((n, num_speakers), dtype=np.float32)
    ranks = np.arange(num_speakers)
    for b in range(0, n, block_frames):
        act = activations[b : b + block_frames]
        order = np.argsort(-act, axis=-1, kind="stable")
        keep = (ranks[None, :] < count[b : b + block_frames, None]).astype(np.float32)
        np.put_along_axis(binary[b : b + block_frames], order, keep, axis=1)
    return binary


class RegionBuilder:
    """Active regions of a (num_frames, num_columns) 0/1 array fed in consecutive blocks of rows, as
    pyannote's ``Binarize(onset=0.5, offset=0.5)``: a region starts at the middle of its first active
    frame and ends at the middle of the first inactive frame after it (or of the last frame).
    Holds only the on/off transitions, never the array."""

    def __init__(self, num_columns: int):
        self.previous = np.zeros(num_columns, dtype=bool)
        self.starts: list[np.ndarray] = []  # (frame, column) pairs where a column turns on
        self.ends: list[np.ndarray] = []  # ... and off
        self.num_frames = 0

    def add(self, block: np.ndarray) -> None:
        on = np.asarray(block) > 0.5
        if on.shape[0] == 0:
            return
        d = np.diff(np.vstack([self.previous[None], on]).astype(np.int8), axis=0)
        for sign, store in ((1, self.starts), (-1, self.ends)):
            rows, cols = np.nonzero(d == sign)
            store.append(np.stack([rows + self.num_frames, cols], axis=1))
        self.previous = on[-1].copy()
        self.num_frames += on.shape[0]

    def regions(self, grid: FrameGrid, min_duration_off: float = 0.0) -> list[tuple[float, float, int]]:
        """(start_s, end_s, column) sorted by (start, end, column); same-column gaps shorter than
        ``min_duration_off`` seconds are filled."""
        if self.num_frames == 0:
            return []
        t = grid.middle(np.arange(self.num_frames))
        starts = np.concatenate(self.starts) if self.starts else np.zeros((0, 2), np.int64)
        ends = np.concatenate(self.ends) if self.ends else np.zeros((0, 2), np.int64)
        regions: list[tuple[float, float, int]] = []
        for k in np.unique(starts[:, 1]):
            on_at = np.sort(starts[starts[:, 1] == k, 0])
            off_at = np.sort(ends[ends[:, 1] == k, 0])
            segs = [(t[a], t[b]) for a, b in zip(on_at, off_at, strict=False)]
            if len(on_at) > len(off_at):  # still on at the last frame
                segs.append((t[on_at[-1]], t[self.num_frames - 1]))
            segs = [(a, b) for a, b in segs if b - a > _SEGMENT_PRECISION]
            if min_duration_off > 0.0 and segs:
                merged = [list(segs[0])]
                for a, b in segs[1:]:
                    gap = a - merged[-1][1]
                    if gap <= _SEGMENT_PRECISION or gap < min_duration_off:
                        merged[-1][1] = max(merged[-1][1], b)
                    else:
                        merged.append([a, b])
                segs = [(a, b) for a, b in merged]
            regions += [(float(a), float(b), int(k)) for a, b in segs]
        regions.sort(key=lambda r: (r[0], r[1], r[2]))
        return regions


def binary_to_regions(
    discrete: np.ndarray, grid: FrameGrid, min_duration_off: float = 0.0
) -> list[tuple[float, float, int]]:
    """Active regions (start_s, end_s, column) of a (num_frames, num_columns) 0/1 array (see
    :class:`RegionBuilder`). Sorted by (start, end, column)."""
    builder = RegionBuilder(discrete.shape[1])
    builder.add(discrete)
    return builder.regions(grid, min_duration_off)


@dataclass
class Diarization:
    """Result of global diarization.

    ``turns``: regular diarization (overlapping speech kept); ``exclusive_turns``: one speaker at a
    time (for aligning words); ``speakers``: labels in order, ``clusters[speaker]`` its global cluster
    index (or a padding index ≥ number of centroids); ``centroids``: (num_speakers, dim) embeddings
    per label (zeros for padding speakers), or None.
    """

    turns: list[SpeakerTurn] = field(default_factory=list)
    exclusive_turns: list[SpeakerTurn] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)
    clusters: dict[str, int] = field(default_factory=dict)
    centroids: np.ndarray | None = None


def reconstruct(
    segmentations: np.ndarray,
    hard_clusters: np.ndarray,
    count: np.ndarray,
    chunks: FrameGrid,
    frames: FrameGrid,
    max_speakers: float = np.inf,
    min_duration_off: float = 0.0,
    centroids: np.ndarray | None = None,
) -> Diarization:
    """Clustered local speakers → speaker turns, regular and exclusive.

    segmentations: (num_windows, num_frames, num_local_speakers) 0/1 hard segmentation;
    hard_clusters: (num_windows, num_local_speakers) from clustering (inactive speakers are set to
    -2 here); count: (num_global_frames,) from ``aggregate.speaker_count`` (capped here at
    ``max_speakers``). Speakers are labelled SPEAKER_00, SPEAKER_01, ... in pyannote's order: cluster
    indices sorted as strings (0, 1, 10, 11, 2, ... beyond 10 clusters).
    """
    seg = np.asarray(segmentations)
    hard = np.array(hard_clusters, dtype=np.int64, copy=True)
    hard[np.sum(seg, axis=1) == 0] = -2
    grid = global_frames(chunks, frames)
    count = np.asarray(count).reshape(-1)
    if count.size == 0 or np.max(count) == 0 or np.max(hard) < 0:
        return Diarization(centroids=None if centroids is None else centroids[:0])
    capped = np.minimum(count, max_speakers).astype(np.int8)
    # Stream over blocks of frames: the (frames x clusters) activations are never held whole (hours of
    # audio with many clusters would need gigabytes); each block is selected and turned into on/off
    # transitions right away.
    width = max(int(np.max(hard)) + 1, int(np.max(capped)))
    regular, single = RegionBuilder(width), RegionBuilder(width)
    for a, act in clustered_activation_blocks(seg, hard, chunks, frames, num_columns=width):
        c = capped[a : a + act.shape[0]]
        if c.shape[0] < act.shape[0]:  # count covers fewer frames: pyannote stops there
            act = act[: c.shape[0]]
        if act.shape[0] == 0:
            break
        regular.add(select_speakers(act, c))
        single.add(select_speakers(act, np.minimum(c, 1)))
    regions = regular.regions(grid, min_duration_off)
    exclusive = single.regions(grid, min_duration_off)

    present = sorted({k for _, _, k in regions}, key=str)
    names = {k: f"SPEAKER_{i:02d}" for i, k in enumerate(present)}
    for k in sorted({k for _, _, k in exclusive} - set(names), key=str):
        names[k] = f"SPEAKER_{len(names):02d}"
    speakers = [names[k] for k in sorted(names, key=lambda k: names[k])]
    clusters = {names[k]: int(k) for k in names}
    out_centroids = None
    if centroids is not None:
        dim = centroids.shape[1]
        out_centroids = np.zeros((len(speakers), dim), dtype=np.float64)
        for i, sp in enumerate(speakers):
            if clusters[sp] < centroids.shape[0]:
                out_centroids[i] = centroids[clusters[sp]]
    return Diarization(
        turns=[SpeakerTurn(a, b, names[k]) for a, b, k in regions],
        exclusive_turns=[SpeakerTurn(a, b, names[k]) for a, b, k in exclusive],
        speakers=speakers,
        clusters=clusters,
        centroids=out_centroids,
    )
