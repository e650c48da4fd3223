"""FFmpeg (PyAV) work of the api process, done in a child process.

Every upload is probed, every recording chunk measured, the synchronous calls decode their audio
and a live session's finalize mixes its chunks: all of it through PyAV, whose FFmpeg libraries and
decoder buffers stay resident in whatever process loaded them (~110 MiB in the api, measured by
``bench/transcription_bench.py --through-api``: docs/benchmarks.md). And a file crafted to crash
FFmpeg would take that process down with it.

So the api runs this work in a small pool of child processes (``MEDIA_PROCESSES``, default 1):
:data:`media` ``.run(fn, *args)`` sends ``fn`` (a module-level function: it is pickled by name) to
a child and returns its result or raises its exception. The children are started with ``spawn``
(the api has threads; ``fork`` would copy their locks) on first use, import only what ``fn`` needs
(:mod:`inference_client.audio`: numpy and PyAV), and the pool is replaced after
``MEDIA_MAX_TASKS_PER_PROCESS`` calls, so whatever FFmpeg leaks is given back (by this class, not
``ProcessPoolExecutor(max_tasks_per_child=)``: CPython 3.11-3.13 deadlock once a worker reaches that
limit with work queued, gh-115634). A child exits when the api does (it watches its parent: a
killed api leaves no children behind). A child that dies
mid-call (a decoder crash, the kernel's OOM killer) costs the call an
:class:`~inference_client.audio.AudioDecodeError` (``corrupt_audio``: the file is what the
uploader is told about), after one retry on a fresh pool, because a call that was merely running
beside the one that crashed the pool also sees it broken.

Processes that decode anyway (the job worker, tests calling the crud functions directly) never
configure it: ``run`` then calls ``fn`` in the calling process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("api.media")

T = TypeVar("T")

DEFAULT_MAX_TASKS = 200
CRASHED = "the audio decoder stopped while reading this file (it crashed or ran out of memory)"


class MediaRunner:
    """Runs PyAV work in ``processes`` child processes, or in the caller's when it is 0."""

    def __init__(self) -> None:
        self._processes = 0
        self._max_tasks = DEFAULT_MAX_TASKS
        self._pool: ProcessPoolExecutor | None = None
        self._tasks = 0  # calls submitted to the current pool
        self._lock = threading.Lock()

    @property
    def processes(self) -> int:
        return self._processes

    def configure(self, processes: int, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        """Use ``processes`` children from now on (0: in the calling process). A pool with other
        settings is shut down (its running calls finish)."""
        with self._lock:
            if (processes, max_tasks) == (self._processes, self._max_tasks):
                return
            old, self._pool = self._pool, None
            self._processes, self._max_tasks = processes, max_tasks
        if old is not None:
            old.shutdown(wait=False)

    def shutdown(self) -> None:
        with self._lock:
            old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=True, cancel_futures=True)

    def child_pids(self) -> list[int]:
        """The children running now (for tests and diagnostics)."""
        pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.is_alive()]

    def _submit(self, fn: Callable[..., T], args: tuple) -> tuple[ProcessPoolExecutor, Future[T]]:
        """Submit to the current pool (made on first use); the call that reaches ``max_tasks``
        retires it: its running calls finish, the next call starts a fresh pool."""
        retired = None
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self._processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_watch_parent,
                    initargs=(os.getpid(),),
                )
                self._tasks = 0
            pool = self._pool
            future = pool.submit(fn, *args)
            self._tasks += 1
            if self._tasks >= self._max_tasks:
                retired, self._pool = pool, None
        if retired is not None:
            retired.shutdown(wait=False)
        return pool, future

    def _discard(self, pool: ProcessPoolExecutor | None) -> None:
        if pool is None:
            return
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` in a child process (blocking: call it from a thread in async code)."""
        if not self._processes:
            return fn(*args)
        for attempt in (1, 2):
            try:
                pool, future = self._submit(fn, args)
            except BrokenProcessPool:  # the current pool broke before this call got in
                self._discard(self._pool)
                continue
            try:
                return future.result()
            except BrokenProcessPool:
                self._discard(pool)
                log.warning("a media process died running %s (attempt %d)", fn.__name__, attempt)
        from inference_client.audio import AudioDecodeError

        raise AudioDecodeError(CRASHED, "corrupt_audio")


media = MediaRunner()


def _watch_parent(parent: int) -> None:
    """In each child: exit as soon as the process that started it is gone (an api killed with
    SIGKILL runs no clean-up; its children would otherwise wait on their queue for ever)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


# ---------------------------------------------------------------------------- work done in a child
# (module-level, importing only numpy and PyAV: a spawned child imports this module to run them)


def decode_resampled(path: str | Path, rate: int, native_rate: int):
    """A file's samples at ``rate``, mono float32: decoded (the one decoder) at ``native_rate``
    (Opus' own 48 kHz for recording chunks), then resampled with a polyphase filter (scipy): half
    the time of the decoder's resampler per chunk, which adds up over a meeting's hundreds."""
    import math

    import numpy as np
    from scipy.signal import resample_poly

    from inference_client.audio import decode_audio

    x = decode_audio(path, native_rate)
    if rate == native_rate:
        return x
    g = math.gcd(rate, native_rate)
    return resample_poly(x, rate // g, native_rate // g).astype(np.float32, copy=False)


def encode_f32_to_ogg_opus(
    src: str | Path, out: str | Path, rate: int, bitrate: int, compression_level: str
) -> None:
    """A raw float32 mono file at ``rate`` (e.g. a memmapped mix) -> an Ogg/Opus file (PyAV's
    libopus), clipped to [-1, 1] and read 30 s at a time, so memory stays at one block."""
    import av
    import numpy as np

    src_samples = np.memmap(src, dtype=np.float32, mode="r")
    block = 30 * rate
    with av.open(str(out), "w", format="ogg") as container:
        stream = container.add_stream(
            "libopus", rate=rate, layout="mono", options={"compression_level": compression_level}
        )
        stream.bit_rate = bitrate
        for a in range(0, src_samples.size, block):
            x = np.clip(np.asarray(src_samples[a : a + block]), -1.0, 1.0).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = a
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    del src_samples
