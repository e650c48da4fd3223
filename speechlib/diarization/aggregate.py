"""Overlap-add aggregation of per-window frame scores (pyannote ``Inference.aggregate``) and the
frame-level speaker count the diarization pipeline derives from it.

Units: ``chunks`` is the window grid in seconds (start, step 1 s, duration 10 s); ``frames`` is the
segmentation frame grid in seconds (step 0.016875 s, duration 0.0619375 s); outputs are indexed by
global frame on ``FrameGrid(chunks.start_s, frames.step_s, frames.duration_s)``.
"""

from __future__ import annotations

import numpy as np

from speechlib.diarization.windows import FrameGrid


def global_frames(chunks: FrameGrid, frames: FrameGrid) -> FrameGrid:
    """The global frame grid (seconds) aggregated outputs live on."""
    return FrameGrid(start_s=chunks.start_s, step_s=frames.step_s, duration_s=frames.duration_s)


def num_global_frames(num_chunks: int, chunks: FrameGrid, frames: FrameGrid) -> int:
    """Number of global frames covering ``num_chunks`` windows."""
    grid = global_frames(chunks, frames)
    end = chunks.start_s + chunks.duration_s + (num_chunks - 1) * chunks.step_s
    return grid.closest_frame(end + 0.5 * grid.duration_s) + 1


def chunk_start_frames(num_chunks: int, chunks: FrameGrid, frames: FrameGrid) -> np.ndarray:
    """Global frame index where each window's first frame lands (int64, shape (num_chunks,))."""
    grid = global_frames(chunks, frames)
    return np.array(
        [
            grid.closest_frame((chunks.start_s + c * chunks.step_s) + 0.5 * grid.duration_s)
            for c in range(num_chunks)
        ],
        dtype=np.int64,
    )


def aggregate(
    scores: np.ndarray,
    chunks: FrameGrid,
    frames: FrameGrid,
    warm_up: tuple[float, float] = (0.0, 0.0),
    epsilon: float = 1e-12,
    hamming: bool = False,
    missing: float = np.nan,
    skip_average: bool = False,
) -> np.ndarray:
    """Aggregate (num_chunks, num_frames_per_chunk, num_classes) window scores into
    (num_global_frames, num_classes) float32, as ``Inference.aggregate`` does: each window's frames
    are added at their global position (weighted by a Hamming window if ``hamming``, and by ``epsilon``
    within ``warm_up`` seconds of either edge), NaN scores are ignored, and the sum is divided by the
    total weight unless ``skip_average``. Frames no window covers with a non-NaN score get ``missing``.
    Accumulates in float32 window by window, like pyannote (same rounding).
    """
    scores = np.asarray(scores)
    num_chunks, num_frames_per_chunk, num_classes = scores.shape
    window = (np.hamming(num_frames_per_chunk) if hamming else np.ones(num_frames_per_chunk)).reshape(-1, 1)
    warm = np.ones((num_frames_per_chunk, 1))
    left = round(warm_up[0] / chunks.duration_s * num_frames_per_chunk)
    warm[:left] = epsilon
    right = round(warm_up[1] / chunks.duration_s * num_frames_per_chunk)
    warm[num_frames_per_chunk - right :] = epsilon

    n = num_global_frames(num_chunks, chunks, frames)
    total = np.zeros((n, num_classes), dtype=np.float32)
    count = np.zeros((n, num_classes), dtype=np.float32)
    seen = np.zeros((n, num_classes), dtype=np.float32)
    starts = chunk_start_frames(num_chunks, chunks, frames)
    for c in range(num_chunks):
        score = scores[c]
        mask = 1 - np.isnan(score)
        score = np.nan_to_num(score, nan=0.0)
        s = starts[c]
        e = s + num_frames_per_chunk
        total[s:e] += score * mask * window * warm
        count[s:e] += mask * window * warm
        seen[s:e] = np.maximum(seen[s:e], mask)
    average = total if skip_average else total / np.maximum(count, epsilon)
    average[seen == 0.0] = missing
    return average


def speaker_count(
    binary_segmentations: np.ndarray,
    chunks: FrameGrid,
    frames: FrameGrid,
) -> np.ndarray:
    """Instantaneous number of speakers per global frame (uint8, shape (num_global_frames,)).

    binary_segmentations: (num_chunks, num_frames, num_local_speakers) 0/1. Per window, count active
    local speakers per frame; average over the windows covering each global frame (no Hamming, no
    warm-up); round to the nearest integer (ties to even, as ``np.rint``).
    """
    seg = np.asarray(binary_segmentations, dtype=np.float32)
    num_chunks, num_frames, _ = seg.shape
    per_frame = np.sum(seg, axis=-1, dtype=np.float64)  # (C, F) small integers, exact
    n = num_global_frames(num_chunks, chunks, frames)
    total = np.zeros(n, dtype=np.float64)
    covered = np.zeros(n, dtype=np.float64)
    starts = chunk_start_frames(num_chunks, chunks, frames)
    for c in range(num_chunks):
        s = starts[c]
        total[s : s + num_frames] += per_frame[c]
        covered[s : s + num_frames] += 1.0
    # pyannote sums in float32 and divides in float32; the sums are small integers (exact either way).
    avg = total.astype(np.float32) / np.maximum(covered.astype(np.float32), np.float32(1e-12))
    avg[covered == 0] = 0.0
    return np.rint(avg).astype(np.uint8)
