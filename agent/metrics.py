"""The agent's Prometheus metrics (served on ``AGENT_HTTP_PORT`` at ``/metrics``).

One place for their names: deploy/grafana's agent dashboard and docs/benchmarks.md read these.
Job processes of livekit-agents are separate processes: see agent/worker.py for how their samples
reach the worker's endpoint.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from speechlib.interfaces import ASR, VADStream

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

ACTIVE_SESSIONS = Gauge(
    "intrascribe_agent_active_sessions",
    "Live sessions (rooms) this agent is transcribing",
    multiprocess_mode="livesum",
)
ACTIVE_PARTICIPANTS = Gauge(
    "intrascribe_agent_active_participants",
    "Microphone tracks being transcribed",
    multiprocess_mode="livesum",
)
UTTERANCE_LATENCY = Histogram(
    "intrascribe_agent_utterance_latency_seconds",
    "Audio-time end of speech (final) or newest audio (interim) -> segment published",
    ["kind"],  # final | interim
    buckets=LATENCY_BUCKETS,
)
TRITON_ERRORS = Counter("intrascribe_agent_triton_errors_total", "Failed Triton requests", ["model"])
API_ERRORS = Counter("intrascribe_agent_api_errors_total", "Failed api requests", ["operation"])
BUFFERED_SECONDS = Gauge(
    "intrascribe_agent_buffered_audio_seconds",
    "Audio received but not yet processed (waiting for Triton)",
    multiprocess_mode="livesum",
)
DROPPED_SECONDS = Counter(
    "intrascribe_agent_dropped_audio_seconds_total", "Audio dropped because a participant's buffer overflowed"
)
ROOM_PUBLISH_ERRORS = Counter(
    "intrascribe_agent_room_publish_errors_total",
    "Segment updates not delivered to the room (lk.transcription)",
)
SEGMENTS = Counter("intrascribe_agent_segments_total", "Segments published", ["kind"])  # final | interim
RECORDING_CHUNKS = Counter(
    "intrascribe_agent_recording_chunks_total",
    "Recording chunks uploaded",
    ["result"],  # stored | failed
)

# Every known label set exists from the start (at 0), so a dashboard panel shows 0, not "No data", until
# the first error, and rate()/histogram_quantile() see the first finals.
API_OPERATIONS = ("token", "segments", "segments_dropped", "status", "chunk", "recording", "finalize")
for _kind in ("final", "interim"):
    UTTERANCE_LATENCY.labels(_kind)
    SEGMENTS.labels(_kind)
for _model in (VADStream.NAME, ASR.NAME):
    TRITON_ERRORS.labels(_model)
for _result in ("stored", "failed"):
    RECORDING_CHUNKS.labels(_result)
for _operation in API_OPERATIONS:
    API_ERRORS.labels(_operation)
