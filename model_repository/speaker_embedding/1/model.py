"""Triton model ``speaker_embedding``: 10 s windows + local speakers' activity masks -> embeddings.

Thin: validation and plumbing here, the network in ``serving.diarization``. The ResNet trunk runs
once per window (batched across the requests of a dynamic batch); each active speaker's mask pools
its frame features. Speakers with an all-zero mask get NaN rows and cost nothing.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.diarization import EmbeddingNetwork
from serving.triton_io import (
    BatchSizeMetric,
    ModelContext,
    RequestError,
    error_response,
    network_from_context,
    window_input,
)
from speechlib.interfaces import SpeakerEmbedding


def masks_input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"input {name} is missing")
    data = tensor.as_numpy()
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if (
        data.ndim != 2
        or data.shape[1] != SpeakerEmbedding.NUM_FRAMES
        or not 1 <= data.shape[0] <= SpeakerEmbedding.MAX_SPEAKERS
    ):
        raise RequestError(
            f"{name} must be [S, {SpeakerEmbedding.NUM_FRAMES}] activity weights of the window's S (1-{SpeakerEmbedding.MAX_SPEAKERS}) "
            f"local speakers; got shape {list(data.shape)}"
        )
    if not np.isfinite(data).all() or (data < 0).any():
        raise RequestError(f"{name} must hold finite, non-negative weights")
    return data.astype(np.float32, copy=False)


class TritonPythonModel:
    def initialize(self, args):
        ctx = ModelContext(args)
        self.metric = BatchSizeMetric(ctx.name)
        self.network = network_from_context(EmbeddingNetwork, ctx)
        self.network.warm_up()  # at network_batch: memory is at its high-water mark from the start
        self.network.on_batch = self.metric.observe

    def execute(self, requests):
        responses = [None] * len(requests)
        windows, masks, index = [], [], []
        for i, request in enumerate(requests):
            try:
                windows.append(
                    window_input(request, SpeakerEmbedding.WAVEFORM, SpeakerEmbedding.WINDOW_SAMPLES)
                )
                masks.append(masks_input(request, SpeakerEmbedding.MASKS))
                index.append(i)
            except RequestError as exc:
                if len(windows) > len(masks):
                    windows.pop()
                responses[i] = error_response(str(exc))
        if windows:
            try:
                embeddings = self.network.embed(np.stack(windows), masks)
            except Exception as exc:  # never crash the stub: fail these requests instead
                for i in index:
                    responses[i] = error_response(f"speaker_embedding failed: {exc}", invalid_argument=False)
                return responses
            for j, i in enumerate(index):
                out = pb_utils.Tensor(SpeakerEmbedding.EMBEDDINGS, np.ascontiguousarray(embeddings[j][None]))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
        return responses
