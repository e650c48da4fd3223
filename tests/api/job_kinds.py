"""The tests' job kind, registered from the tests (never in production's JOB_MODULES): in-process
tests pass this module to ``load_job_modules``, worker processes get it through EXTRA_JOB_MODULES.
``sleep_chunks`` is a trivial chunked job: it exercises every part of the job machinery
(checkpoints, cancel, retries, crash recovery) without a model."""

from __future__ import annotations

import os
import time
from typing import Any

from api.jobs.kinds import JobError, job_kind
from api.jobs.runner import JobContext


@job_kind("sleep_chunks")
def sleep_chunks(ctx: JobContext) -> dict[str, Any]:
    """params: chunks (int), seconds per chunk (float), log_path (optional: one line
    "job chunk attempt" is appended per computed chunk), fail_at / fail_attempts (raise a
    retryable error at chunk ``fail_at`` while attempt <= ``fail_attempts``)."""
    total = int(ctx.params.get("chunks", 1))
    seconds = float(ctx.params.get("seconds", 0.1))
    log_path = ctx.params.get("log_path")
    start = int((ctx.checkpoint or {}).get("next", 0))
    for i in range(start, total):
        ctx.check()
        if ctx.params.get("fail_at") == i and ctx.attempt <= int(ctx.params.get("fail_attempts", 1)):
            raise JobError("chunk_failed", f"chunk {i} failed (attempt {ctx.attempt})", retryable=True)
        time.sleep(seconds)
        if log_path:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{ctx.job_id} {i} {ctx.attempt}\n".encode())
            finally:
                os.close(fd)
        ctx.save({"next": i + 1}, done=i + 1, total=total, stage="sleeping")
    return {"chunks": total, "resumed_from": start}
