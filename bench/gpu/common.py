"""What the GPU checks share (``asr_gpu_check.py``, ``diarization_gpu_check.py``): probe, the carried
tritonserver bundle and the backend stub's environment, the server process, our batch-size metric,
a KServe v2 HTTP client with binary tensors, closed-loop load levels, timing of direct calls and the
run harness that always writes ``$OUT/<check>.json`` + ``.log``.

Needs only the standard library and numpy at import (torch is imported where it is used), so the
Python-backend stub may import it too. The GPU machine has no tritonserver, no network and numpy 2
(see ``bench/gpu/README.md`` and ``shared/docs/PLATFORM.md``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from serving import launcher  # noqa: E402
from speechlib.interfaces import BATCH_SIZE_METRIC, SAMPLE_RATE  # noqa: E402

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
LOG_LINES: list[str] = []


def log(*parts) -> None:
    line = " ".join(str(p) for p in parts)
    LOG_LINES.append(line)
    print(line, flush=True)


def sh(cmd: list[str] | str, timeout: float = 30) -> str:
    try:
        p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"<{exc}>"


def torch_dtype(precision: str):
    """The torch dtype of a ``--precision`` name; ``tf32`` also switches TF32 matmul/cuDNN on."""
    import torch

    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        precision
    ]


# -- 1. probe --------------------------------------------------------------------------------------


def libpython_dir() -> str | None:
    """Folder of this interpreter's ``libpython3.X.so.1.0`` (the stub links it), or None."""
    name = (
        sysconfig.get_config_var("INSTSONAME")
        or f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    )
    candidates = [sysconfig.get_config_var("LIBDIR") or "", str(Path(sys.base_prefix) / "lib")]
    candidates += ["/usr/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/lib64", "/usr/lib"]
    for d in candidates:
        if d and (Path(d) / name).exists():
            return d
    found = glob.glob(f"/**/{name}", recursive=True) if os.environ.get("GPU_CHECK_SEARCH_LIBPYTHON") else []
    return str(Path(found[0]).parent) if found else None


def probe(device: str) -> dict:
    import torch

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "libpython_dir": libpython_dir(),
        "nvidia_smi": sh(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        ),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device; use --cpu for a dry run")
    return info


# -- 2. tritonserver + the stub's environment ----------------------------------------------------------


def unpack_bundle(bundle: Path, work: Path) -> Path:
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    archive = bundle / f"tritonserver-py{ver}.tar.xz"
    if not archive.exists():
        raise SystemExit(f"{archive} not found: run bench/gpu/make_bundle.sh {ver} {bundle}")
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="fully_trusted") if sys.version_info >= (3, 12) else tar.extractall(work)
    return work / "tritonserver"


def stub_environment(bundle: Path, work: Path) -> Path:
    """A venv: numpy<2 from the carried wheel first, then this interpreter's packages and the repo."""
    ver = f"{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted(bundle.glob(f"numpy-1.*-cp{ver}-*.whl"))
    if not wheels:
        raise SystemExit(f"no numpy<2 wheel for cp{ver} in {bundle}: run bench/gpu/make_bundle.sh")
    env = work / "stubenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(
        subprocess.check_output(
            [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--target", str(site), str(wheels[-1])], check=True)
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    (site / "zz_gpu_check.pth").write_text("\n".join([*ours, str(REPO_ROOT)]) + "\n")
    probe_np = subprocess.check_output(
        [
            str(env / "bin" / "python"),
            "-c",
            "import numpy, torch; print(numpy.__version__, torch.__version__)",
        ],
        text=True,
    ).strip()
    log(f"stub environment {env}: numpy, torch = {probe_np}")
    if not probe_np.startswith("1."):
        raise SystemExit(f"the stub environment resolves numpy {probe_np}; it must be < 2")
    return env


def prepare_triton(bundle: Path, work: Path) -> tuple[Path, Path, dict]:
    """Unpack the bundle and make the stub's venv -> (server tree, venv, libraries ``ldd`` misses)."""
    t0 = time.monotonic()
    root = unpack_bundle(bundle, work)
    env = stub_environment(bundle, work)
    ld = ":".join(p for p in [str(root / "nvidia_pytriton.libs"), libpython_dir() or ""] if p)
    missing = {}
    for name, path in (
        ("stub", "pytriton/tritonserver/backends/python/triton_python_backend_stub"),
        ("tritonserver", "pytriton/tritonserver/bin/tritonserver"),
    ):
        missing[name] = [
            x.strip() for x in sh(f"LD_LIBRARY_PATH={ld} ldd {root / path}").splitlines() if "not found" in x
        ]
    log(f"bundle unpacked, stub environment ready ({time.monotonic() - t0:.1f} s); ldd missing: {missing}")
    log("shm:", sh("df -h /dev/shm | tail -1"))
    return root, env, missing


def torch_cuda_lib_dirs() -> list[str]:
    """The ``lib`` folders of the ``nvidia-*`` wheels beside this interpreter's torch (cuDNN, cuBLAS...)."""
    dirs: list[str] = []
    for site in sys.path:
        if site.endswith(("site-packages", "dist-packages")):
            dirs += sorted(str(d) for d in Path(site).glob("nvidia/**/lib") if any(d.glob("lib*.so*")))
    return dirs


def parameters_pbtxt(params: dict) -> str:
    """``parameters`` lines of a config.pbtxt (string values)."""
    return "".join(
        f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in params.items()
    )


class Server(launcher.TritonServer):
    """``serving.launcher.TritonServer`` (free ports, 127.0.0.1, the same command line) run from the
    unpacked bundle instead of an installed pytriton wheel, with the stub's venv first on ``PATH``."""

    def __init__(self, root: Path, env: Path, repo: Path, log_path: Path):
        super().__init__(repo, log_path=log_path, tree=root / "pytriton" / "tritonserver")
        self.libs, self.env = root / "nvidia_pytriton.libs", env
        self.url, self.metrics_url = self.ports.http_url, self.ports.metrics_url

    def environment(self) -> dict[str, str]:
        environ = super().environment()
        environ["PATH"] = f"{self.env / 'bin'}:{environ['PATH']}"
        # torch's own CUDA libraries first: the wheel's nvidia_pytriton.libs holds an older cuDNN
        # with the same soname (seen on the H200: torch built for cuDNN 9.19 found 9.14 and refused)
        ld = [*torch_cuda_lib_dirs(), str(self.libs), libpython_dir() or "", environ["LD_LIBRARY_PATH"]]
        environ["LD_LIBRARY_PATH"] = ":".join(p for p in ld if p)
        return environ


# -- 4. clients ------------------------------------------------------------------------------------


def batch_metric(url: str, model: str) -> tuple[float, float]:
    """(count, sum) of our batch-size histogram (``BATCH_SIZE_METRIC``) for ``model``."""
    count = total = 0.0
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(BATCH_SIZE_METRIC) and f'model="{model}"' in line:
                name, value = line.split("{", 1)[0], float(line.rsplit(" ", 1)[1])
                if name == f"{BATCH_SIZE_METRIC}_count":
                    count += value
                elif name == f"{BATCH_SIZE_METRIC}_sum":
                    total += value
    return count, total


TRITON_DTYPES = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16}


class HttpClient:
    """One keep-alive connection; KServe v2 inference with binary input and output tensors."""

    def __init__(self, url: str):
        host, port = url.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        names = {np.dtype(v): k for k, v in TRITON_DTYPES.items()}
        arrays = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": k,
                        "shape": list(a.shape),
                        "datatype": names[a.dtype],
                        "parameters": {"binary_data_size": a.nbytes},
                    }
                    for k, a in arrays.items()
                ],
                "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
            }
        ).encode()
        self.conn.request(
            "POST",
            f"/v2/models/{model}/infer",
            body=header + b"".join(a.tobytes() for a in arrays.values()),
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{model}: HTTP {resp.status}: {body[:500]!r}")
        pos = int(resp.getheader("Inference-Header-Content-Length") or len(body))
        out = {}
        for o in json.loads(body[:pos])["outputs"]:
            dtype, shape = TRITON_DTYPES[o["datatype"]], o["shape"]
            size = o.get("parameters", {}).get("binary_data_size")
            if size is None:
                data = np.asarray(o["data"], dtype)
            else:
                data = np.frombuffer(body[pos : pos + size], dtype)
                pos += size
            if data.size != int(np.prod(shape)):
                raise RuntimeError(
                    f"{model}: output {o['name']} has {data.size} values for shape {shape} "
                    "(numpy 2 in the stub's environment empties outputs)"
                )
            out[o["name"]] = data.reshape(shape)
        return out


def load_level(
    server: Server, streams: int, seconds: float, step: Callable[[HttpClient, int], dict], models: list[str]
) -> dict:
    """``streams`` closed-loop clients for ``seconds``: each runs ``step(client, k)`` (one unit of work,
    validated by ``step``, returning counters such as ``audio_s`` to add up) again as soon as the last
    one returned; ``k`` counts ``i, i + streams, ...`` for stream ``i``. Latency is per step."""
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    counters: dict[str, float] = {}

    def client(i: int) -> None:
        c = HttpClient(server.url)
        k = i
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            got = step(c, k)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                for key, value in got.items():
                    counters[key] = counters.get(key, 0) + value
            k += streams

    before = {m: batch_metric(server.metrics_url, m) for m in models}
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(streams) as pool:
        for f in [pool.submit(client, i) for i in range(streams)]:
            f.result()
    wall = time.perf_counter() - t0
    time.sleep(0.7)  # the metrics port refreshes every 500 ms
    after = {m: batch_metric(server.metrics_url, m) for m in models}
    audio = counters.get("audio_s", 0.0)
    result = {
        "streams": streams,
        "wall_s": round(wall, 3),
        "requests": len(latencies),
        **{k: round(v, 1) for k, v in counters.items()},
        "audio_s_per_s": round(audio / wall, 2),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 4),
        "mean_batch": {},
        "executions": {},
    }
    for m in models:
        count, total = after[m][0] - before[m][0], after[m][1] - before[m][1]
        result["mean_batch"][m] = round(total / count, 2) if count else None
        result["executions"][m] = count
    return result


def noise_bursts(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    """Seeded speech-band noise with a 3 Hz envelope (random weights: only the sizes matter for cost)."""
    out = []
    for n in lengths:
        x = rng.normal(0, 1, n).astype(np.float32)
        x = np.convolve(x, np.ones(8, np.float32) / 8, mode="same")  # a little low-pass
        envelope = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi * 3 / SAMPLE_RATE)
        out.append((0.1 * x * envelope).astype(np.float32))
    return out


# -- 3. direct ----------------------------------------------------------------------------------------


def time_calls(fn: Callable[[], object], seconds: float, device: str) -> tuple[int, float]:
    """Call ``fn`` once to warm up, then repeatedly for ``seconds`` (at least twice) -> (calls, wall)."""
    import torch

    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() - t0 >= seconds and n >= 2:
            return n, time.perf_counter() - t0


def release(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


# -- harness ----------------------------------------------------------------------------------------


def add_arguments(ap: argparse.ArgumentParser, seconds_default: str, precision_default: str) -> None:
    """The options every GPU check has."""
    ap.add_argument("--cpu", action="store_true", help="dry run: CPU, small configuration, short levels")
    ap.add_argument(
        "--bundle", type=Path, default=REPO_ROOT / ".gpu-bundle", help="make_bundle.sh output folder"
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")))
    ap.add_argument("--streams", default=None, help="concurrent clients per load level (default 1,16,64)")
    ap.add_argument("--seconds", type=float, default=None, help=f"per load level (default {seconds_default})")
    ap.add_argument(
        "--precision",
        default=None,
        help=f"comma-separated: {', '.join(PRECISIONS)} (default {precision_default})",
    )
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--queue-delay-us", type=int, default=5000)
    ap.add_argument("--skip-direct", action="store_true")
    ap.add_argument(
        "--fidelity", action="store_true", help="--cpu only: check the torch code against a dev model"
    )


def precisions(ap: argparse.ArgumentParser, value: str) -> list[str]:
    out = value.split(",")
    if any(p not in PRECISIONS for p in out):
        ap.error(f"--precision: {', '.join(PRECISIONS)}, comma-separated")
    return out


class Run:
    """One run of a check: the ``result`` dict, a temporary work folder, the server in use. ``finish``
    runs the body and whatever happens writes ``<out>/<name>.json`` and ``<name>.log``."""

    def __init__(self, name: str, args: argparse.Namespace, **fields):
        self.name, self.out = name, args.out
        self.result = {
            **fields,
            "seed": args.seed,
            "max_batch": args.max_batch,
            "queue_delay_us": args.queue_delay_us,
            "ok": False,
        }
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.server: Server | None = None
        self.t_start = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)

    def serve(self, root: Path, env: Path, repo: Path, tag: str, timeout: float = 300) -> Server:
        """Start tritonserver on ``repo``; its log becomes ``<out>/triton_<tag>.log``."""
        self.server = Server(root, env, repo, self.work / f"triton_{tag}.log")
        t0 = time.monotonic()
        self.server.start(timeout)
        log(f"tritonserver ({tag}) ready in {time.monotonic() - t0:.1f} s")
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            shutil.copy2(self.server.log_path, self.out / self.server.log_path.name)
            self.server = None

    def finish(self, body: Callable[[], bool]) -> int:
        try:
            self.result["ok"] = bool(body())
        except BaseException as exc:  # noqa: BLE001 - whatever happens, write what we have
            self.result["error"] = f"{type(exc).__name__}: {exc}"
            log("ERROR:", self.result["error"])
        finally:
            self.stop_server()
            self.result["elapsed_s"] = round(time.monotonic() - self.t_start, 1)
            (self.out / f"{self.name}.json").write_text(json.dumps(self.result, indent=1, default=str) + "\n")
            (self.out / f"{self.name}.log").write_text("\n".join(LOG_LINES) + "\n")
            shutil.rmtree(self.work, ignore_errors=True)
        log(
            f"done in {self.result['elapsed_s']} s: ok={self.result['ok']}; {self.out / (self.name + '.json')}"
        )
        return 0 if self.result["ok"] else 1


# -- Triton Python backend -----------------------------------------------------------------------------


class BatchedTritonModel:
    """Base of the checks' Python-backend models: one network call per dynamic batch, its size to our
    batch-size metric. Model parameters: ``device`` (cuda|cpu), ``variant``, ``seed``, ``precision``.
    Subclasses define ``build(variant, seed, device, precision)``, ``parse(request)`` (one request ->
    its inputs, or ``serving.triton_io.RequestError``: that request fails alone) and ``run(items)``
    (the parsed inputs of the batch -> per request a dict output name -> array without the batch dim)."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        from serving import triton_io

        self.pb, self.io = pb_utils, triton_io
        ctx = triton_io.ModelContext(args)
        self.name = ctx.name
        self.metric = triton_io.BatchSizeMetric(ctx.name)
        self.build(
            ctx.parameter("variant", "full"),
            int(ctx.parameter("seed", "0")),
            ctx.parameter("device", "cuda"),
            ctx.parameter("precision", "fp32"),
        )

    def execute(self, requests):
        parsed, responses = {}, [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                parsed[i] = self.parse(request)
            except self.io.RequestError as exc:
                responses[i] = self.io.error_response(str(exc))
        if not parsed:
            return responses
        try:
            results = self.run(list(parsed.values()))
            self.metric.observe(len(parsed))
        except Exception as exc:  # noqa: BLE001 - fail this batch's requests, never the stub
            return [
                self.io.error_response(f"{self.name}: {exc}", invalid_argument=False) if r is None else r
                for r in responses
            ]
        for i, outputs in zip(parsed, results, strict=True):
            tensors = [self.pb.Tensor(k, np.ascontiguousarray(v[None])) for k, v in outputs.items()]
            responses[i] = self.pb.InferenceResponse(output_tensors=tensors)
        return responses
