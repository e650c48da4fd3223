"""Peak resident memory of a process tree, sampled in the background (used by the diarization memory
test and ``bench/diarization_bench.py --memory``).

Linux only (reads ``/proc``). Each process is labelled: ``client`` (the sampling process itself,
without its children), ``tritonserver``, ``stub:<model>`` for a Python-backend stub (its model name is
the folder of the ``model.py`` on its command line), ``other`` for anything else under the server.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

MiB = 1 << 20


def process_rss(pid: int) -> int:
    """RSS (bytes) of one process (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of ``pid`` to its current RSS (``clear_refs`` 5;
    needs the same user). False where that is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def kernel_peak_rss(pid: int) -> int | None:
    """The kernel's peak RSS (bytes) of ``pid`` since start or :func:`reset_peak_rss`: exact, where
    sampling can miss a short peak."""
    kib = _status_kib(pid, "VmHWM:")
    return None if kib is None else kib * 1024


def process_memory(pid: int) -> dict[str, int]:
    """Resident memory of one process in bytes, split as the kernel accounts it (``/proc/PID/status``):
    ``rss``, ``anon`` (heap, arenas: what a process's own data occupies), ``file`` (mapped files:
    shared libraries, model files) and ``shmem`` (shared memory). Empty if the process is gone."""
    keys = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(maxsplit=1)[0] if line else ""
            if key in keys:
                out[keys[key]] = int(line.split()[1]) * 1024
    except OSError:
        return {}
    return out


def tree_memory(server_pid: int) -> dict[str, dict[str, int]]:
    """:func:`process_memory` of every process under ``server_pid`` by label (summed per label), and of
    this process as ``client``."""
    out: dict[str, dict[str, int]] = {"client": process_memory(os.getpid())}
    for pid in descendants(server_pid):
        label = process_label(pid)
        for k, v in process_memory(pid).items():
            out.setdefault(label, {})
            out[label][k] = out[label].get(k, 0) + v
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += children.get(p, [])
    return out


def process_label(pid: int) -> str:
    """``tritonserver``, ``stub:<model>`` or ``other`` (from the process's command line)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return "other"
    exe = Path(args[0]).name
    if exe.startswith("triton_python_backend_stub") and len(args) > 1:
        model_py = Path(args[1])
        # .../<model>/<version>/model.py
        return f"stub:{model_py.parent.parent.name}" if model_py.suffix == ".py" else f"stub:{model_py.name}"
    if exe == "tritonserver":
        return "tritonserver"
    if any("multiprocessing" in a for a in args[1:]):  # a spawned child (api.media) or its resource tracker
        return "mp_child"
    return "other"


class PeakRSS:
    """Samples, every ``interval_s``, the RSS of the sampling process (``client``) and of every process
    under ``server_pid`` (by label); keeps the peak of each label, and of the server tree's total
    (``server_total``). Use as a context manager around the work to measure. Where the kernel lets
    us reset the processes' peak-RSS marks on entry (same user), each label's peak is the kernel's
    exact ``VmHWM`` at exit instead of the sampled maximum (``exact`` says which)."""

    def __init__(self, server_pid: int | None, interval_s: float = 0.1):
        self.server_pid = server_pid
        self.interval_s = interval_s
        self.peaks: dict[str, int] = {}
        self.exact = False  # peaks are the kernel's VmHWM (set on entry)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-rss")

    def sample(self) -> dict[str, int]:
        now: dict[str, int] = {"client": process_rss(os.getpid())}
        if self.server_pid is not None:
            total = 0
            for pid in descendants(self.server_pid):
                rss = process_rss(pid)
                label = process_label(pid)
                now[label] = now.get(label, 0) + rss
                total += rss
            now["server_total"] = total
        return now

    def _run(self) -> None:
        while True:
            for label, rss in self.sample().items():
                self.peaks[label] = max(self.peaks.get(label, 0), rss)
            if self._stop.wait(self.interval_s):
                return

    def _pids(self) -> list[int]:
        return [os.getpid(), *(descendants(self.server_pid) if self.server_pid is not None else [])]

    def __enter__(self) -> PeakRSS:
        self.exact = all(reset_peak_rss(pid) for pid in self._pids())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for label, rss in self.sample().items():
            self.peaks[label] = max(self.peaks.get(label, 0), rss)
        if self.exact:
            kernel: dict[str, int] = {}
            for pid in self._pids():
                label = "client" if pid == os.getpid() else process_label(pid)
                kernel[label] = kernel.get(label, 0) + (kernel_peak_rss(pid) or 0)
            for label, peak in kernel.items():
                self.peaks[label] = max(self.peaks.get(label, 0), peak)

    def mib(self) -> dict[str, float]:
        return {k: round(v / MiB, 1) for k, v in sorted(self.peaks.items())}
