"""Triton from the api and the worker: one long-lived :class:`TritonClient` per process and event loop.

Both processes reach Triton's gRPC endpoint at ``TRITON_GRPC_URL`` and read the diarization
pipeline's parameters (PLDA, thresholds) from ``DIARIZATION_PARAMS_DIR`` (default
``model_repository/speaker_embedding/1``, where ``make models`` installs them; a worker without a
checkout mounts that folder, see compose.yaml).

- The api (async routes on uvicorn's loop) uses :meth:`Inference.transcriber` inside a request.
- The worker's job handlers are synchronous (huey threads): they submit coroutines to the worker's
  one :class:`LoopThread` with :meth:`WorkerInference.run`, so every job of the process shares one
  client, one request window and one gRPC channel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from api.core.config import Settings

if TYPE_CHECKING:
    from inference_client import TritonClient
    from inference_client.transcription import Transcriber
    from speechlib.diarization.pipeline import PipelineSettings

log = logging.getLogger("api.inference")
T = TypeVar("T")


class Inference:
    """The process's Triton client and transcription engine, made on first use in the running loop.
    A use from another loop (a test client that runs each request in a fresh loop) gets a new client;
    the gRPC channel of the old loop is dropped."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: TritonClient | None = None
        self._transcriber: Transcriber | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @cached_property
    def pipeline_settings(self) -> PipelineSettings:
        """The diarization parameters (``FileNotFoundError`` saying what to do when missing)."""
        from speechlib.diarization.pipeline import PipelineSettings

        return PipelineSettings.from_dir(self.settings.resolved_diarization_params_dir)

    def client(self) -> TritonClient:
        """The client bound to the running loop (call from a coroutine)."""
        from inference_client import TritonClient

        loop = asyncio.get_running_loop()
        with self._lock:
            if self._client is None or self._loop is not loop:
                self._client = TritonClient(
                    self.settings.triton_grpc_url, max_in_flight=self.settings.triton_max_in_flight
                )
                self._transcriber = None
                self._loop = loop
            return self._client

    def transcriber(self) -> Transcriber:
        """The :class:`Transcriber` on this loop's client (diarization parameters read lazily, on
        the first diarization)."""
        from inference_client.transcription import Transcriber

        client = self.client()
        with self._lock:
            if self._transcriber is None or self._transcriber.client is not client:
                self._transcriber = Transcriber(client, diarization_settings=self._pipeline_or_none())
            return self._transcriber

    def _pipeline_or_none(self) -> PipelineSettings | None:
        try:
            return self.pipeline_settings
        except FileNotFoundError:
            # The Transcriber raises the same error when diarization is asked for: a request
            # without diarization still works.
            return None

    async def aclose(self) -> None:
        with self._lock:
            client, self._client, self._transcriber, self._loop = self._client, None, None, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # a channel of a loop that is gone
                log.debug("closing the Triton client failed", exc_info=True)


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` executes a coroutine on it from any
    thread and returns its result (or raises its exception)."""

    def __init__(self, name: str = "inference-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Awaitable[T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class WorkerInference:
    """The worker's Triton access: one loop thread, one :class:`Inference` on it, shared by every
    job the process runs (``WORKER_CONCURRENCY`` threads)."""

    def __init__(self, settings: Settings):
        self.inference = Inference(settings)
        self._loop_thread: LoopThread | None = None
        self._lock = threading.Lock()

    @property
    def loop_thread(self) -> LoopThread:
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = LoopThread("worker-inference")
            return self._loop_thread

    def pipeline_settings(self) -> PipelineSettings:
        """The diarization parameters (read once; ``FileNotFoundError`` naming the folder)."""
        return self.inference.pipeline_settings

    def run(self, fn: Callable[[Transcriber], Awaitable[T]], timeout: float | None = None) -> T:
        """``fn(transcriber)`` on the worker's loop, from a job thread; returns its result."""

        async def call() -> Any:
            return await fn(self.inference.transcriber())

        return self.loop_thread.run(call(), timeout)

    def close(self) -> None:
        with self._lock:
            lt, self._loop_thread = self._loop_thread, None
        if lt is not None:
            try:
                lt.run(self.inference.aclose(), timeout=5)
            except Exception:
                log.debug("closing the worker's Triton client failed", exc_info=True)
            lt.stop()
