"""Per (window, local speaker) masks for speaker embeddings, as ``SpeakerDiarization.get_embeddings``
derives them, and which local speakers are inactive.

Units: masks are per segmentation frame (589 per 10 s window); ``min_num_samples`` is audio samples.
"""

from __future__ import annotations

import math

import numpy as np

from speechlib.diarization.windows import FRAMES_PER_WINDOW, SAMPLE_RATE, WINDOW_DURATION_S

# Smallest input (samples) WeSpeaker ResNet34 accepts (pyannote finds it by bisection: 400 samples).
WESPEAKER_MIN_NUM_SAMPLES = 400


def min_num_frames(
    num_frames: int = FRAMES_PER_WINDOW,
    duration_s: float = WINDOW_DURATION_S,
    sample_rate: int = SAMPLE_RATE,
    min_num_samples: int = WESPEAKER_MIN_NUM_SAMPLES,
) -> int:
    """Frames a clean (non-overlapped) mask must exceed to be used instead of the full mask
    (2 for segmentation-3.0 + WeSpeaker ResNet34)."""
    return math.ceil(num_frames * min_num_samples / (duration_s * sample_rate))


def inactive_speakers(binary_segmentations: np.ndarray) -> np.ndarray:
    """(num_windows, num_local_speakers) bool: the speaker has no active frame in that window.

    binary_segmentations: (num_windows, num_frames, num_local_speakers) 0/1 (any numeric/bool dtype).
    These are the speakers whose embedding is skipped (NaN) and that reconstruction ignores.
    """
    seg = np.asarray(binary_segmentations)
    return ~np.any(seg != 0, axis=1)


def embedding_masks(
    binary_segmentations: np.ndarray,
    exclude_overlap: bool = True,
    min_frames: int | None = None,
) -> np.ndarray:
    """Frame masks to pool each (window, local speaker) embedding with.

    binary_segmentations: (num_windows, num_frames, num_local_speakers) 0/1 hard segmentation.
    With ``exclude_overlap`` (community-1's setting), frames where ≥ 2 speakers are active are
    zeroed, unless that leaves ``min_frames`` frames or fewer (then the whole mask is used).
    Returns float32 (num_windows, num_local_speakers, num_frames). A speaker whose mask is all
    zero (see :func:`inactive_speakers`) gets no embedding (NaN) in our pipeline.
    """
    seg = np.nan_to_num(np.asarray(binary_segmentations, dtype=np.float32), nan=0.0)
    masks = np.transpose(seg, (0, 2, 1))
    if not exclude_overlap:
        return np.ascontiguousarray(masks)
    if min_frames is None:
        min_frames = min_num_frames(num_frames=seg.shape[1])
    clean = masks * (np.sum(seg, axis=2) < 2)[:, None, :]
    use_clean = np.sum(clean, axis=2) > min_frames
    return np.ascontiguousarray(np.where(use_clean[:, :, None], clean, masks))
