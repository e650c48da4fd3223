"""Powerset → multi-label conversion of the segmentation model's output.

segmentation-3.0 predicts, per frame, one of the 7 "powerset" classes of 3 local speakers with at
most 2 active at once: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2} (sets of size 0, then 1, then 2, each in
lexicographic order). The diarization pipeline uses the *hard* conversion: argmax over the 7 classes,
then the class's member speakers are active (1.0), the others inactive (0.0).
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import numpy as np

NUM_LOCAL_SPEAKERS = 3
MAX_SPEAKERS_PER_FRAME = 2


@cache
def _mapping(num_classes: int, max_set_size: int) -> np.ndarray:
    rows = []
    for size in range(max_set_size + 1):
        for members in combinations(range(num_classes), size):
            row = np.zeros(num_classes, dtype=np.float32)
            row[list(members)] = 1.0
            rows.append(row)
    out = np.stack(rows)
    out.setflags(write=False)
    return out


def powerset_mapping(
    num_classes: int = NUM_LOCAL_SPEAKERS, max_set_size: int = MAX_SPEAKERS_PER_FRAME
) -> np.ndarray:
    """(num_powerset_classes, num_classes) float32 0/1 matrix: row i = members of powerset class i."""
    return _mapping(int(num_classes), int(max_set_size))


def powerset_to_multilabel(
    scores: np.ndarray,
    num_classes: int = NUM_LOCAL_SPEAKERS,
    max_set_size: int = MAX_SPEAKERS_PER_FRAME,
) -> np.ndarray:
    """Hard powerset → multi-label conversion.

    scores: (..., num_frames, num_powerset_classes) powerset scores (log-probabilities or any
    monotone scores; only the argmax matters; ties go to the lowest class index, NaN counts as max).
    Returns (..., num_frames, num_classes) float32 array of 0.0/1.0 (speaker active in that frame).
    """
    scores = np.asarray(scores)
    mapping = powerset_mapping(num_classes, max_set_size)
    if scores.shape[-1] != mapping.shape[0]:
        raise ValueError(
            f"expected {mapping.shape[0]} powerset classes in the last axis, got {scores.shape[-1]}"
        )
    return mapping[np.argmax(scores, axis=-1)]
