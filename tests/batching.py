"""Put a bad request into the same Triton execution as good ones, and prove it did.

"A bad request fails alone" only means something if the bad request really shared a batch with
good ones. Triton's counters tell: a request the model answers with an error is still counted in
``nv_inference_count`` (the Python backend reports every request it was given), while one refused by
Triton itself (wrong dtype or shape for the config) never reaches a batch and is not counted. So
after sending ``n`` good requests and one bad one together, ``nv_inference_exec_count`` +1 with
``nv_inference_count`` +(n+1) means all of them ran in one execution.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from inference_client import TritonClient
from inference_client import metrics as m


@dataclass
class MixedRun:
    good: list  # each good request's outputs (or its exception)
    bad: object  # the bad request's outputs (or its exception)
    inferences: float  # Triton's nv_inference_count delta
    executions: float  # Triton's nv_inference_exec_count delta
    bad_rows: int = 1  # the bad request's batch dimension (what Triton counts for it)

    @property
    def shared_one_execution(self) -> bool:
        return self.executions == 1 and self.inferences == len(self.good) + self.bad_rows

    @property
    def refused_before_batching(self) -> bool:
        """Triton refused the bad request itself (it never reached the model)."""
        return self.inferences == len(self.good)


async def _send(grpc_url: str, model: str, good: list[dict], bad: dict, outputs: list[str]):
    async with TritonClient(grpc_url) as client:
        calls = [client.infer(model, inputs, outputs) for inputs in good]
        calls.append(client.infer(model, bad, outputs))
        return await asyncio.gather(*calls, return_exceptions=True)


def send_mixed(
    server, model: str, good: list[dict[str, np.ndarray]], bad: dict[str, np.ndarray], outputs: list[str],
    attempts: int = 8,
) -> MixedRun:  # fmt: skip
    """Send ``good`` and ``bad`` requests to ``model`` at once (``server``: a serving.launcher
    TritonServer) until Triton runs them in one execution or refuses ``bad`` before batching, at most
    ``attempts`` times; returns the last run (callers assert which of the two happened)."""
    url = server.ports.metrics_url
    run = None
    for _ in range(attempts):
        before = m.settled_counts(url, model)
        *good_out, bad_out = asyncio.run(_send(server.ports.grpc_url, model, good, bad, outputs))
        m.counts_after(url, model, before, len(good))
        delta = m.settled_counts(url, model) - before
        rows = int(next(iter(bad.values())).shape[0])
        run = MixedRun(good_out, bad_out, delta.inferences, delta.executions, rows)
        if run.shared_one_execution or run.refused_before_batching:
            return run
    return run
