"""Sliding windows and frame timing of the segmentation model (pyannote 4.0.7 community-1).

Units: ``*_s`` are seconds, ``*_samples`` are audio samples at ``sample_rate``, "frames" are
segmentation output frames (589 per 10 s window).

* Windows ("chunks"): 10 s long, step 0.1 × 10 s = 1 s (``SpeakerDiarization(segmentation_step=0.1)``),
  window k covers [k·step, k·step + 10 s). Complete windows are those fully inside the audio; if the
  audio does not end exactly on a window, one more window starts right after the last complete one
  (at ``num_complete·step``) and is zero-padded to 10 s; audio shorter than 10 s gives that single
  padded window. Times of all windows stay on the k·step grid.
* Frames: the segmentation model's receptive field (SincNet, stride 10, then conv/pool kernels
  [251,3,5,3,5,3] with strides [10,3,1,3,1,3]): 991 samples wide (0.0619375 s), 270 samples apart
  (0.016875 s), first frame centred on the first sample of its window's receptive field
  (start 0). A 10 s window gives 589 frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
WINDOW_DURATION_S = 10.0
SEGMENTATION_STEP_RATIO = 0.1
FRAMES_PER_WINDOW = 589

# SincNet(stride=10) front-end of PyanNet: (kernel, stride) of each conv/pool layer in order.
_SINCNET_LAYERS = ((251, 10), (3, 3), (5, 1), (3, 3), (5, 1), (3, 3))


@dataclass(frozen=True)
class FrameGrid:
    """A regular grid of frames (pyannote's ``SlidingWindow``): frame i spans
    [start_s + i·step_s, start_s + i·step_s + duration_s] (seconds)."""

    start_s: float
    step_s: float
    duration_s: float

    def frame_start(self, i):
        """Start time (s) of frame(s) i."""
        return self.start_s + np.asarray(i) * self.step_s

    def middle(self, i):
        """Middle time (s) of frame(s) i, computed as pyannote's ``Segment.middle``."""
        s = self.start_s + np.asarray(i, dtype=np.float64) * self.step_s
        return 0.5 * (s + (s + self.duration_s))

    def closest_frame(self, t_s: float) -> int:
        """Index of the frame whose middle is closest to time ``t_s`` (s)."""
        return int(np.rint((t_s - self.start_s - 0.5 * self.duration_s) / self.step_s))


def _receptive_field_size(num_frames: int) -> int:
    size = num_frames
    for kernel, stride in reversed(_SINCNET_LAYERS):
        size = kernel + (size - 1) * stride
    return size


def _receptive_field_center(frame: int) -> int:
    center = frame
    for kernel, stride in reversed(_SINCNET_LAYERS):
        center = center * stride + (kernel - 1) // 2
    return center


def num_frames_per_window(num_samples: int = int(WINDOW_DURATION_S * SAMPLE_RATE)) -> int:
    """Number of segmentation frames the model outputs for ``num_samples`` input samples."""
    n = num_samples
    for kernel, stride in _SINCNET_LAYERS:
        n = 1 + (n - kernel) // stride
    return n


def segmentation_frames(sample_rate: int = SAMPLE_RATE) -> FrameGrid:
    """The segmentation model's frame grid (its receptive field) in seconds, relative to a window start:
    FrameGrid(start_s=0.0, step_s=0.016875, duration_s=0.0619375) at 16 kHz."""
    size = _receptive_field_size(1)
    step = _receptive_field_size(2) - size
    start = _receptive_field_center(0) - (size - 1) / 2
    return FrameGrid(start_s=start / sample_rate, step_s=step / sample_rate, duration_s=size / sample_rate)


@dataclass(frozen=True)
class WindowPlan:
    """Where the 10 s windows of an audio file of ``num_samples`` samples lie.

    ``starts_samples[k]`` is the first sample of window k (k·step_samples); each window is
    ``window_samples`` long; the last one is zero-padded when ``has_padded_last`` is true.
    ``chunks`` is the window grid in seconds (start 0, step 1 s, duration 10 s).
    """

    num_samples: int
    sample_rate: int
    window_samples: int
    step_samples: int
    num_complete: int
    has_padded_last: bool
    chunks: FrameGrid

    @property
    def num_windows(self) -> int:
        return self.num_complete + int(self.has_padded_last)

    @property
    def starts_samples(self) -> np.ndarray:
        return np.arange(self.num_windows, dtype=np.int64) * self.step_samples

    def window(self, waveform: np.ndarray, k: int) -> np.ndarray:
        """Samples of window k of ``waveform`` (1-D), zero-padded to ``window_samples`` (float32)."""
        start = k * self.step_samples
        piece = np.asarray(waveform[start : start + self.window_samples], dtype=np.float32)
        if piece.shape[0] < self.window_samples:
            piece = np.pad(piece, (0, self.window_samples - piece.shape[0]))
        return piece


def plan_windows(
    num_samples: int,
    sample_rate: int = SAMPLE_RATE,
    duration_s: float = WINDOW_DURATION_S,
    step_ratio: float = SEGMENTATION_STEP_RATIO,
) -> WindowPlan:
    """Sliding windows over ``num_samples`` samples as pyannote's ``Inference.slide`` lays them out
    (window ``duration_s`` seconds, step ``step_ratio × duration_s`` seconds)."""
    step_s = step_ratio * duration_s
    window = int(round(duration_s * sample_rate))
    step = int(round(step_s * sample_rate))
    if num_samples >= window:
        num_complete = (num_samples - window) // step + 1
    else:
        num_complete = 0
    has_last = (num_samples < window) or ((num_samples - window) % step > 0)
    return WindowPlan(
        num_samples=int(num_samples),
        sample_rate=int(sample_rate),
        window_samples=window,
        step_samples=step,
        num_complete=int(num_complete),
        has_padded_last=bool(has_last),
        chunks=FrameGrid(start_s=0.0, step_s=step_s, duration_s=duration_s),
    )
