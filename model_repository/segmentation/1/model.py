"""Triton model ``segmentation``: 10 s windows -> pyannote powerset scores.

Thin: validation and plumbing here, the network in ``serving.diarization``. Every request is one
window ``[1, 160000]``; the dynamic batch runs as one onnxruntime call.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.diarization import SegmentationNetwork
from serving.triton_io import BatchSizeMetric, ModelContext, RequestError, error_response
from speechlib.interfaces import Segmentation


def window_input(request, name):
    """One request's window as ``[1, 160000]`` float32, validated."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"input {name} is missing")
    data = tensor.as_numpy()
    if data.dtype != np.float32:
        raise RequestError(f"{name} must be FP32 samples in [-1, 1], got {data.dtype}")
    if data.size != Segmentation.WINDOW_SAMPLES:
        raise RequestError(
            f"{name} must be one 10 s window of 16 kHz audio, [1, {Segmentation.WINDOW_SAMPLES}] "
            f"(pad the last window with zeros); got shape {list(data.shape)}"
        )
    if not np.isfinite(data).all():
        raise RequestError(f"{name} contains NaN or infinite samples")
    return data.reshape(1, Segmentation.WINDOW_SAMPLES)


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
                windows.append(window_input(request, Segmentation.WAVEFORM))
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
