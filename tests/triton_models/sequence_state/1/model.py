"""Test-only: per-CORRID state; STATE = [requests, samples, saw START, saw END, corrid]."""

import numpy as np
import triton_python_backend_utils as pb_utils


def _scalar(request, name):
    return int(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        self.streams = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            corrid = _scalar(request, "CORRID")
            start, end = _scalar(request, "START"), _scalar(request, "END")
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            if start:
                self.streams[corrid] = [0, 0, 1, 0]
            if corrid not in self.streams:
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(f"sequence {corrid} has no START"))
                )
                continue
            state = self.streams[corrid]
            state[0] += 1
            state[1] += x.size
            state[3] = end
            out = np.array([[*state, corrid]], np.int64)
            if end:
                del self.streams[corrid]
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("STATE", out)]))
        return responses
