"""One source of truth for the facts that cross process boundaries.

Model names, tensor names, the sample rate and the default ports are defined here once and imported by
the Triton models (``model_repository/*/1/model.py``), the client (``inference_client``), the launcher
and the tests. ``tests/test_model_configs.py`` checks that every ``config.pbtxt`` agrees with this file.
"""

from __future__ import annotations

SAMPLE_RATE = 16000
"""Every waveform that crosses a boundary is 16 kHz mono float32 in [-1, 1]."""

# Triton's ports (the api owns 8000). Triton is internal: compose publishes none of these.
TRITON_HTTP_PORT = 8100
TRITON_GRPC_PORT = 8101
TRITON_METRICS_PORT = 8102

# Custom metric every network-running model publishes: the batch size it actually passes to the
# network runtime (onnxruntime / torch), as a histogram.
BATCH_SIZE_METRIC = "intrascribe_network_batch_size"
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64]


class VAD:
    """``vad``: whole 16 kHz waveforms (ragged, dynamically batched) -> speech segments in ms."""

    NAME = "vad"
    WAVEFORM = "WAVEFORM"  # FP32 [-1] per request: samples in [-1, 1]
    MAX_END_SILENCE_MS = "MAX_END_SILENCE_MS"  # INT32 [1], optional: gap that ends a segment
    SEGMENTS = "SEGMENTS"  # INT32 [-1, 2]: rows of (start_ms, end_ms), sorted, non-overlapping


class VADStream:
    """``vad_stream``: one stream per CORRID (sequence batcher), 100-200 ms chunks -> events.

    Each response carries the events decided by that chunk as rows ``(start_ms, end_ms)``:
    ``(s, -1)`` speech started at ``s``; ``(-1, e)`` the open segment ended at ``e``; ``(s, e)`` a
    whole segment began and ended within the chunk. Times are from the start of the stream.
    """

    NAME = "vad_stream"
    AUDIO_CHUNK = "AUDIO_CHUNK"  # FP32 [-1]: the next samples of the stream (may be empty on END)
    MAX_END_SILENCE_MS = "MAX_END_SILENCE_MS"  # INT32 [1], optional; read on the START request
    EVENTS = "EVENTS"  # INT32 [-1, 2]
    # Sequence-batcher control tensors (config.pbtxt names them too).
    START = "START"
    END = "END"
    READY = "READY"
    CORRID = "CORRID"


NO_TIME = -1
"""Marks the missing half of a streaming event row."""
