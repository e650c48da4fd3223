"""Room audio in: LiveKit audio frames -> the 16 kHz mono float32 samples the pipeline takes.

    stream = rtc.AudioStream(track, sample_rate=16000, num_channels=1)   # the SDK resamples
    async for samples in track_samples(stream):
        await pipeline.push(samples)

LiveKit delivers 10 ms frames of int16 PCM continuously while the track is subscribed (silence
included), and the stream ends when the track does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc

from speechlib.interfaces import SAMPLE_RATE

__all__ = ["frame_samples", "track_samples"]

_INT16_SCALE = 32768.0


def frame_samples(frame: rtc.AudioFrame) -> np.ndarray:
    """One frame's samples as float32 in [-1, 1), channels mixed down. The frame must be 16 kHz:
    ask ``rtc.AudioStream`` for ``sample_rate=16000`` (it resamples), never resample here."""
    if frame.sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"audio frame at {frame.sample_rate} Hz; create the rtc.AudioStream with "
            f"sample_rate={SAMPLE_RATE} so the SDK resamples"
        )
    pcm = np.frombuffer(frame.data, dtype=np.int16)
    channels = max(1, int(frame.num_channels))
    if channels > 1:
        return pcm.reshape(-1, channels).mean(axis=1, dtype=np.float32) / np.float32(_INT16_SCALE)
    return pcm.astype(np.float32) / np.float32(_INT16_SCALE)


async def track_samples(stream: rtc.AudioStream) -> AsyncIterator[np.ndarray]:
    """The samples of each frame of ``stream`` (``rtc.AudioFrameEvent``), in order, until it ends."""
    async for event in stream:
        samples = frame_samples(event.frame)
        if samples.size:
            yield samples
