"""The real agent worker as a subprocess (``python -m agent start``) for the tests that need one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def agent_worker(
    tmp_path: Path, env: dict[str, str], stop_timeout: float = 30.0
) -> Iterator[subprocess.Popen]:
    """Start the worker with ``env`` over this process' environment, in ``tmp_path`` (so no ``.env``
    of the checkout is read), its output in ``tmp_path/worker.log``. On an error in the block its log's
    tail is printed; on leaving, SIGTERM (then SIGKILL after ``stop_timeout``). ``proc.returncode``
    and the log can be checked after the block."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the worker picks its own
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "start"],
            cwd=tmp_path,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    except BaseException:
        print(log_path.read_text(errors="replace")[-20000:])
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
