"""From clustered local speakers to global speaker turns (pyannote 4.0.7 ``SpeakerDiarization``:
``reconstruct`` → ``to_diarization`` → ``to_annotation``).

Units: ``chunks`` window grid and ``frames`` segmentation frame grid in seconds (see windows.py);
``count`` and activations are per global frame (``aggregate.global_frames``); turns are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from speechlib.diarization.aggregate import chunk_start_frames, global_frames, num_global_frames
from speechlib.diarization.turns import SpeakerTurn
from speechlib.diarization.windows import FrameGrid

_SEGMENT_PRECISION = 1e-6  # pyannote.core: a segment shorter than this is empty


def clustered_activations(
    segmentations: np.ndarray,
    hard_clusters: np.ndarray,
    chunks: FrameGrid,
    frames: FrameGrid,
) -> np.ndarray:
    """Per global frame and global cluster, the sum over overlapping windows of the window's activity
    for that cluster (max over the window's local speakers assigned to it).

    segmentations: (num_windows, num_frames, num_local_speakers) 0/1; hard_clusters:
    (num_windows, num_local_speakers) with -2 for speakers to ignore (inactive / unassigned).
    Returns (num_global_frames, num_clusters) float32 (num_clusters = max(hard_clusters) + 1).
    Streams over windows: memory is O(num_global_frames × num_clusters).
    """
    num_chunks, num_frames, _ = segmentations.shape
    num_clusters = int(np.max(hard_clusters)) + 1
    n = num_global_frames(num_chunks, chunks, frames)
    out = np.zeros((n, max(num_clusters, 0)), dtype=np.float32)
    starts = chunk_start_frames(num_chunks, chunks, frames)
    for c in range(num_chunks):
        cluster = hard_clusters[c]
        s = starts[c]
        for k in np.unique(cluster):
            if k < 0:
                continue
            seg = np.nan_to_num(np.max(segmentations[c][:, cluster == k], axis=1).astype(np.float64), nan=0.0)
            out[s : s + num_frames, k] += seg
    return out


def select_speakers(activations: np.ndarray, count: np.ndarray, block_frames: int = 1 << 12) -> np.ndarray:
    """Keep, per frame, the ``count[t]`` clusters with the highest activation (pyannote's order for
    ties: ``np.argsort`` of the negated float32 activations). Pads with silent clusters when a frame
    counts more speakers than there are clusters. Returns (num_frames, num_speakers) float32 0/1."""
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
        order = np.argsort(-act, axis=-1)
        keep = (ranks[None, :] < count[b : b + block_frames, None]).astype(np.float32)
        np.put_along_axis(binary[b : b + block_frames], order, keep, axis=1)
    return binary


def binary_to_regions(
    discrete: np.ndarray, grid: FrameGrid, min_duration_off: float = 0.0
) -> list[tuple[float, float, int]]:
    """Active regions (start_s, end_s, column) of a (num_frames, num_columns) 0/1 array, as pyannote's
    ``Binarize(onset=0.5, offset=0.5)``: a region starts at the middle of its first active frame and
    ends at the middle of the first inactive frame after it (or of the last frame). Same-column gaps
    shorter than ``min_duration_off`` seconds are filled. Sorted by (start, end, column)."""
    num_frames, num_columns = discrete.shape
    if num_frames == 0:
        return []
    t = grid.middle(np.arange(num_frames))
    regions: list[tuple[float, float, int]] = []
    for k in range(num_columns):
        on = discrete[:, k] > 0.5
        if not on.any():
            continue
        d = np.diff(on.astype(np.int8))
        starts = list(np.flatnonzero(d == 1) + 1)
        ends = list(np.flatnonzero(d == -1) + 1)
        if on[0]:
            starts.insert(0, 0)
        segs = [(t[a], t[b]) for a, b in zip(starts, ends, strict=False)]
        if on[-1]:
            segs.append((t[starts[-1]], t[num_frames - 1]))
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
        regions += [(float(a), float(b), k) for a, b in segs]
    regions.sort(key=lambda r: (r[0], r[1], r[2]))
    return regions


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
    activations = clustered_activations(seg, hard, chunks, frames)
    regions = binary_to_regions(select_speakers(activations, capped), grid, min_duration_off)
    exclusive = binary_to_regions(select_speakers(activations, np.minimum(capped, 1)), grid, min_duration_off)

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
