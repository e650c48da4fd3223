"""Triton model ``vad_stream``: fsmn-VAD over live streams (sequence batcher, one stream per CORRID).

Each request carries the next 100-200 ms of one stream; the response carries the speech start/end
events that chunk decided (``speechlib.interfaces.VADStream``). Per-stream state (front-end buffers,
FSMN caches, end-pointer) lives here, keyed by CORRID; streams idle longer than the sequence
batcher's idle timeout are dropped. Chunks of different streams run through the network together.
"""

import time

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.fsmn_vad import FsmnVadNetwork, step_streams
from serving.triton_io import (
    BatchSizeMetric,
    ModelContext,
    RequestError,
    control_value,
    error_response,
    int_output,
    optional_int,
    waveform_input,
)
from speechlib.interfaces import NO_TIME, SAMPLE_RATE, VADStream


class _Stream:
    __slots__ = ("vad", "caches", "last_seen")

    def __init__(self, vad, caches):
        self.vad = vad
        self.caches = caches
        self.last_seen = time.monotonic()


class TritonPythonModel:
    def initialize(self, args):
        ctx = ModelContext(args)
        self.metric = BatchSizeMetric(ctx.name)
        self.max_chunk_seconds = float(ctx.parameter("max_chunk_seconds", "10"))
        idle_us = ctx.config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 60_000_000)
        self.idle_seconds = int(idle_us) / 1e6
        self.network = FsmnVadNetwork(
            ctx.version_dir,
            intra_op_threads=int(ctx.parameter("intra_op_threads", "1")),
            device=ctx.device,
            device_id=ctx.device_id,
            on_batch=self.metric.observe,
        )
        self.streams = {}
        # Warm-up outside any user's stream.
        warm = _Stream(self.network.new_stream(), self.network.zero_caches())
        self._step([(warm, np.zeros(SAMPLE_RATE, np.float32), True)])

    def _step(self, items):
        """Run one chunk of each (stream, samples, final) item; returns each item's event rows."""
        streams = [stream for stream, _, _ in items]
        events, caches = step_streams(
            self.network,
            [stream.vad for stream in streams],
            [stream.caches for stream in streams],
            [samples for _, samples, _ in items],
            [final for _, _, final in items],
        )
        for stream, c in zip(streams, caches, strict=True):
            stream.caches = c
        return [
            np.array(
                [
                    [NO_TIME if e.start_ms is None else e.start_ms, NO_TIME if e.end_ms is None else e.end_ms]
                    for e in ev
                ],
                dtype=np.int32,
            ).reshape(-1, 2)
            for ev in events
        ]

    def execute(self, requests):
        now = time.monotonic()
        responses = [None] * len(requests)
        # A batch holds at most one chunk per stream in practice; if a stream appears twice, its
        # later chunk waits for the next round so chunks of one stream stay in order.
        pending = list(range(len(requests)))
        while pending:
            round_items, round_index, seen, later = [], [], set(), []
            for i in pending:
                request = requests[i]
                corrid = control_value(request, VADStream.CORRID)
                if corrid in seen:
                    later.append(i)
                    continue
                seen.add(corrid)
                try:
                    start = control_value(request, VADStream.START)
                    end = control_value(request, VADStream.END)
                    samples = waveform_input(
                        request, VADStream.AUDIO_CHUNK, self.max_chunk_seconds, SAMPLE_RATE, allow_empty=True
                    )
                    if start:
                        silence = optional_int(request, VADStream.MAX_END_SILENCE_MS, None, 0, 60000)
                        self.streams[corrid] = _Stream(
                            self.network.new_stream(silence), self.network.zero_caches()
                        )
                    stream = self.streams.get(corrid)
                    if stream is None:
                        raise RequestError(
                            f"stream {corrid} is unknown (never started, ended, or idle longer than "
                            f"{self.idle_seconds:.0f} s): send START with its first chunk"
                        )
                    stream.last_seen = now
                    round_items.append((stream, samples, bool(end)))
                    round_index.append((i, corrid, bool(end)))
                except RequestError as exc:
                    responses[i] = error_response(str(exc))
            if round_items:
                try:
                    rows = self._step(round_items)
                except Exception as exc:  # fail these requests, keep the stub alive
                    rows = [exc] * len(round_items)
                for (i, corrid, end), r in zip(round_index, rows, strict=False):
                    if isinstance(r, Exception):
                        responses[i] = error_response(f"vad_stream failed: {r}", invalid_argument=False)
                        self.streams.pop(corrid, None)
                        continue
                    responses[i] = pb_utils.InferenceResponse(
                        output_tensors=[int_output(VADStream.EVENTS, r)]
                    )
                    if end:
                        self.streams.pop(corrid, None)
            pending = later
        # Forget streams whose client went away without END.
        for corrid in [c for c, s in self.streams.items() if now - s.last_seen > self.idle_seconds]:
            del self.streams[corrid]
        return responses
