"""Test-only fake ``vad_stream``: the fake ``vad`` rule, decided incrementally per CORRID."""

import numpy as np
import triton_python_backend_utils as pb_utils

from speechlib.interfaces import NO_TIME, VADStream

FRAME = 160
DEFAULT_MAX_END_SILENCE_MS = 500


def _scalar(request, name):
    return int(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])


class Stream:
    def __init__(self, max_end_silence_ms):
        self.mes = max_end_silence_ms
        self.pending = np.zeros(0, np.float32)
        self.frame = 0  # index of the next frame
        self.open = False
        self.last_end = 0  # ms: end of the last speech frame

    def feed(self, x, end):
        self.pending = np.concatenate([self.pending, x])
        n = self.pending.size // FRAME
        frames = self.pending[: n * FRAME].reshape(n, FRAME).astype(np.float64)
        self.pending = self.pending[n * FRAME :]
        events = []
        for speech in np.sqrt((frames**2).mean(axis=1)) > 0.01:
            t = self.frame
            self.frame += 1
            if speech:
                if not self.open:
                    events.append([t * 10, NO_TIME])
                    self.open = True
                self.last_end = (t + 1) * 10
            elif self.open and self.frame * 10 - self.last_end >= self.mes:
                events.append([NO_TIME, self.last_end])
                self.open = False
        if end and self.open:
            events.append([NO_TIME, self.last_end])
            self.open = False
        merged = []  # a start and its end decided in the same chunk form one row
        for row in events:
            if merged and row[0] == NO_TIME and merged[-1][1] == NO_TIME:
                merged[-1][1] = row[1]
            else:
                merged.append(row)
        return np.array(merged, np.int32).reshape(1, -1, 2)


class TritonPythonModel:
    def initialize(self, args):
        self.streams = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            corrid = _scalar(request, VADStream.CORRID)
            if _scalar(request, VADStream.START):
                mes = pb_utils.get_input_tensor_by_name(request, VADStream.MAX_END_SILENCE_MS)
                mes = DEFAULT_MAX_END_SILENCE_MS if mes is None else int(mes.as_numpy().reshape(-1)[0])
                self.streams[corrid] = Stream(mes)
            stream = self.streams.get(corrid)
            if stream is None:
                err = pb_utils.TritonError(
                    f"stream {corrid} was not started", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(error=err))
                continue
            end = _scalar(request, VADStream.END)
            x = pb_utils.get_input_tensor_by_name(request, VADStream.AUDIO_CHUNK).as_numpy().reshape(-1)
            events = stream.feed(x, end)
            if end:
                del self.streams[corrid]
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(VADStream.EVENTS, events)])
            )
        return responses
