"""GPU check for ``asr``: SenseVoiceSmall (full size, torch on CUDA) served by tritonserver on the GPU machine.

    python3 bench/gpu/asr_gpu_check.py                  # on the GPU machine (see bench/gpu/README.md)
    .envs/export/bin/python bench/gpu/asr_gpu_check.py --cpu --bundle /tmp/gpu-bundle-311   # dry run here

The GPU machine has Python 3.12, torch with CUDA, numpy 2, no tritonserver, no FunASR, no network. So:

1. probe: nvidia-smi, torch.cuda, Python, libpython (the backend stub links it);
2. unpack ``<bundle>/tritonserver-py<X.Y>.tar.xz`` (``bench/gpu/make_bundle.sh``) and make the stub's
   environment: a venv whose site-packages holds the carried numpy<2 wheel first, then (a ``.pth``)
   this interpreter's site-packages (torch) and the repository; its ``bin`` goes first on tritonserver's
   ``PATH`` (how the stub picks its Python environment);
3. direct: the model in this process (no Triton) at batch 1/16/64 of 10 s utterances -> audio s / s;
4. served: a temporary repository with one model ``asr_gpu`` (``bench/gpu/sensevoice_torch.py``:
   kaldi fbank + LFR on the device, the SenseVoiceSmall encoder, greedy CTC; dynamic batching of
   ragged waveforms up to 64), weights random from the dev seed on the device; closed-loop clients
   (1/16/64 concurrent streams, HTTP with binary tensors, seeded utterances of 3-15 s) for
   ``--seconds`` each -> throughput, request latency p50/p95, mean batch from our batch-size metric.

The repository's ``asr`` model has no torch runtime yet (``runtime: torchscript`` fails at load time:
the serving environment may not import torch), so the GPU path lives in this check's own model
folder. Results: ``$OUT/asr_gpu_check.json`` and ``$OUT/asr_gpu_check.log`` (+ ``triton_<precision>.log``);
``OUT`` defaults to ``./gpu-out``. ``--cpu``: the same flow on the CPU with the tiny configuration;
with ``--fidelity`` it also checks this torch network and front end against the tiny dev model's ONNX
export and ``speechlib.features`` (needs the build cache and ``.envs/serve``). Exit 0 when every step
ran and every response held tokens.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

SAMPLE_RATE = 16000
MODEL = "asr_gpu"
PROMPTS = 4
METRIC = "intrascribe_network_batch_size"  # speechlib.interfaces.BATCH_SIZE_METRIC
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
    root = work / "tritonserver"
    return root


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
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            str(wheels[-1]),
        ],
        check=True,
    )
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


def free_ports(n: int = 3) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_model(repo: Path, args, device: str, variant: str) -> None:
    folder = repo / MODEL
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(
        "from bench.gpu.sensevoice_torch import TritonPythonModel  # noqa: F401\n"
    )
    (folder / "config.pbtxt").write_text(
        f"""name: "{MODEL}"
backend: "python"
max_batch_size: {args.max_batch}
input [ {{ name: "WAVEFORM" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }} ]
output [
  {{ name: "TOKEN_IDS" data_type: TYPE_INT32 dims: [ -1 ] }},
  {{ name: "NUM_TOKENS" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "NUM_FRAMES" data_type: TYPE_INT32 dims: [ 1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: {args.queue_delay_us} }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "device" value: {{ string_value: "{device}" }} }}
parameters {{ key: "variant" value: {{ string_value: "{variant}" }} }}
parameters {{ key: "seed" value: {{ string_value: "{args.seed}" }} }}
parameters {{ key: "precision" value: {{ string_value: "{args.precision}" }} }}
"""
    )


class Server:
    def __init__(self, root: Path, env: Path, repo: Path, log_path: Path):
        self.ports = free_ports()
        server = root / "pytriton" / "tritonserver"
        libs = root / "nvidia_pytriton.libs"
        cmd = [
            str(server / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={server / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={self.ports[0]}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.ports[1]}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.ports[2]}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--metrics-interval-ms=500",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
        ]
        environ = dict(os.environ)
        environ["PATH"] = f"{env / 'bin'}:{environ.get('PATH', '')}"
        ld = (
            [str(libs)]
            + ([libpython_dir()] if libpython_dir() else [])
            + [environ.get("LD_LIBRARY_PATH", "")]
        )
        environ["LD_LIBRARY_PATH"] = ":".join(p for p in ld if p)
        environ.setdefault("OMP_NUM_THREADS", "1")
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=environ, start_new_session=True
            )
        self.url = f"127.0.0.1:{self.ports[0]}"
        self.metrics_url = f"http://127.0.0.1:{self.ports[2]}/metrics"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited ({self.process.returncode}):\n{self.log_path.read_text()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"tritonserver not ready after {timeout:.0f} s:\n{self.log_path.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


# -- 4. clients ------------------------------------------------------------------------------------


def batch_metric(url: str) -> tuple[float, float]:
    """(count, sum) of our batch-size histogram for ``asr_gpu`` from the metrics port."""
    count = total = 0.0
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(METRIC) and f'model="{MODEL}"' in line:
                name, value = line.split("{", 1)[0], float(line.rsplit(" ", 1)[1])
                if name == f"{METRIC}_count":
                    count += value
                elif name == f"{METRIC}_sum":
                    total += value
    return count, total


class HttpClient:
    """One keep-alive connection; KServe v2 inference with the waveform as a binary tensor."""

    def __init__(self, url: str):
        host, port = url.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)

    def infer(self, wave: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(wave, np.float32).tobytes()
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "WAVEFORM",
                        "shape": [1, wave.size],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "outputs": [
                    {"name": "TOKEN_IDS", "parameters": {"binary_data": False}},
                    {"name": "NUM_TOKENS", "parameters": {"binary_data": False}},
                    {"name": "NUM_FRAMES", "parameters": {"binary_data": False}},
                ],
            }
        ).encode()
        self.conn.request(
            "POST",
            f"/v2/models/{MODEL}/infer",
            body=header + raw,
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:500]!r}")
        n = int(resp.getheader("Inference-Header-Content-Length") or len(body))
        out = {o["name"]: o for o in json.loads(body[:n])["outputs"]}
        ids = np.asarray(out["TOKEN_IDS"]["data"], np.int32)
        frames = int(out["NUM_FRAMES"]["data"][0])
        expect = PROMPTS + (((wave.size - 400) // 160 + 1) + 5) // 6  # 4 prompts + LFR frames
        if frames != expect or ids.size != int(out["NUM_TOKENS"]["data"][0]):
            raise RuntimeError(
                f"broken output: NUM_FRAMES {frames} (want {expect}), {ids.size} ids vs NUM_TOKENS "
                f"{out['NUM_TOKENS']['data']} (numpy 2 in the stub's environment empties outputs)"
            )
        return ids


def utterances(seed: int, count: int, lo_s: float, hi_s: float) -> list[np.ndarray]:
    """Seeded speech-band noise bursts of 3-15 s (random weights: only the lengths matter for cost)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.uniform(lo_s, hi_s) * SAMPLE_RATE)
        x = rng.normal(0, 1, n).astype(np.float32)
        x = np.convolve(x, np.ones(8, np.float32) / 8, mode="same")  # a little low-pass
        envelope = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi * 3 / SAMPLE_RATE)
        out.append((0.1 * x * envelope).astype(np.float32))
    return out


def load_level(server: Server, streams: int, seconds: float, clips: list[np.ndarray]) -> dict:
    """``streams`` closed-loop clients for ``seconds``: each sends its next clip when the last returns."""
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    latencies, audio, tokens = [], [0.0], [0]

    def client(i: int) -> None:
        c = HttpClient(server.url)
        k = i
        while time.monotonic() < stop:
            wave = clips[k % len(clips)]
            t0 = time.perf_counter()
            ids = c.infer(wave)
            dt = time.perf_counter() - t0
            with lock:
                tokens[0] += ids.size
                latencies.append(dt)
                audio[0] += wave.size / SAMPLE_RATE
            k += streams

    before = batch_metric(server.metrics_url)
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(streams) as pool:
        for f in [pool.submit(client, i) for i in range(streams)]:
            f.result()
    wall = time.perf_counter() - t0
    time.sleep(0.7)  # the metrics port refreshes every 500 ms
    after = batch_metric(server.metrics_url)
    count, total = after[0] - before[0], after[1] - before[1]
    return {
        "streams": streams,
        "wall_s": round(wall, 3),
        "requests": len(latencies),
        "tokens": tokens[0],
        "audio_s": round(audio[0], 1),
        "audio_s_per_s": round(audio[0] / wall, 2),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 4),
        "mean_batch": round(total / count, 2) if count else None,
        "executions": count,
    }


# -- 3. direct ----------------------------------------------------------------------------------------


def direct(recognizer, batches: list[int], seconds_each: float, device: str) -> list[dict]:
    import torch

    rng = np.random.default_rng(1)
    out = []
    for b in batches:
        waves = [rng.normal(0, 0.1, 10 * SAMPLE_RATE).astype(np.float32) for _ in range(b)]
        recognizer(waves)  # warm-up for this shape
        n, t0 = 0, time.perf_counter()
        while True:
            recognizer(waves)
            n += 1
            if device == "cuda":
                torch.cuda.synchronize()
            if time.perf_counter() - t0 >= seconds_each and n >= 2:
                break
        wall = time.perf_counter() - t0
        out.append(
            {
                "batch": b,
                "calls": n,
                "s_per_call": round(wall / n, 4),
                "audio_s_per_s": round(n * b * 10 / wall, 1),
            }
        )
        log(f"direct batch {b}: {out[-1]}")
    return out


# -- --fidelity (CPU dry run only) ------------------------------------------------------------------


def fidelity() -> dict:
    """The tiny dev model (FunASR's model.pt) in this torch code vs its ONNX export; the torch front end
    vs speechlib.features (kaldi-native-fbank, run in .envs/serve)."""
    import onnxruntime as ort
    import torch

    from bench.gpu.sensevoice_torch import Frontend, SenseVoice
    from export_scripts.build import ARTIFACTS, artifact_dir, dev_source
    from export_scripts.common import default_cache_root
    from export_scripts.sensevoice_dev import ENCODERS

    cache = (default_cache_root() / "models").expanduser().resolve()
    art = next(a for a in ARTIFACTS if a.name == "sensevoice_tiny")
    src, onnx_dir = dev_source(art, cache), artifact_dir("sensevoice_tiny")
    model = SenseVoice(ENCODERS["tiny"])
    missing, unexpected = model.load_state_dict(
        torch.load(src / "model.pt", map_location="cpu"), strict=False
    )
    model.eval()
    rng = np.random.default_rng(0)
    feats = rng.normal(0, 1, (2, 57, 560)).astype(np.float32)
    lens = np.array([57, 40], np.int32)
    lang, tn = np.array([0, 4], np.int32), np.array([14, 15], np.int32)
    sess = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    ref, ref_lens = sess.run(
        None,
        {
            "speech": feats * (np.arange(57)[None, :, None] < lens[:, None, None]),
            "speech_lengths": lens,
            "language": lang,
            "textnorm": tn,
        },
    )
    with torch.no_grad():
        got, got_lens = model(
            torch.from_numpy(feats * (np.arange(57)[None, :, None] < lens[:, None, None])),
            torch.from_numpy(lens).long(),
            torch.from_numpy(lang).long(),
            torch.from_numpy(tn).long(),
        )
    got = got.numpy()
    diffs = [float(np.abs(got[i, : int(ref_lens[i])] - ref[i, : int(ref_lens[i])]).max()) for i in range(2)]
    result = {
        "state_dict_missing": missing,
        "state_dict_unexpected": unexpected,
        "network_max_abs_diff": max(diffs),
        "lens_equal": got_lens.tolist() == ref_lens.tolist(),
    }

    serve = REPO_ROOT / ".envs" / "serve" / "bin" / "python"
    if serve.exists():
        wave = (0.1 * rng.normal(0, 1, 3 * SAMPLE_RATE + 123)).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "w.npy", wave)
            code = (
                "import numpy as np, sys; from speechlib.features import FrontendConfig, fbank, lfr_cmvn;"
                "w=np.load(sys.argv[1]); c=FrontendConfig(window='hamming', lfr_m=7, lfr_n=6);"
                "np.save(sys.argv[2], lfr_cmvn(fbank(w, c), 7, 6, None))"
            )
            subprocess.run(
                [str(serve), "-c", code, str(Path(tmp) / "w.npy"), str(Path(tmp) / "f.npy")],
                check=True,
                cwd=REPO_ROOT,
            )
            want = np.load(Path(tmp) / "f.npy")
        feats_t, n = Frontend()([torch.from_numpy(wave)])
        mine = feats_t[0, : int(n[0])].numpy()
        result["frontend_frames"] = [int(mine.shape[0]), int(want.shape[0])]
        result["frontend_max_abs_diff"] = (
            float(np.abs(mine - want).max()) if mine.shape == want.shape else None
        )
    return result


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="dry run: CPU, tiny configuration, short levels")
    ap.add_argument(
        "--bundle", type=Path, default=REPO_ROOT / ".gpu-bundle", help="make_bundle.sh output folder"
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")))
    ap.add_argument("--streams", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=None, help="per load level (default 20; --cpu 4)")
    ap.add_argument(
        "--precision",
        default=None,
        help="comma-separated: fp32, tf32, fp16, bf16 (default fp32,fp16; --cpu fp32)",
    )
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--queue-delay-us", type=int, default=5000)
    ap.add_argument(
        "--seed", type=int, default=None, help="default: the dev seed (export_scripts.sensevoice_dev)"
    )
    ap.add_argument("--skip-direct", action="store_true")
    ap.add_argument(
        "--fidelity", action="store_true", help="--cpu only: check the torch code against the tiny dev model"
    )
    args = ap.parse_args(argv)

    from export_scripts.sensevoice_dev import BLANK_BIAS, DEFAULT_SEED, ENCODERS

    device, variant = ("cpu", "tiny") if args.cpu else ("cuda", "full")
    args.seed = DEFAULT_SEED if args.seed is None else args.seed
    seconds = args.seconds if args.seconds is not None else (4.0 if args.cpu else 20.0)
    streams = [int(s) for s in args.streams.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    args.precision = args.precision or ("fp32" if args.cpu else "fp32,fp16")
    if any(p not in ("fp32", "tf32", "fp16", "bf16") for p in args.precision.split(",")):
        ap.error("--precision: fp32, tf32, fp16 or bf16, comma-separated")
    result: dict = {
        "device": device,
        "variant": variant,
        "precisions": args.precision,
        "seed": args.seed,
        "max_batch": args.max_batch,
        "queue_delay_us": args.queue_delay_us,
        "ok": False,
    }
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    server = None
    try:
        result["probe"] = probe(device)
        log("probe:", json.dumps(result["probe"]))
        if args.fidelity:
            result["fidelity"] = fidelity()
            log("fidelity:", json.dumps(result["fidelity"]))

        from bench.gpu.sensevoice_torch import Recognizer

        precisions = args.precision.split(",")
        result["direct"], result["served"] = {}, {}
        if not args.skip_direct:
            for prec in precisions:
                t0 = time.monotonic()
                rec = Recognizer(ENCODERS[variant], args.seed, BLANK_BIAS, device, prec)
                result["params_m"] = round(rec.params / 1e6, 2)
                log(
                    f"model {variant} {prec}: {result['params_m']} M params on {device} ({time.monotonic() - t0:.1f} s)"
                )
                result["direct"][prec] = direct(rec, [1, 16, 64], 1.0 if args.cpu else 3.0, device)
                del rec
                if device == "cuda":
                    import torch

                    torch.cuda.empty_cache()

        t0 = time.monotonic()
        root = unpack_bundle(args.bundle, work)
        env = stub_environment(args.bundle, work)
        ld = ":".join(p for p in [str(root / "nvidia_pytriton.libs"), libpython_dir() or ""] if p)
        missing = {}
        for name, path in (
            ("stub", "pytriton/tritonserver/backends/python/triton_python_backend_stub"),
            ("tritonserver", "pytriton/tritonserver/bin/tritonserver"),
        ):
            missing[name] = [
                x.strip()
                for x in sh(f"LD_LIBRARY_PATH={ld} ldd {root / path}").splitlines()
                if "not found" in x
            ]
        result["ldd_missing"] = missing
        log(
            f"bundle unpacked, stub environment ready ({time.monotonic() - t0:.1f} s); ldd missing: {missing}"
        )
        log("shm:", sh("df -h /dev/shm | tail -1"))
        clips = utterances(args.seed, 256, 3.0, 15.0)
        for prec in precisions:
            repo = work / f"repository_{prec}"
            args_p = argparse.Namespace(**{**vars(args), "precision": prec})
            write_model(repo, args_p, device, variant)
            server = Server(root, env, repo, work / f"triton_{prec}.log")
            t0 = time.monotonic()
            server.wait_ready(300)
            log(f"tritonserver ({prec}) ready in {time.monotonic() - t0:.1f} s")
            load_level(server, max(streams), min(seconds, 3.0), clips)  # warm-up: every batch shape path
            levels = []
            for s in streams:
                r = load_level(server, s, seconds, clips)
                levels.append(r)
                log(f"served {prec} streams={s}: {json.dumps(r)}")
            result["served"][prec] = {"ready_s": round(time.monotonic() - t0, 1), "levels": levels}
            server.stop()
            shutil.copy2(server.log_path, args.out / f"triton_{prec}.log")
            server = None
        result["ok"] = all(r["requests"] > 0 for v in result["served"].values() for r in v["levels"])
    except BaseException as exc:  # noqa: BLE001 - whatever happens, write what we have
        result["error"] = f"{type(exc).__name__}: {exc}"
        log("ERROR:", result["error"])
    finally:
        if server is not None:
            server.stop()
            shutil.copy2(server.log_path, args.out / server.log_path.name)
        result["elapsed_s"] = round(time.monotonic() - t_start, 1)
        (args.out / "asr_gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        (args.out / "asr_gpu_check.log").write_text("\n".join(LOG_LINES) + "\n")
        shutil.rmtree(work, ignore_errors=True)
    log(f"done in {result['elapsed_s']} s: ok={result['ok']}; {args.out / 'asr_gpu_check.json'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
