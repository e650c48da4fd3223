"""Speaker-count options, checked where a request comes in (the api validates them before a job
exists) and again by the pipeline. No numpy, scipy or scikit-learn: importing this must not load the
clustering stack into the api process (~80 MiB: tests/test_boundaries.py)."""

from __future__ import annotations


def check_speaker_counts(num: int | None, low: int | None, high: int | None) -> None:
    """``ValueError`` unless each given count is a positive integer and ``low <= high``."""
    for name, value in (("num_speakers", num), ("min_speakers", low), ("max_speakers", high)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"min_speakers ({low}) must not exceed max_speakers ({high})")
