"""Start the tritonserver that ships inside the ``nvidia-pytriton`` wheel, without Docker.

The wheel carries ``tritonserver`` 2.51 with the Python backend and one backend stub per Python
version. We assemble a server tree (binary + Python backend + the stub for *this* interpreter) once
under the cache directory, then run it on ``model_repository/`` bound to 127.0.0.1 with this
environment's ``bin`` first on ``PATH`` (how the stub finds the serving environment's packages: it
ignores ``PYTHONPATH``).

    python -m serving.launcher                    # ports 8100/8101/8102, foreground
    python -m serving.launcher --config-name gpu  # use each model's configs/gpu.pbtxt

Tests use :class:`TritonServer` with ``ports=None`` (free ports) as a context manager.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
READY_TIMEOUT_S = 120.0


def cache_dir() -> Path:
    return Path(os.environ.get("INTRASCRIBE_CACHE", Path.home() / ".cache" / "intrascribe"))


@dataclass(frozen=True)
class TritonPorts:
    http: int = TRITON_HTTP_PORT
    grpc: int = TRITON_GRPC_PORT
    metrics: int = TRITON_METRICS_PORT

    @classmethod
    def free(cls) -> TritonPorts:
        socks = []
        try:
            for _ in range(3):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics}/metrics"


def _pytriton_root() -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    root = site / "pytriton" / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise RuntimeError(
            f"tritonserver not found under {root}: run this with the serve environment's Python "
            "(`make env-serve`, then .envs/serve/bin/python)"
        )
    return root


def libs_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / "nvidia_pytriton.libs"


# The Python backend passes tensors through one shared-memory region per stub. It starts at 1 MB and
# grows by 1 MB, and tritonserver keeps every old mapping of a grown region, so its RSS climbs with
# each growth (measured: +60 % from a 5- to a 20-minute diarization). One generous region that never
# needs to grow: /dev/shm is tmpfs, only pages actually written use memory.
PYTHON_SHM_BYTES = 64 << 20


def python_backend_shm_args(size: int = PYTHON_SHM_BYTES) -> list[str]:
    """tritonserver arguments: each stub's shared-memory region ``size`` bytes, growing by ``size``."""
    return [
        f"--backend-config=python,shm-default-byte-size={size}",
        f"--backend-config=python,shm-growth-byte-size={size}",
    ]


def server_tree() -> Path:
    """A tritonserver tree whose Python backend has the stub for this interpreter (built once)."""
    src = _pytriton_root()
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stamp = f"{src.resolve()}|{ver}"
    dest = cache_dir() / "tritonserver" / f"py{ver}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
    stub = src / "python_backend_stubs" / ver / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"the pytriton wheel has no Python backend stub for Python {ver}")
    shutil.copy2(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
    (tmp / ".complete").write_text(stamp)
    try:
        tmp.rename(dest)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class TritonServer:
    """A local tritonserver process serving a model repository on 127.0.0.1."""

    def __init__(
        self,
        model_repository: Path | str = MODEL_REPOSITORY,
        ports: TritonPorts | None = None,
        models: list[str] | None = None,
        config_name: str | None = None,
        log_path: Path | str | None = None,
        extra_args: list[str] | None = None,
        tree: Path | str | None = None,
    ):
        """``tree``: a tritonserver tree (``bin/``, ``backends/``) to run instead of the pytriton
        wheel's (e.g. an unpacked bundle); default :func:`server_tree`."""
        self.model_repository = Path(model_repository).resolve()
        self.tree = Path(tree) if tree is not None else None
        self.ports = ports or TritonPorts.free()
        self.models = models
        self.config_name = config_name
        self.log_path = Path(log_path) if log_path else cache_dir() / "logs" / f"triton-{self.ports.http}.log"
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        tree = self.tree if self.tree is not None else server_tree()
        cmd = [
            str(tree / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={tree / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={self.ports.http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.ports.grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--metrics-interval-ms=500",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
            *python_backend_shm_args(),
        ]
        if self.models is not None:
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={m}" for m in self.models]
        if self.config_name:
            cmd.append(f"--model-config-name={self.config_name}")
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(libs_path()), env.get("LD_LIBRARY_PATH", "")) if p)
        # One onnxruntime/BLAS thread pool per model instance unless a config says otherwise.
        env.setdefault("OMP_NUM_THREADS", "1")
        # glibc raises its mmap threshold after each large free (up to 32 MB), after which big numpy
        # buffers (dynamic batches of windows) come from the heap and fragment it: the stubs' RSS crept
        # up over hours. A fixed threshold keeps >= 1 MB buffers in mmap, returned to the OS when freed.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
        return env

    def start(self, timeout: float = READY_TIMEOUT_S) -> TritonServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.ports.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {self.process.returncode}; its log:\n{self.log_text()}"
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        log = self.log_text()
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s; its log:\n{log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-repository", default=str(MODEL_REPOSITORY))
    ap.add_argument("--http-port", type=int, default=TRITON_HTTP_PORT)
    ap.add_argument("--grpc-port", type=int, default=TRITON_GRPC_PORT)
    ap.add_argument("--metrics-port", type=int, default=TRITON_METRICS_PORT)
    ap.add_argument("--config-name", default=None, help="e.g. gpu: use configs/<name>.pbtxt of each model")
    ap.add_argument("--model", action="append", help="load only these models (repeatable)")
    ap.add_argument("--log", default=None, help="server log file")
    args = ap.parse_args(argv)
    server = TritonServer(
        args.model_repository,
        TritonPorts(args.http_port, args.grpc_port, args.metrics_port),
        models=args.model,
        config_name=args.config_name,
        log_path=args.log,
    )
    print(
        f"starting tritonserver on {server.ports.http_url} (HTTP), {server.ports.grpc_url} (gRPC), "
        f"{server.ports.metrics_url}; log: {server.log_path}",
        flush=True,
    )
    server.start()
    print("tritonserver is ready", flush=True)
    stop = {"now": False}

    def _handle(*_):
        stop["now"] = True

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    try:
        while not stop["now"] and server.process.poll() is None:
            time.sleep(0.5)
    finally:
        server.stop()
    return 0 if stop["now"] else 1


if __name__ == "__main__":
    sys.exit(main())
