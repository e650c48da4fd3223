"""End to end: our transcription (decode -> VAD -> ASR -> diarization -> speakers on segments) vs
what a user would run instead (funasr-onnx VAD + SenseVoice, then pyannote.audio's pipeline), on the
same weights, the same audio and the same 2 CPU threads per side.

    .envs/serve/bin/python bench/transcription_bench.py [--minutes 10] [--repeats 3] [--ref-repeats 3]
        [--asr-artifact sensevoice_full | --asr-dir DIR] [--diarization-artifact pyannote_full |
         --diarization-dirs EXPORT SOURCE] [--json FILE]
        [--memory-hours 1,2,4 --skip-speed [--through-api] --asr-artifact sensevoice_fixture
         --diarization-artifact pyannote_fixture] [--quick]

What runs (docs/benchmarks.md, "## Transcription (end to end)", has the numbers and the commands):

* Audio: ``--minutes`` of synthetic 2/3/4-speaker meetings (tests/meetings.py, espeak-ng voices)
  tiled in random order with random gains (``bench.diarization_bench.make_audio``), a 16 kHz WAV.
* Ours: one tritonserver with ``vad`` (the ``fsmn_vad`` export), ``asr`` (``--asr-artifact``,
  2 instances x 1 intra-op thread as committed for CPU), ``segmentation`` + ``speaker_embedding``
  (``--diarization-artifact``, committed CPU configs); :meth:`Transcriber.transcribe` on the WAV file
  (decode with PyAV to a work folder, chunked VAD, ASR of every segment, diarization concurrently,
  speaker attribution) through one :class:`TritonClient`, as the api's batch job runs it (the api +
  worker path: ``--through-api`` below).
* Reference: funasr-onnx 0.4.3 (``Fsmn_vad`` + ``SenseVoiceSmall`` on the same ONNX files, a pool of
  ``--ks`` processes x 2/k threads as in bench/asr_bench.py: VAD over the whole file, then one ASR
  task per segment), then pyannote.audio's ``SpeakerDiarization`` on the same diarization weights in
  the export environment (``bench/diarization_bench.py --pyannote-worker``, torch 2 threads), one
  process after the other (numpy 1 and 2 cannot share one process); reference time = the sum.
  Model loading is outside both sides' times (our server is started once; each pyannote process
  loads its pipeline and warms up on 30 s before its timed run).
* Procedure: every side warmed up (ours: 30 s), then rounds ``r = 1..max(repeats)``: the reference
  (if ``r <= --ref-repeats``), then ours (if ``r <= --repeats``), so outside load falls on both
  alike; medians. The JSON is rewritten after every round (a run cut short keeps what it measured;
  SIGTERM stops the servers and pools cleanly). ``uptime``'s load average is recorded at the start and the end.
* Agreement: segments with identical VAD bounds and, of those, identical text (tags and spaces
  ignored) — ours the engine's ASR result per VAD segment (its chunk checkpoints, what the job
  stores), the reference's from funasr-onnx — and whether the stored transcript's whole text (its
  segments split at speaker changes) equals the reference's, tags and spaces ignored; DER
  between the two speaker labelings (``tests.diarization_helpers.frame_der``: 10 ms frames, no
  collar, optimal mapping), pyannote's exclusive diarization as reference, ours the exclusive turns
  the transcript's speakers come from.
* ``--memory-hours``: one transcription per length of tiled audio on one server, peak RSS of this
  process (the worker's engine: ``client``), tritonserver and every stub (tests/memory.py).
* ``--through-api`` (with ``--memory-hours``): the same server, plus the api (``python -m api``,
  uvicorn) and one worker (``python -m api.worker``) as separate processes on an embedded SQLite
  database, huey's SQLite queue and local blobs in the temp folder, the worker pointed at that
  Triton and the served diarization export's params. A registered user's API key uploads each
  tiled WAV (streamed from the file) to ``POST /api/v1/transcriptions/batch``, polls
  ``GET /api/v1/jobs/{id}`` every 2 s (first time each progress stage is seen), fetches the stored
  transcript once and checks it has segments and speakers. Peak RSS of the api, the worker (with any
  children), tritonserver and every stub: each process's kernel ``VmHWM`` reset before the upload
  (``exact``), else 0.1/0.5 s sampling; the job's own stage timings (``result.timings``).

``--quick``: tiny random models (``sensevoice_tiny``, ``pyannote_small``), 30 s, one repeat — the
CI-sized dry run of the whole flow (tests/test_bench_quick.py). Its numbers mean nothing. Exit
status 1 when a side returned no text or no speaker turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import asr_bench  # noqa: E402 - pins OMP/MKL/OpenBLAS threads to 1 before numpy loads
from bench.diarization_bench import export_folders, make_audio  # noqa: E402
from export_scripts.common import EXPORT_PYTHON  # noqa: E402

SAMPLE_RATE = 16000
THREADS = 2
WARMUP_S = 30.0


# -- our side ---------------------------------------------------------------------------------------


def build_repository(work: Path, asr_dir: Path, vad_dir: Path, diarization_dir: Path) -> Path:
    """vad + asr (2 x 1 thread) + transcribe (bench/asr_bench.py) and segmentation + speaker_embedding
    (tests/diarization_helpers.py), the given exports' files, in one repository."""
    from tests.diarization_helpers import diarization_repository

    repo = asr_bench.triton_repository(work, asr_dir, vad_dir, instances=2, threads=1)
    return diarization_repository(repo, diarization_dir)


async def _transcribe(url: str, wav: Path, settings, max_speakers: int | None = None):
    from inference_client import TritonClient
    from inference_client.transcription import ChunkCheckpoint, Transcriber, TranscriptionOptions

    chunks: list = []  # the job stores these checkpoints; here they give the ASR text per VAD segment

    def keep(checkpoint) -> None:
        if isinstance(checkpoint, ChunkCheckpoint):
            chunks.append(checkpoint)

    async with TritonClient(url, timeout_s=600) as client:
        t0 = time.perf_counter()
        result = await Transcriber(client, diarization_settings=settings).transcribe(
            wav,
            TranscriptionOptions(language="auto", use_itn=True, max_speakers=max_speakers),
            on_checkpoint=keep,
        )
        return time.perf_counter() - t0, result, [r for c in chunks for r in c.segments]


def run_ours(url: str, wav: Path, settings, max_speakers: int | None = None) -> dict:
    from tests.diarization_helpers import as_tuples

    seconds, result, recognized = asyncio.run(_transcribe(url, wav, settings, max_speakers))
    return {
        "seconds": seconds,
        "segments": [(r.start_ms, r.end_ms, r.text) for r in recognized],  # one per VAD segment
        "transcript_text": "".join(s.text for s in result.transcript.segments),
        "transcript_segments": len(result.transcript.segments),
        "turns": as_tuples(result.turns),
        "speakers": len({s.speaker for s in result.transcript.segments if s.speaker}),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
    }


# -- the reference ----------------------------------------------------------------------------------


def run_pyannote(
    source: Path, wav: Path, work: Path, cpu: bool = True, max_speakers: int | None = None
) -> dict:
    """One timed pyannote.audio run in a fresh export-environment process (after its 30 s warm-up)."""
    result = work / "pyannote.json"
    cmd = [str(EXPORT_PYTHON), str(REPO_ROOT / "bench" / "diarization_bench.py"), "--pyannote-worker"]
    cmd += ["--model-dir", str(source), "--wav", str(wav), "--threads", str(THREADS), "--repeats", "1"]
    cmd += ["--result", str(result)] + (["--cpu"] if cpu else [])
    cmd += ["--max-speakers", str(max_speakers)] if max_speakers else []
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), PYANNOTE_METRICS_ENABLED="false")
    subprocess.run(cmd, check=True, cwd=REPO_ROOT, env=env, stdout=sys.stderr)
    out = json.loads(result.read_text())
    import numpy as np

    from export_scripts.reference_diarization import load

    # where pyannote's own speaker selection was a tie (its choice there is arbitrary: unstable
    # argsort; docs/diarization.md, "Ties"), recorded inside its run
    rec = load(result.with_suffix(".npz"))[0]
    return {
        "seconds": out["times"][0],
        "turns": [tuple(t) for t in out["exclusive_turns"]],
        "exclusive_tied": np.asarray(rec["exclusive_tied"], bool),
        "tied_grid": (float(rec["tied_start"]), float(rec["tied_step"]), float(rec["tied_duration"])),
        "peak_rss_mib": out["peak_rss_mib"],
    }


def run_reference(
    funasr, n_samples: int, source: Path, wav: Path, work: Path, max_speakers: int | None = None
) -> dict:
    asr = funasr.run([(0, n_samples)])
    diar = run_pyannote(source, wav, work, max_speakers=max_speakers)
    return {
        "seconds": asr["seconds"] + diar["seconds"],
        "asr_seconds": asr["seconds"],
        "diarization_seconds": diar["seconds"],
        "segments": asr["segments"][0],
        "turns": diar["turns"],
        "exclusive_tied": diar["exclusive_tied"],
        "tied_grid": diar["tied_grid"],
        "speakers": len({t[2] for t in diar["turns"]}),
        "pyannote_peak_rss_mib": diar["peak_rss_mib"],
    }


# -- driver -----------------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def memory_rows(repo: Path, settings, hours: list[float], work: Path, save=None) -> dict:
    from serving.launcher import TritonServer
    from tests.memory import PeakRSS

    rows = {}
    with TritonServer(repo, log_path=work / "triton_memory.log") as server:
        for h in hours:
            wav = make_audio(work / f"{h:g}h.wav", h * 60, seed=int(h * 100))
            with PeakRSS(server.process.pid) as rss:
                out = run_ours(server.ports.grpc_url, wav, settings)
            rows[f"{h:g} h"] = {
                "seconds": round(out["seconds"], 1),
                "segments": len(out["segments"]),
                "speakers": out["speakers"],
                "timings": out["timings"],
                "peak_rss_mib": rss.mib(),
                "exact": rss.exact,
                "loadavg": loadavg(),
            }
            print(f"memory {h:g} h: {rows[f'{h:g} h']}", flush=True)
            if save is not None:
                save(rows)
            wav.unlink()
    return rows


# -- through the api + worker ----------------------------------------------------------------------


class ApiStack:
    """The api (``python -m api``: uvicorn) and one worker (``python -m api.worker``) as separate
    processes on an embedded SQLite database, huey's SQLite queue and local blobs under ``work``,
    reaching Triton at ``grpc_url`` with the diarization params of ``params_dir`` (as
    scripts/run_api.sh starts them; each in its own folder, so no .env of the checkout is read)."""

    def __init__(self, work: Path, grpc_url: str, http_url: str, params_dir: Path):
        import secrets

        from serving.launcher import TritonPorts

        self.work = work
        self.port = TritonPorts.free().http  # a free loopback port
        self.url = f"http://127.0.0.1:{self.port}"
        data = work / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DATA_DIR": str(data),
            "DATABASE_URL": f"sqlite:///{data}/intrascribe.db",
            "REDIS_URL": "",
            "QUEUE_BACKEND": "sqlite",
            "AUTH_MODE": "embedded",
            "JWT_SECRET": secrets.token_hex(32),
            "TRITON_GRPC_URL": grpc_url,
            "TRITON_HTTP_URL": f"http://{http_url}",
            "DIARIZATION_PARAMS_DIR": str(params_dir),
            "EXTRA_JOB_MODULES": "",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.port),
            "LOG_LEVEL": "INFO",
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *argv: str) -> subprocess.Popen:
        cwd = self.work / name
        cwd.mkdir(exist_ok=True)
        log = open(self.work / f"{name}.log", "wb")
        return subprocess.Popen(
            [sys.executable, *argv], cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def __enter__(self) -> ApiStack:
        import httpx

        migrate = self._start("migrate", "-m", "api.db.migrate", "upgrade")
        if migrate.wait() != 0:
            raise RuntimeError(f"migration failed:\n{self.log('migrate')}")
        self.procs["worker"] = self._start("worker", "-m", "api.worker")
        self.procs["api"] = self._start("api", "-m", "api")
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            self.check_alive("during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the api did not answer in 120 s:\n{self.log('api')}")
            time.sleep(0.5)
        return self

    def check_alive(self, when: str = "") -> None:
        """Raise with its log when one of the processes has exited."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited {when} (rc {p.returncode}):\n{self.log(name)}")

    def __exit__(self, *exc) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def api_key_headers(self) -> dict[str, str]:
        """Register a user and make an API key (an access token would expire during a long job)."""
        import httpx

        with httpx.Client(base_url=self.url, timeout=60) as http:
            r = http.post(
                "/api/v1/auth/register",
                json={"email": "bench@example.com", "password": "correct horse battery staple"},
            )
            r.raise_for_status()
            token = r.json()["access_token"]
            r = http.post(
                "/api/v1/api-keys", json={"name": "bench"}, headers={"Authorization": f"Bearer {token}"}
            )
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['key']}"}


def api_job(stack: ApiStack, wav: Path, headers: dict, timeout_s: float) -> dict:
    """Upload ``wav`` to ``POST /api/v1/transcriptions/batch`` (the file object streams through
    httpx's multipart encoder in 64 KiB reads), poll ``GET /api/v1/jobs/{id}`` every 2 s (the first
    time each progress stage is seen is recorded), fetch the stored transcript once (the api's kernel
    peak RSS is read just before that fetch, to tell the upload + job part from the transcript's
    serialization)."""
    import httpx

    from tests.memory import MiB, kernel_peak_rss

    out: dict = {}
    stages: dict[str, float] = {}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=600) as http:
        t0 = time.perf_counter()
        with open(wav, "rb") as f:
            r = http.post(
                "/api/v1/transcriptions/batch",
                files={"audio_file": (wav.name, f, "audio/wav")},
                data={"title": f"memory {wav.stem}"},
            )
        if r.status_code != 202:
            raise RuntimeError(f"upload: {r.status_code} {r.text[:500]}")
        out["upload_s"] = round(time.perf_counter() - t0, 1)
        accepted = r.json()
        deadline = time.monotonic() + timeout_s
        while True:
            job = http.get(f"/api/v1/jobs/{accepted['job_id']}").json()
            stage = (job.get("progress") or {}).get("stage")
            if stage and stage not in stages:
                stages[stage] = round(time.perf_counter() - t0, 1)
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            stack.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"job not finished in {timeout_s:.0f} s: {job}\n{stack.log('worker')}")
            time.sleep(2)
        out["job_s"] = round(time.perf_counter() - t0, 1)  # upload -> job finished
        if job["status"] != "completed":
            raise RuntimeError(f"job {job['status']}: {job.get('error')}\n{stack.log('worker')}")
        # the api's peak so far (upload, probe, polls), before the transcript is serialized
        api_hwm = kernel_peak_rss(stack.procs["api"].pid)
        out["api_peak_before_fetch_mib"] = None if api_hwm is None else round(api_hwm / MiB, 1)
        t1 = time.perf_counter()
        r = http.get(f"/api/v1/sessions/{accepted['session_id']}/transcription")
        r.raise_for_status()
        out["fetch_s"] = round(time.perf_counter() - t1, 2)
        transcript = r.json()
    segments = transcript["segments"]
    out.update(
        stages_first_seen_s=stages,
        timings=job["result"].get("timings", {}),
        segments=len(segments),
        speakers=len({s["speaker"] for s in segments if s.get("speaker")}),
        transcript_bytes=len(r.content),
        duration_s=job["result"].get("duration_seconds"),
        attempt=job["attempt"],
    )
    return out


def through_api_rows(repo: Path, params_dir: Path, hours: list[float], work: Path, save=None) -> dict:
    """One upload -> job -> transcript per length through the api and a worker process, peak RSS of
    the api, the worker (with any children), tritonserver and every stub (tests/memory.py; each
    process's kernel VmHWM, reset before the upload, where allowed)."""
    from serving.launcher import TritonServer
    from tests.memory import MiB, PeakRSS, descendants, process_rss

    rows = {}
    with TritonServer(repo, log_path=work / "triton_api.log") as server:
        with ApiStack(work / "stack", server.ports.grpc_url, server.ports.http_url, params_dir) as stack:
            headers = stack.api_key_headers()
            api_pid, worker_pid = stack.procs["api"].pid, stack.procs["worker"].pid
            for h in hours:
                wav = make_audio(work / f"{h:g}h.wav", h * 60, seed=int(h * 100))
                idle = {
                    "api": round(process_rss(api_pid) / MiB, 1),
                    "worker": round(sum(process_rss(p) for p in descendants(worker_pid)) / MiB, 1),
                }
                with (
                    PeakRSS(server.process.pid) as triton_rss,
                    PeakRSS(api_pid, interval_s=0.5) as api_rss,
                    PeakRSS(worker_pid, interval_s=0.5) as worker_rss,
                ):
                    out = api_job(stack, wav, headers, timeout_s=max(3600.0, h * 4 * 3600))
                    worker_procs = len(descendants(worker_pid))
                tri = triton_rss.mib()
                row = {
                    **out,
                    "upload_bytes": wav.stat().st_size,
                    "peak_rss_mib": {
                        "api": api_rss.mib()["server_total"],
                        "worker": worker_rss.mib()["server_total"],
                        **{k: v for k, v in tri.items() if k != "client"},
                        "bench_client": tri["client"],
                    },
                    "idle_rss_mib_before": idle,
                    "worker_processes": worker_procs,
                    "exact": triton_rss.exact and api_rss.exact and worker_rss.exact,
                    "loadavg": loadavg(),
                }
                # the api process alone ("other": its kernel VmHWM when exact, else sampled every 0.5 s),
                # and its media children (api.media: FFmpeg work; they end with the api, apart from it)
                api_peaks = api_rss.mib()
                row["peak_rss_mib"]["api"] = api_peaks.get("other", 0.0)
                row["peak_rss_mib"]["api_media_children"] = api_peaks.get("mp_child", 0.0)
                row["peak_rss_mib"]["api_tree_sampled"] = api_peaks["server_total"]
                if worker_rss.exact:
                    row["peak_rss_mib"]["worker"] = max(
                        row["peak_rss_mib"]["worker"], worker_rss.mib()["other"]
                    )
                rows[f"{h:g} h"] = row
                print(f"through the api {h:g} h: {row}", flush=True)
                if save is not None:
                    save(rows)
                wav.unlink()
                if not (out["segments"] and out["speakers"]):
                    raise RuntimeError(f"the stored transcript has no segments or no speakers: {out}")
    return rows


def speed_summary(ours_runs: list[dict], ref_runs: list[dict], audio_s: float) -> tuple[dict, bool]:
    """Medians, ratio, text agreement and DER (from each side's last run); False when a side returned
    no text or no speaker turns."""
    from tests.diarization_ties import der_with_and_without_ties

    norm = asr_bench.normalize_text
    ours_t = statistics.median(r["seconds"] for r in ours_runs)
    ref_t = statistics.median(r["seconds"] for r in ref_runs)
    o, f = ours_runs[-1], ref_runs[-1]
    texts = [t for *_, t in o["segments"] if norm(t)]
    ftexts = [t for *_, t in f["segments"] if norm(t)]
    der, der_untied, tied = der_with_and_without_ties(
        f["turns"], o["turns"], f["exclusive_tied"], f["tied_grid"]
    )
    out = {
        "audio_s": audio_s,
        "ours_s": [round(r["seconds"], 2) for r in ours_runs],
        "ours_timings": [r["timings"] for r in ours_runs],
        "reference_s": [round(r["seconds"], 2) for r in ref_runs],
        "reference_asr_s": [round(r["asr_seconds"], 2) for r in ref_runs],
        "reference_diarization_s": [round(r["diarization_seconds"], 2) for r in ref_runs],
        "pyannote_peak_rss_mib": f["pyannote_peak_rss_mib"],
        "ours_median_s": ours_t,
        "reference_median_s": ref_t,
        "ratio": ref_t / ours_t,
        "agreement": asr_bench.agreement([o["segments"]], [f["segments"]]),
        "transcript_segments": o["transcript_segments"],
        "same_whole_text": norm(o["transcript_text"]) == norm("".join(t for *_, t in f["segments"])),
        "der_exclusive": der,
        "der_exclusive_untied": der_untied,  # without the frames pyannote's run recorded as tied
        "pyannote_tied_frames": tied,
        "speakers": {"ours": o["speakers"], "pyannote": f["speakers"]},
        "texts": {"ours": len(texts), "reference": len(ftexts)},
        "turns": {"ours": len(o["turns"]), "reference": len(f["turns"])},
    }
    ok = bool(texts and ftexts and o["turns"] and f["turns"])
    if not ok:
        print(f"ERROR: a side returned no text or no speakers: texts {out['texts']}, turns {out['turns']}")
    return out, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours")
    ap.add_argument(
        "--ref-repeats", type=int, default=None, help="timed runs of the reference (default --repeats)"
    )
    ap.add_argument("--ks", type=int, default=2, help="funasr-onnx processes (2/k threads each)")
    ap.add_argument("--asr-artifact", default="sensevoice_full")
    ap.add_argument("--diarization-artifact", default="pyannote_full")
    ap.add_argument("--asr-dir", type=Path, default=None, help="this export folder instead of --asr-artifact")
    ap.add_argument(
        "--diarization-dirs",
        type=Path,
        nargs=2,
        default=None,
        metavar=("EXPORT", "SOURCE"),
        help="export folder + hub-layout source folder instead of --diarization-artifact",
    )
    ap.add_argument(
        "--max-speakers",
        type=int,
        default=None,
        help="speaker bound on both sides (random full-size embeddings give pyannote > 127 clusters, "
        "which overflows its int8 cluster ids)",
    )
    ap.add_argument("--skip-speed", action="store_true", help="only --memory-hours")
    ap.add_argument("--memory-hours", default="", help="comma-separated hours, e.g. 1,2,4")
    ap.add_argument(
        "--through-api",
        action="store_true",
        help="--memory-hours through the api + a worker process (upload -> job -> transcript)",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny models, 30 s, one repeat (dry run)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally blocks stop tritonserver and the pools
    if args.quick:
        args.asr_artifact, args.diarization_artifact = "sensevoice_tiny", "pyannote_small"
        args.minutes, args.repeats, args.ref_repeats = 0.5, 1, 1
    ref_repeats = args.repeats if args.ref_repeats is None else args.ref_repeats
    if THREADS % args.ks:
        ap.error(f"--ks must divide {THREADS}")
    hours = [float(h) for h in args.memory_hours.split(",") if h]
    if args.through_api and not hours:
        ap.error("--through-api needs --memory-hours")

    from inference_client.audio import decode_audio
    from inference_client.diarization import PipelineSettings
    from serving.launcher import TritonServer
    from tests.audio import write_wav

    info = asr_bench.machine_info()
    # (the build re-exports an artifact whenever its code changed: --asr-dir / --diarization-dirs pin one)
    asr_dir = (args.asr_dir or asr_bench.artifact(args.asr_artifact)).resolve()
    vad_dir = asr_bench.artifact("fsmn_vad").resolve()
    diar_dir, diar_source = args.diarization_dirs or export_folders(args.diarization_artifact)
    settings = PipelineSettings.from_dir(diar_dir)
    info.update(
        asr_model=str(asr_dir),
        vad_model=str(vad_dir),
        diarization_model=str(diar_dir),
        pyannote_source=str(diar_source),
        loadavg_start=loadavg(),
    )
    print(json.dumps(info, indent=1), flush=True)
    results: dict = {
        "info": info,
        "minutes": args.minutes,
        "repeats": args.repeats,
        "ref_repeats": ref_repeats,
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="transcription-bench-") as tmp:
        work = Path(tmp)
        repo = build_repository(work, asr_dir, vad_dir, diar_dir)
        if not args.skip_speed:
            wav = make_audio(work / "meeting.wav", args.minutes)
            audio = decode_audio(wav)
            warm = write_wav(work / "warm_ours.wav", audio[: int(WARMUP_S * SAMPLE_RATE)])
            fa_asr, fa_vad = asr_bench.funasr_dirs(work, asr_dir, vad_dir)
            funasr = asr_bench.FunasrSide(audio, fa_asr, fa_vad, args.ks)  # forks before any gRPC
            ours_runs: list[dict] = []
            ref_runs: list[dict] = []
            audio_s = len(audio) / SAMPLE_RATE

            def report() -> None:  # after every round: what has run so far (partial if cut short)
                nonlocal ok
                if ours_runs and ref_runs:
                    results["speed"], ok = speed_summary(ours_runs, ref_runs, audio_s)
                    results["info"]["loadavg_now"] = loadavg()
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")

            try:
                with TritonServer(repo, log_path=work / "triton.log") as server:
                    url = server.ports.grpc_url
                    run_ours(url, warm, settings)  # warm-up: every model's first requests
                    funasr.run([(0, min(len(audio), int(WARMUP_S * SAMPLE_RATE)))])
                    for r in range(max(args.repeats, ref_repeats)):
                        if r < ref_repeats:
                            ref_runs.append(
                                run_reference(funasr, len(audio), diar_source, wav, work, args.max_speakers)
                            )
                            last = ref_runs[-1]
                            print(
                                f"round {r + 1}: reference {last['seconds']:.1f} s (funasr-onnx "
                                f"{last['asr_seconds']:.1f} s + pyannote {last['diarization_seconds']:.1f} s)"
                                f" (load {loadavg()})",
                                flush=True,
                            )
                        if r < args.repeats:
                            ours_runs.append(run_ours(url, wav, settings, args.max_speakers))
                            print(
                                f"round {r + 1}: ours {ours_runs[-1]['seconds']:.1f} s "
                                f"{ours_runs[-1]['timings']} (load {loadavg()})",
                                flush=True,
                            )
                        report()
            finally:
                funasr.close()
            s = results["speed"]
            print(
                f"\n{audio_s / 60:.1f} min of audio; ours {asr_dir.name} + {diar_dir.name}, "
                f"{args.repeats} runs; reference {ref_repeats} runs"
            )
            print(f"ours (Transcriber on Triton): median {s['ours_median_s']:.1f} s, runs {s['ours_s']}")
            print(
                f"reference (funasr-onnx + pyannote.audio): median {s['reference_median_s']:.1f} s, runs "
                f"{s['reference_s']} (ASR {s['reference_asr_s']}, diarization {s['reference_diarization_s']})"
            )
            print(f"ratio: {s['ratio']:.2f}x (target >= 4x)")
            agree = s["agreement"]
            print(
                f"segments: ours {agree['ours']}, funasr-onnx {agree['funasr']}, same bounds "
                f"{agree['same_bounds']}, same text {agree['same_text']}; the stored transcript "
                f"({s['transcript_segments']} segments after speaker attribution) has the reference's whole "
                f"text: {s['same_whole_text']}"
            )
            print(
                f"DER between the speaker labelings (exclusive, pyannote as reference): "
                f"{s['der_exclusive']:.2%} (target <= 2 %), {s['der_exclusive_untied']:.2%} without the "
                f"{s['pyannote_tied_frames']:.1%} of frames where pyannote's own choice was a tie; "
                f"speakers {s['speakers']}"
            )
        if hours:
            print(f"memory rows with {asr_dir.name} + {Path(diar_dir).name}", flush=True)

            def save(rows: dict) -> None:
                results["memory_through_api" if args.through_api else "memory"] = rows
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")

            if args.through_api:
                results["memory_through_api"] = through_api_rows(repo, Path(diar_dir), hours, work, save)
            else:
                results["memory"] = memory_rows(repo, settings, hours, work, save)
    results["info"]["loadavg_end"] = loadavg()
    print(f"load average at start {info['loadavg_start']}, at end {results['info']['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
