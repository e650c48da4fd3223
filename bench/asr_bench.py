"""VAD + ASR throughput: our Triton path vs funasr-onnx in process, same ONNX files, same audio, same threads.

    .envs/serve/bin/python bench/asr_bench.py [--minutes 5] [--repeats 3] [--streams 1,16]
                                              [--ks 1,2] [--layouts 1x2,2x1] [--latency-calls 20]
                                              [--artifact sensevoice_full | --model-dir DIR]
                                              [--json FILE] [--quick]

What runs (docs/benchmarks.md, "## ASR", has the numbers and the exact commands):

* Audio: pyannote.audio's ``sample.wav`` (30 s of real speech, two speakers) tiled to ``--minutes``
  (``tests.audio.tiled``). With S streams the audio is cut into S contiguous pieces (stream i starts
  at offset i * total / S) processed concurrently: every configuration processes the same total
  audio, so throughput (audio seconds / wall second) is comparable across stream counts.
* Models: the ``--artifact`` export (default ``sensevoice_full``: 234 M params, random weights,
  ~937 MB fp32 ``model.onnx``) and the ``fsmn_vad`` export (``fsmn_vad.onnx``: the real
  fsmn-VAD weights), used by *both* sides. Both sides cut segments at 30 s
  (``max_single_segment_time``, what our ``vad`` does) and keep the 800 ms end silence.
* Ours: a tritonserver (serving.launcher) on a temporary repository holding ``vad``, ``asr`` (the
  artifact, ``instance count x intra_op_threads`` from ``--layouts``, e.g. ``1x2``) and the
  ``transcribe`` BLS (one server per layout, best layout reported); the client library (``ASRClient.transcribe_segments``: one ``vad`` request per
  stream, then one ``asr`` request per segment, all concurrent, batched by Triton). Mean ASR batch
  from our batch-size metric.
* funasr-onnx 0.4.3 (the official in-process runtime): a pool of k worker processes (``--ks``), each
  with ``Fsmn_vad`` + ``SenseVoiceSmall`` on 2/k onnxruntime intra-op threads; per stream one VAD task,
  then one ASR task per segment (``language="auto"``, ``textnorm="withitn"``), across the pool. Best k
  reported.
* Every side is loaded at once (funasr-onnx pools first, then tritonserver); per stream count each
  side gets one warm-up run (same stream count, first minute of the audio), then the ``--repeats`` timed runs go round the sides in turn (outside
  load falls on all alike), and each side's median is reported.
* Latency row: a 10 s clip (the first 10 s of ``sample.wav``) through the ``transcribe`` BLS end to
  end (gRPC request -> VAD -> ASR -> response), one call at a time, p50/p95 over ``--latency-calls``.

Threads are pinned for both sides and printed: OMP/MKL/OpenBLAS = 1 (numpy feature code), onnxruntime
intra-op as configured, inter-op 1 (ours; funasr-onnx runs its graphs sequentially). Client processes
(gRPC client, pool driver) share the same cores: on this 2-core machine only ratios mean anything.

``--quick``: the tiny random SenseVoice, 60 s of audio, streams 1,4, one repeat, 5 latency calls — the
dry-run/CI-sized check of the whole flow (about a minute). Exit status 1 if a side returned no text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Before numpy/onnxruntime are imported anywhere (this process, the pool's forks, tritonserver's stubs).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SAMPLE_RATE = 16000
MAX_SEGMENT_MS = 30000  # our asr takes <= 30 s per utterance; serving/fsmn_vad.py cuts VAD segments there
TOTAL_THREADS = 2
WARMUP_SECONDS = 60
BPE_NAME = "chn_jpn_yue_eng_ko_spectok.bpe.model"
_TAG = re.compile(r"<\|[^|]*\|>")


# -- audio -----------------------------------------------------------------------------------------


def load_audio(seconds: float) -> tuple[np.ndarray, str]:
    from inference_client.audio import decode_audio
    from tests.audio import pyannote_sample, tiled

    sample, _ = pyannote_sample()
    path = tiled(sample, seconds)
    audio = decode_audio(path)
    return np.ascontiguousarray(audio[: int(round(seconds * SAMPLE_RATE))], np.float32), str(path)


def stream_bounds(n_samples: int, streams: int) -> list[tuple[int, int]]:
    """Stream i = samples [i*L, (i+1)*L) of the whole audio (the last one takes the remainder)."""
    step = n_samples // streams
    return [(i * step, n_samples if i == streams - 1 else (i + 1) * step) for i in range(streams)]


def normalize_text(text: str) -> str:
    return "".join(_TAG.sub("", text).replace("\u2581", " ").split())


# -- model folders ---------------------------------------------------------------------------------


def artifact(name: str) -> Path:
    from export_scripts.build import artifact_dir

    return artifact_dir(name)


def funasr_dirs(work: Path, asr_dir: Path, vad_dir: Path) -> tuple[Path, Path]:
    """funasr-onnx's layouts over the same files: ``model.onnx`` + ``config.yaml`` (+ ``am.mvn``, BPE)."""
    import yaml

    asr = work / "funasr_asr"
    asr.mkdir()
    for name in ("model.onnx", "am.mvn", BPE_NAME):
        (asr / name).symlink_to((asr_dir / name).resolve())
    conf = yaml.safe_load((asr_dir / "config.yaml").read_text())
    conf["frontend_conf"]["dither"] = 0.0
    (asr / "config.yaml").write_text(yaml.safe_dump(conf))

    vad = work / "funasr_vad"
    vad.mkdir()
    (vad / "model.onnx").symlink_to((vad_dir / "fsmn_vad.onnx").resolve())
    (vad / "am.mvn").symlink_to((vad_dir / "am.mvn").resolve())
    conf = yaml.safe_load((vad_dir / "config.yaml").read_text())
    conf["model_conf"]["max_single_segment_time"] = MAX_SEGMENT_MS
    conf["frontend_conf"]["dither"] = 0.0
    (vad / "config.yaml").write_text(yaml.safe_dump(conf))
    return asr, vad


def _sub_once(pattern: str, repl: str, text: str, what: str) -> str:
    out, n = re.subn(pattern, repl, text, count=1)
    if n != 1:
        raise RuntimeError(f"could not set {what} in a config.pbtxt (pattern {pattern!r})")
    return out


def triton_repository(
    work: Path,
    asr_dir: Path,
    vad_dir: Path,
    instances: int,
    threads: int,
    max_batch: int | None = None,
    max_padding: float | None = None,
) -> Path:
    """vad + asr (the benchmark's model files, ``instances`` x ``threads``) + transcribe, by symlinks."""
    src = REPO_ROOT / "model_repository"
    repo = work / f"repository_{instances}x{threads}"
    for model, files in (("vad", vad_dir), ("asr", asr_dir), ("transcribe", None)):
        (repo / model / "1").mkdir(parents=True)
        config = (src / model / "config.pbtxt").read_text()
        if model == "asr":
            config = _sub_once(
                r"(instance_group\s*\[\s*\{\s*count:\s*)\d+", rf"\g<1>{instances}", config, "count"
            )
            config = _sub_once(
                r'(key:\s*"intra_op_threads"\s*value:\s*\{\s*string_value:\s*")\d+(")',
                rf"\g<1>{threads}\g<2>",
                config,
                "intra_op_threads",
            )
            if max_batch is not None:
                config = _sub_once(r"(max_batch_size:\s*)\d+", rf"\g<1>{max_batch}", config, "max_batch_size")
            if max_padding is not None:
                config = _sub_once(
                    r'(key:\s*"max_padding"\s*value:\s*\{\s*string_value:\s*")[^"]*(")',
                    rf"\g<1>{max_padding}\g<2>",
                    config,
                    "max_padding",
                )
        (repo / model / "config.pbtxt").write_text(config)
        shutil.copy2(src / model / "1" / "model.py", repo / model / "1" / "model.py")
        if files is not None:
            for f in files.iterdir():
                if f.is_file() and f.name != "model.py":
                    (repo / model / "1" / f.name).symlink_to(f.resolve())
    return repo


# -- our side: Triton + client library ------------------------------------------------------------


class TritonSide:
    def __init__(self, server, audio: np.ndarray):
        self.server = server
        self.audio = audio

    async def _run(self, bounds):
        from inference_client import TritonClient
        from inference_client.asr import ASRClient

        async with TritonClient(self.server.ports.grpc_url, max_in_flight=64, timeout_s=600) as client:
            asr = ASRClient(client)
            t0 = time.perf_counter()
            results = await asyncio.gather(*(asr.transcribe_segments(self.audio[a:b]) for a, b in bounds))
            return time.perf_counter() - t0, results

    def run(self, bounds) -> dict:
        from inference_client.metrics import batch_sizes, counts_after, inference_counts, scrape

        url = self.server.ports.metrics_url
        before, counts_before = batch_sizes(scrape(url), "asr"), inference_counts(scrape(url), "asr")
        seconds, results = asyncio.run(self._run(bounds))
        # Triton updates its counters just after responding: wait until every request is counted
        counts_after(url, "asr", counts_before, sum(len(r) for r in results))
        delta = batch_sizes(scrape(url), "asr") - before
        segs = [
            [(s.start_ms + a * 1000 // SAMPLE_RATE, s.end_ms + a * 1000 // SAMPLE_RATE, s.text) for s in r]
            for (a, _), r in zip(bounds, results, strict=True)
        ]
        return {"seconds": seconds, "segments": segs, "mean_batch": delta.mean, "executions": delta.count}

    async def _latency(self, clip: np.ndarray, calls: int) -> list[float]:
        from inference_client import TritonClient
        from inference_client.asr import ASRClient

        async with TritonClient(self.server.ports.grpc_url, timeout_s=120) as client:
            asr = ASRClient(client)
            for _ in range(2):
                await asr.transcribe_on_server(clip)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                out = await asr.transcribe_on_server(clip)
                times.append(time.perf_counter() - t0)
                if not out or not any(s.text for s in out):
                    raise RuntimeError("transcribe returned no text for the latency clip")
            return times

    def latency(self, clip: np.ndarray, calls: int) -> list[float]:
        return asyncio.run(self._latency(clip, calls))


# -- funasr-onnx side: a pool of worker processes ---------------------------------------------------

_AUDIO: np.ndarray | None = None  # set before the pool forks: workers read slices, no copies over pipes
_VAD = None
_ASR = None


def _worker_init(asr_dir: str, vad_dir: str, threads: int) -> None:
    global _VAD, _ASR
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        from funasr_onnx import Fsmn_vad, SenseVoiceSmall

        _VAD = Fsmn_vad(vad_dir, intra_op_num_threads=threads)
        _ASR = SenseVoiceSmall(asr_dir, intra_op_num_threads=threads)
        warm = _AUDIO[: 4 * SAMPLE_RATE]
        _VAD(warm)
        _ASR(warm[: 2 * SAMPLE_RATE], language="auto", textnorm="withitn")


def _ping(_: int) -> int:
    time.sleep(1.0)
    return os.getpid()


def _vad_task(a: int, b: int) -> list[tuple[int, int]]:
    segments = _VAD(_AUDIO[a:b])
    rows = segments[0] if segments else []
    return [(int(s), int(e)) for s, e in rows]


def _asr_task(a: int, b: int) -> str:
    return _ASR(_AUDIO[a:b], language="auto", textnorm="withitn")[0]


class FunasrSide:
    def __init__(self, audio: np.ndarray, asr_dir: Path, vad_dir: Path, k: int):
        global _AUDIO
        _AUDIO = audio
        self.k = k
        self.threads = TOTAL_THREADS // k
        ctx = mp.get_context("fork")
        self.pool = ctx.Pool(k, initializer=_worker_init, initargs=(str(asr_dir), str(vad_dir), self.threads))
        pids = self.pool.map(_ping, range(k), chunksize=1)  # every worker has loaded and warmed up
        self.pids = sorted(set(pids))

    def _stream(self, a: int, b: int):
        segs = self.pool.apply_async(_vad_task, (a, b)).get()
        jobs = []
        for s, e in segs:
            lo, hi = a + s * SAMPLE_RATE // 1000, min(b, a + e * SAMPLE_RATE // 1000)
            if hi - lo >= 400:
                jobs.append((s, e, self.pool.apply_async(_asr_task, (lo, hi))))
        ms = a * 1000 // SAMPLE_RATE
        return [(s + ms, e + ms, job.get()) for s, e, job in jobs]

    def run(self, bounds) -> dict:
        with ThreadPoolExecutor(len(bounds)) as drivers:
            t0 = time.perf_counter()
            futures = [drivers.submit(self._stream, a, b) for a, b in bounds]
            segs = [f.result() for f in futures]
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "segments": segs}

    def close(self) -> None:
        """The workers take their sentinels and exit (Pool.close + join). Not Pool.terminate(): it can
        hang for ever in its clean-up (cpython#78178), and did once in CI after this bench's last round.
        A worker still alive after 60 s is killed."""
        self.pool.close()
        joiner = threading.Thread(target=self.pool.join, daemon=True, name="funasr-pool-join")
        joiner.start()
        joiner.join(60)
        if joiner.is_alive():
            for proc in list(self.pool._pool):
                proc.kill()
            joiner.join(10)


# -- driver ----------------------------------------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
    """Median of the timed runs; segments (for the agreement check) from the run nearest the median."""
    secs = [r["seconds"] for r in runs]
    median = statistics.median(secs)
    mid = runs[min(range(len(runs)), key=lambda i: abs(secs[i] - median))]
    out = {"seconds": secs, "median_s": median, "segments": mid["segments"]}
    if "mean_batch" in mid:
        out["mean_batch"] = [round(r["mean_batch"], 2) for r in runs]
    return out


def agreement(ours, theirs) -> dict:
    """Segments with identical boundaries, and of those, identical text (tags and spaces ignored)."""
    a = {(s, e): t for stream in ours for s, e, t in stream}
    b = {(s, e): t for stream in theirs for s, e, t in stream}
    same = set(a) & set(b)
    text = sum(normalize_text(a[k]) == normalize_text(b[k]) for k in same)
    return {"ours": len(a), "funasr": len(b), "same_bounds": len(same), "same_text": text}


def machine_info() -> dict:
    import onnxruntime

    from bench import cpu_model

    cpu = cpu_model()
    try:
        from importlib.metadata import version

        funasr_onnx = version("funasr-onnx")
    except Exception:  # noqa: BLE001
        funasr_onnx = "?"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "funasr_onnx": funasr_onnx,
        "thread_env": {
            v: os.environ[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        },
    }


def parse_layout(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m or int(m[1]) * int(m[2]) != TOTAL_THREADS:
        raise argparse.ArgumentTypeError(
            f"layout {text!r}: want INSTANCESxTHREADS with product {TOTAL_THREADS}"
        )
    return int(m[1]), int(m[2])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="total audio per configuration (default 5)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", default="1,16", help="comma-separated stream counts")
    ap.add_argument("--ks", default="1,2", help="funasr-onnx pool sizes k (2/k threads each)")
    ap.add_argument(
        "--layouts",
        default="1x2,2x1",
        help="asr instance count x intra-op threads, comma-separated (best reported)",
    )
    ap.add_argument("--latency-calls", type=int, default=20)
    ap.add_argument(
        "--asr-max-batch",
        type=int,
        default=None,
        help="override asr's max_batch_size (experiments; default: as committed)",
    )
    ap.add_argument(
        "--asr-max-padding",
        type=float,
        default=None,
        help="override asr's max_padding (experiments; default: as committed)",
    )
    ap.add_argument("--artifact", default="sensevoice_full", help="export_scripts.build artifact for asr")
    ap.add_argument(
        "--model-dir", type=Path, default=None, help="use this export folder instead of --artifact"
    )
    ap.add_argument(
        "--vad-dir", type=Path, default=None, help="fsmn-VAD export folder (default: fsmn_vad artifact)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="tiny model, 60 s, streams 1,4, 1 repeat (dry run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.artifact, args.minutes, args.repeats, args.latency_calls = "sensevoice_tiny", 1.0, 1, 5
        if args.streams == "1,16":
            args.streams = "1,4"
    streams = [int(s) for s in args.streams.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    if any(TOTAL_THREADS % k for k in ks):
        ap.error(f"every k must divide {TOTAL_THREADS}")
    layouts = [parse_layout(x) for x in args.layouts.split(",")]

    from serving.launcher import TritonServer

    info = machine_info()
    asr_dir = (args.model_dir or artifact(args.artifact)).resolve()
    vad_dir = (args.vad_dir or artifact("fsmn_vad")).resolve()
    audio, wav = load_audio(args.minutes * 60)
    total_s = len(audio) / SAMPLE_RATE
    clip = np.ascontiguousarray(load_audio(30.0)[0][: 10 * SAMPLE_RATE])
    info.update(
        asr_model=str(asr_dir),
        vad_model=str(vad_dir),
        audio=wav,
        audio_seconds=total_s,
        asr_max_batch=args.asr_max_batch,
        asr_max_padding=args.asr_max_padding,
    )
    print(json.dumps(info, indent=1), flush=True)

    results: dict = {"info": info, "triton": {}, "funasr": {}, "latency": {}}
    work = Path(tempfile.mkdtemp(prefix="asr_bench_"))
    sides: dict[str, object] = {}
    servers = []
    try:
        # The funasr-onnx pools fork first, before this process has touched gRPC.
        fa_asr, fa_vad = funasr_dirs(work, asr_dir, vad_dir)
        for k in ks:
            t0 = time.perf_counter()
            side = FunasrSide(audio, fa_asr, fa_vad, k)
            sides[f"funasr/{k}"] = side
            print(
                f"funasr-onnx k={k} ({side.threads} threads each): ready in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        for inst, thr in layouts:
            name = f"{inst}x{thr}"
            repo = triton_repository(
                work, asr_dir, vad_dir, inst, thr, args.asr_max_batch, args.asr_max_padding
            )
            t0 = time.perf_counter()
            server = TritonServer(repo, log_path=work / f"triton_{name}.log").start()
            servers.append(server)
            sides[f"triton/{name}"] = TritonSide(server, audio)
            print(f"triton {name}: ready in {time.perf_counter() - t0:.1f} s", flush=True)

        # Interleaved: per stream count, one warm-up of every side, then repeat r of every side in turn,
        # so that load from outside the benchmark falls on all sides alike.
        for s in streams:
            bounds = stream_bounds(len(audio), s)
            runs: dict[str, list[dict]] = {key: [] for key in sides}
            warm = stream_bounds(min(len(audio), WARMUP_SECONDS * SAMPLE_RATE), s)
            for side in sides.values():
                side.run(warm)  # warm-up: the same stream count on the first minute
            for r in range(args.repeats):
                for key, side in sides.items():
                    out = side.run(bounds)
                    runs[key].append(out)
                    extra = f", mean asr batch {out['mean_batch']:.2f}" if "mean_batch" in out else ""
                    print(f"streams={s} repeat {r + 1}: {key}: {out['seconds']:.1f} s{extra}", flush=True)
            for key, rs in runs.items():
                group, name = key.split("/")
                results[group][f"{name}/{s}"] = summarize(rs)

        for key, side in sides.items():
            if key.startswith("triton/"):
                # alone: the funasr-onnx pools are idle (their threads sleep)
                lat = side.latency(clip, args.latency_calls)
                name = key.split("/")[1]
                results["latency"][name] = {
                    "calls": len(lat),
                    "p50_s": float(np.percentile(lat, 50)),
                    "p95_s": float(np.percentile(lat, 95)),
                    "max_s": max(lat),
                }
                print(f"transcribe latency {name}: {results['latency'][name]}", flush=True)
    finally:
        for server in servers:
            server.stop()
        for side in sides.values():
            if isinstance(side, FunasrSide):
                side.close()
        shutil.rmtree(work, ignore_errors=True)

    # -- table ---------------------------------------------------------------------------------
    ok = True
    rows = []
    summary = {}
    for s in streams:
        tri = {k: v for k, v in results["triton"].items() if k.endswith(f"/{s}")}
        fun = {k: v for k, v in results["funasr"].items() if k.endswith(f"/{s}")}
        best_t = min(tri, key=lambda k: tri[k]["median_s"])
        best_f = min(fun, key=lambda k: fun[k]["median_s"])
        t_tp = total_s / tri[best_t]["median_s"]
        f_tp = total_s / fun[best_f]["median_s"]
        for key, r in sorted(tri.items()):
            rows.append(
                (
                    s,
                    f"ours (Triton {key.split('/')[0]})",
                    r["median_s"],
                    total_s / r["median_s"],
                    r["seconds"],
                    r.get("mean_batch"),
                )
            )
        for key, r in sorted(fun.items()):
            k = int(key.split("/")[0])
            rows.append(
                (
                    s,
                    f"funasr-onnx k={k}x{TOTAL_THREADS // k}",
                    r["median_s"],
                    total_s / r["median_s"],
                    r["seconds"],
                    None,
                )
            )
        agree = agreement(tri[best_t]["segments"], fun[best_f]["segments"])
        summary[s] = {
            "ours": best_t.split("/")[0],
            "funasr_k": int(best_f.split("/")[0]),
            "ours_audio_s_per_s": t_tp,
            "funasr_audio_s_per_s": f_tp,
            "ratio": t_tp / f_tp,
            "target": 0.9 if s == 1 else 1.0,
            "agreement": agree,
        }
        texts = [t for stream in tri[best_t]["segments"] for *_, t in stream]
        ftexts = [t for stream in fun[best_f]["segments"] for *_, t in stream]
        if not any(texts) or not any(ftexts):
            ok = False
            print(f"ERROR: streams={s}: a side returned no text (ours {len(texts)}, funasr {len(ftexts)})")
    results["summary"] = summary

    print(
        f"\n{total_s:.0f} s of audio per configuration, median of {args.repeats} (seconds of each run listed)"
    )
    print(f"{'streams':>7} | {'side':<26} | {'median s':>8} | {'audio s/s':>9} | runs (s) | mean asr batch")
    for s, side, med, tp, secs, mb in rows:
        runs = ", ".join(f"{x:.1f}" for x in secs)
        print(f"{s:>7} | {side:<26} | {med:8.1f} | {tp:9.2f} | {runs} | {mb if mb is not None else ''}")
    print()
    for s, v in summary.items():
        verdict = "met" if v["ratio"] >= v["target"] else "NOT met"
        print(
            f"streams={s}: ours ({v['ours']}) / funasr-onnx (best k={v['funasr_k']}) = {v['ratio']:.2f}x "
            f"(target >= {v['target']}x: {verdict}); segments ours {v['agreement']['ours']}, funasr "
            f"{v['agreement']['funasr']}, same bounds {v['agreement']['same_bounds']}, same text "
            f"{v['agreement']['same_text']}"
        )
    for name, lat in results["latency"].items():
        print(
            f"transcribe (BLS) 10 s clip, Triton {name}: p50 {lat['p50_s']:.2f} s, p95 {lat['p95_s']:.2f} s "
            f"over {lat['calls']} calls (target: STT < 2 s)"
        )
    if args.json:
        for side in ("triton", "funasr"):
            for r in results[side].values():
                r.pop("segments", None)
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
