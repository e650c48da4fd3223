"""Triton model ``vad``: whole 16 kHz waveforms -> fsmn-VAD speech segments (ms).

Thin: validation and plumbing here; the network in ``serving.fsmn_vad``, the front end and
end-pointing in ``speechlib``. Requests arrive as a ragged dynamic batch; their networks run batched.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.fsmn_vad import FsmnVadNetwork, detect_segments
from serving.triton_io import (
    BatchSizeMetric,
    ModelContext,
    RequestError,
    error_response,
    int_output,
    optional_int,
    waveform_input,
)
from speechlib.interfaces import SAMPLE_RATE, VAD


class TritonPythonModel:
    def initialize(self, args):
        ctx = ModelContext(args)
        self.metric = BatchSizeMetric(ctx.name)
        self.max_seconds = float(ctx.parameter("max_audio_seconds", "3600"))
        self.network = FsmnVadNetwork(
            ctx.version_dir,
            intra_op_threads=int(ctx.parameter("intra_op_threads", "1")),
            device=ctx.device,
            device_id=ctx.device_id,
            on_batch=self.metric.observe,
        )
        # Warm-up: the first call of a session is slow; pay it here, not on a user's request.
        rng = np.random.default_rng(0)
        detect_segments(self.network, [rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32)] * 2)

    def execute(self, requests):
        responses = [None] * len(requests)
        waves, silences, index = [], [], []
        for i, request in enumerate(requests):
            try:
                waves.append(waveform_input(request, VAD.WAVEFORM, self.max_seconds, SAMPLE_RATE))
                silences.append(optional_int(request, VAD.MAX_END_SILENCE_MS, None, 0, 60000))
                index.append(i)
            except RequestError as exc:
                responses[i] = error_response(str(exc))
        if waves:
            try:
                results = detect_segments(self.network, waves, silences)
            except Exception as exc:  # never crash the stub: fail these requests instead
                results = [exc] * len(waves)
            for i, segments in zip(index, results, strict=False):
                if isinstance(segments, Exception):
                    responses[i] = error_response(f"vad failed: {segments}", invalid_argument=False)
                    continue
                rows = np.array(segments, dtype=np.int32).reshape(-1, 2)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[int_output(VAD.SEGMENTS, rows)])
        return responses
