"""Triton model ``segmentation``: 10 s windows -> pyannote powerset scores.

Thin: validation and plumbing here, the network in ``serving.diarization``. Every request is one
window ``[1, 160000]``; the dynamic batch runs as one onnxruntime call.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.diarization import SegmentationNetwork
from serving.triton_io import (
    BatchSizeMetric,
    ModelContext,
    RequestError,
    error_response,
    network_from_context,
    window_input,
)
from speechlib.interfaces import Segmentation


class TritonPythonModel:
    def initialize(self, args):
        ctx = ModelContext(args)
        self.metric = BatchSizeMetric(ctx.name)
        self.network = network_from_context(SegmentationNetwork, ctx, on_batch=self.metric.observe)
        self.network.warm_up()  # at network_batch: memory is at its high-water mark from the start

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
