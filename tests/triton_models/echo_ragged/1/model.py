"""Test-only: echoes 2 * INPUT per request and reports how many requests shared the execution."""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

from speechlib.interfaces import BATCH_SIZE_BUCKETS, BATCH_SIZE_METRIC


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.delay_s = int(config["parameters"]["EXECUTE_DELAY_MS"]["string_value"]) / 1000
        # Keep the family: a Metric whose MetricFamily was collected fails to observe().
        self.family = pb_utils.MetricFamily(
            name=BATCH_SIZE_METRIC,
            description="batch size passed to the network runtime",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.batch_size = self.family.Metric(labels={"model": args["model_name"]}, buckets=BATCH_SIZE_BUCKETS)

    def execute(self, requests):
        time.sleep(self.delay_s)  # a slow "network" lets concurrent requests queue up and batch
        self.batch_size.observe(len(requests))
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            if np.isneginf(x).any():
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError("INPUT contains -inf"))
                )
                continue
            out = [
                pb_utils.Tensor("OUTPUT", (2 * x).astype(np.float32)),
                pb_utils.Tensor("BATCH", np.full((x.shape[0], 1), len(requests), np.int32)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=out))
        return responses
