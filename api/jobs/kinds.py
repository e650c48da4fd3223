"""Registry of job kinds. A handler is ``def handler(ctx: JobContext) -> dict | None``: it reads
``ctx.params`` and ``ctx.checkpoint``, calls ``ctx.check()`` before each chunk of work and
``ctx.save(...)`` after it, and returns the job's result (JSON)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.jobs.runner import JobContext

JobHandler = Callable[["JobContext"], "dict[str, Any] | None"]

JOB_HANDLERS: dict[str, JobHandler] = {}

# Modules whose import registers job kinds; the worker imports them at start, plus the setting
# EXTRA_JOB_MODULES (how the tests add theirs). Features add theirs here.
JOB_MODULES: list[str] = ["api.transcribe_job", "api.summaries", "api.live_transcribe_job"]


def job_kind(name: str) -> Callable[[JobHandler], JobHandler]:
    def register(fn: JobHandler) -> JobHandler:
        if name in JOB_HANDLERS and JOB_HANDLERS[name] is not fn:
            raise ValueError(f"job kind {name!r} registered twice")
        JOB_HANDLERS[name] = fn
        return fn

    return register


def load_job_modules(extra: list[str] | tuple[str, ...] = ()) -> dict[str, JobHandler]:
    for module in [*JOB_MODULES, *extra]:
        importlib.import_module(module)
    return JOB_HANDLERS


class JobError(Exception):
    """A failure the user should read: ``code`` is stable, ``message`` says what to do.
    ``retryable`` failures are re-queued while attempts remain."""

    def __init__(self, code: str, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class JobCancelled(Exception):
    """Raised by ``ctx.check()`` when a cancel was requested."""


class LeaseLost(Exception):
    """Raised when this worker no longer owns the job (it stalled and another took over)."""
