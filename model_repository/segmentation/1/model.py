"""Triton model ``segmentation``: 10 s windows -> pyannote powerset scores.

Thin: validation and plumbing here, the network in ``serving.diarization``. Every request is one
window ``[1, 160000]``; the dynamic batch runs as one onnxruntime call.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.diarization import SegmentationNetwork
from serving.triton_io import BatchSizeMetric, ModelContext, RequestError, error_response, window_input
from speechlib.interfaces import Segmentation


class TritonPythonModel:
    def initialize(self, args):
        ctx = ModelContext(args)
        self.metric = BatchSizeMetric(ctx.name)
        self.network = SegmentationNetwork(
            ctx.version_dir,
            intra_op_threads=int(ctx.parameter("intra_op_threads", "1")),
            device=ctx.device,
            device_id=ctx.device_id,
            on_batch=self.metric.observe,
            max_batch=int(ctx.config.get("max_batch_size", 32)) or 32,
        )
        # Warm-up: the first call of a session is slow; pay it here, not on a user's request.
        rng = np.random.default_rng(0)
        self.network.on_batch = None
        self.network.scores(rng.normal(0, 0.1, (2, 1, Segmentation.WINDOW_SAMPLES)).astype(np.float32))
        self.network.on_batch = self.metric.observe

    def execute(self, requests):
        responses = [None] * len(requests)
        windows, index = [], []
        for i, request in enumerate(requests):
            try:
                windows.append(window_input(request, Segmentation.WAVEFORM, Segmentation.WINDOW_SAMPLES))
                index.append(i)
            except RequestError as exc:
                responses[i] = error_response(str(exc))
        if windows:
            try:
                scores = self.network.scores(np.stack(windows))
            except Exception as exc:  # never crash the stub: fail these requests instead
                for i in index:
                    responses[i] = error_response(f"segmentation failed: {exc}", invalid_argument=False)
                return responses
            for j, i in enumerate(index):
                out = pb_utils.Tensor(Segmentation.SCORES, np.ascontiguousarray(scores[j][None]))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
        return responses
