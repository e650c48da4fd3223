"""The async gRPC client every process uses to talk to Triton.

One :class:`TritonClient` per process and event loop: it owns one gRPC channel, a request window
(at most ``max_in_flight`` requests on the wire, so callers may fire thousands of requests and Triton
still sees enough at once to fill its dynamic batches) and the retry policy for transient failures.

    async with TritonClient("127.0.0.1:8101") as client:
        await client.wait_ready([VAD.NAME])
        out = await client.infer(VAD.NAME, {VAD.WAVEFORM: x[None]}, [VAD.SEGMENTS])

``infer`` sends tensors exactly as given: for a model with ``max_batch_size > 0`` the caller includes
the batch dimension (``[1, ...]`` for one request). The model-specific clients (:mod:`.vad`) do that
for you.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tritonclient.grpc import KeepAliveOptions
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from inference_client.errors import InferenceError, is_transient, status_name, translate
from speechlib.interfaces import TRITON_GRPC_PORT

log = logging.getLogger("inference_client")

DEFAULT_URL = f"127.0.0.1:{TRITON_GRPC_PORT}"
_MAX_MESSAGE_BYTES = 2**31 - 1


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures only (UNAVAILABLE: server down,
    restarting, model loading, queue full; DEADLINE_EXCEEDED). Everything else fails at once.

    The wait before retry ``n`` (1-based) is ``min(initial_backoff_s * multiplier**(n-1), max_backoff_s)``
    plus up to ``jitter_s``; retries stop after ``attempts`` tries or ``deadline_s`` seconds in all.
    """

    attempts: int = 8
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter_s: float = 0.1
    deadline_s: float | None = 30.0

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt, no retry."""
        return cls(attempts=1)


@dataclass
class ClientStats:
    """Counters since the client was created (for logs, benchmarks and tests)."""

    requests: int = 0  # infer() calls
    attempts: int = 0  # RPCs sent, retries included
    retries: int = 0
    failures: int = 0  # infer() calls that raised
    in_flight: int = 0  # RPCs on the wire now
    max_in_flight_seen: int = 0


@dataclass
class _Window:
    """At most ``size`` RPCs on the wire; counts them for :class:`ClientStats`."""

    size: int
    stats: ClientStats
    _sem: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.size)

    async def __aenter__(self) -> None:
        await self._sem.acquire()
        self.stats.in_flight += 1
        self.stats.max_in_flight_seen = max(self.stats.max_in_flight_seen, self.stats.in_flight)

    async def __aexit__(self, *exc: object) -> None:
        self.stats.in_flight -= 1
        self._sem.release()


class TritonClient:
    """Async Triton gRPC client with a request window and retries.

    Args:
        url: ``host:port`` of Triton's gRPC endpoint (default ``127.0.0.1:8101``).
        max_in_flight: most RPCs on the wire at once; further calls wait their turn. Keep it at or
            above the models' ``max_batch_size`` so Triton can form full batches.
        retry: what to retry and for how long (see :class:`RetryPolicy`).
        timeout_s: deadline of one attempt in seconds (``None``: no deadline).

    Bound to the event loop it is first used in. Errors of one request never affect another.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        max_in_flight: int = 32,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = 60.0,
    ):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.url = url
        self.max_in_flight = max_in_flight
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.stats = ClientStats()
        self._grpc: grpcclient.InferenceServerClient | None = None
        self._window: _Window | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> TritonClient:
        self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._grpc is not None:
            grpc, self._grpc = self._grpc, None
            await grpc.close()

    def _connect(self) -> grpcclient.InferenceServerClient:
        if self._grpc is None:
            keepalive = KeepAliveOptions()
            self._grpc = grpcclient.InferenceServerClient(
                self.url,
                channel_args=[
                    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                    ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                    ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                    ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
                    ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
                    # gRPC's default reconnect backoff grows to 120 s; Triton is a local service
                    # that restarts in seconds, so look again at least every second.
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ],
            )
            self._window = _Window(self.max_in_flight, self.stats)
        return self._grpc

    # -- inference -------------------------------------------------------------------------------
    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        *,
        sequence_id: int = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one inference request and return the named outputs (all outputs when ``outputs`` is None).

        Tensors are sent as given (dtype and shape, batch dimension included where the model has
        one). ``sequence_id`` (uint64, non-zero) with ``sequence_start`` / ``sequence_end`` addresses a
        sequence-batched model; such requests are not retried after DEADLINE_EXCEEDED, because the
        model may already have applied them to the sequence's state.

        Raises:
            InvalidRequestError: the request does not fit the model (never retried).
            ModelNotFoundError, ModelExecutionError: Triton or the model refused or failed.
            TritonUnavailableError: transient failures outlasted the retry policy.
        """
        request = [_infer_input(name, array) for name, array in inputs.items()]
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs] if outputs else None
        deadline = self.timeout_s if timeout_s is None else timeout_s
        self.stats.requests += 1

        def retryable(exc: BaseException) -> bool:
            if sequence_id and isinstance(exc, InferenceServerException):
                return status_name(exc) == "UNAVAILABLE"
            return is_transient(exc)

        async def attempt() -> Any:
            grpc = self._connect()
            async with self._window:
                self.stats.attempts += 1
                return await grpc.infer(
                    model,
                    request,
                    outputs=requested,
                    sequence_id=sequence_id,
                    sequence_start=sequence_start,
                    sequence_end=sequence_end,
                    client_timeout=deadline,
                )

        result = await self._with_retries(model, attempt, retryable)
        names = list(outputs) if outputs else [o.name for o in result.get_response().outputs]
        return {name: result.as_numpy(name) for name in names}

    # -- server and model state ------------------------------------------------------------------
    async def wait_ready(self, models: Sequence[str] = (), timeout_s: float = 60.0) -> None:
        """Wait until the server and each named model are ready.

        Raises:
            TimeoutError: naming what was not ready after ``timeout_s`` seconds and the last error.
        """
        grpc = self._connect()
        deadline = time.monotonic() + timeout_s
        pending: list[str] = ["server", *models]
        last_error = ""
        while True:
            try:
                pending = [] if await grpc.is_server_ready(client_timeout=2.0) else ["server"]
                if not pending:
                    for m in models:
                        if not await grpc.is_model_ready(m, client_timeout=2.0):
                            pending.append(m)
                if not pending:
                    return
            except InferenceServerException as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                detail = f"; last error: {last_error}" if last_error else ""
                raise TimeoutError(
                    f"Triton at {self.url} not ready after {timeout_s:.0f} s: waiting for "
                    f"{', '.join(pending)}{detail}"
                )
            await asyncio.sleep(0.2)

    async def model_config(self, model: str) -> dict[str, Any]:
        """The model's configuration as Triton resolved it (``config.pbtxt`` fields, snake_case keys)."""
        grpc = self._connect()
        response = await self._with_retries(
            model, lambda: grpc.get_model_config(model, as_json=True, client_timeout=self.timeout_s)
        )
        return response["config"]

    async def server_metadata(self) -> dict[str, Any]:
        """Triton's name, version and extensions."""
        grpc = self._connect()
        return await self._with_retries(
            None, lambda: grpc.get_server_metadata(as_json=True, client_timeout=self.timeout_s)
        )

    # -- retries ---------------------------------------------------------------------------------
    async def _with_retries(self, model: str | None, call, retryable=is_transient) -> Any:
        policy = self.retry
        stop = stop_after_attempt(max(1, policy.attempts))
        if policy.deadline_s is not None:
            stop = stop | stop_after_delay(policy.deadline_s)

        def before_sleep(state: RetryCallState) -> None:
            self.stats.retries += 1
            log.warning(
                "Triton %s for %s (attempt %d); retrying in %.2f s",
                state.outcome.exception() if state.outcome else "error",
                model or "server",
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait_exponential_jitter(
                multiplier=policy.initial_backoff_s,  # the first wait (tenacity renamed `initial`)
                max=policy.max_backoff_s,
                exp_base=policy.multiplier,
                jitter=policy.jitter_s,
            ),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return await call()
        except InferenceServerException as exc:
            self.stats.failures += 1
            raise translate(exc, model, attempts) from None
        except BaseException:
            self.stats.failures += 1
            raise
        raise AssertionError("unreachable")  # pragma: no cover


def _infer_input(name: str, array: np.ndarray) -> grpcclient.InferInput:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"input '{name}' must be a numpy array, got {type(array).__name__}")
    datatype = np_to_triton_dtype(array.dtype)
    if datatype is None:
        raise TypeError(f"input '{name}' has dtype {array.dtype}, which Triton cannot carry")
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(np.ascontiguousarray(array))
    return tensor


__all__ = ["DEFAULT_URL", "ClientStats", "InferenceError", "RetryPolicy", "TritonClient"]
