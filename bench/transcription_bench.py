"""End to end: our transcription (decode -> VAD -> ASR -> diarization -> speakers on segments) vs
what a user would run instead (funasr-onnx VAD + SenseVoice, then pyannote.audio's pipeline), on the
same weights, the same audio and the same 2 CPU threads per side.

    .envs/serve/bin/python bench/transcription_bench.py [--minutes 10] [--repeats 3] [--ref-repeats 3]
        [--asr-artifact sensevoice_full | --asr-dir DIR] [--diarization-artifact pyannote_full |
         --diarization-dirs EXPORT SOURCE] [--json FILE]
        [--memory-hours 1,2,4 --skip-speed --asr-artifact sensevoice_fixture
         --diarization-artifact pyannote_fixture] [--quick]

What runs (docs/benchmarks.md, "## Transcription (end to end)", has the numbers and the commands):

* Audio: ``--minutes`` of synthetic 2/3/4-speaker meetings (tests/meetings.py, espeak-ng voices)
  tiled in random order with random gains (``bench.diarization_bench.make_audio``), a 16 kHz WAV.
* Ours: one tritonserver with ``vad`` (the ``fsmn_vad`` export), ``asr`` (``--asr-artifact``,
  2 instances x 1 intra-op thread as committed for CPU), ``segmentation`` + ``speaker_embedding``
  (``--diarization-artifact``, committed CPU configs); :meth:`Transcriber.transcribe` on the WAV file
  (decode with PyAV to a work folder, chunked VAD, ASR of every segment, diarization concurrently,
  speaker attribution) through one :class:`TritonClient`, as the api's batch job runs it. Not
  through the api + worker: the batch route landed while this bench was written; an api + worker
  mode (upload -> job -> stored transcript, api and worker RSS) is still to do.
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
    return {
        "seconds": out["times"][0],
        "turns": [tuple(t) for t in out["exclusive_turns"]],
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


def speed_summary(ours_runs: list[dict], ref_runs: list[dict], audio_s: float) -> tuple[dict, bool]:
    """Medians, ratio, text agreement and DER (from each side's last run); False when a side returned
    no text or no speaker turns."""
    from tests.diarization_helpers import frame_der

    norm = asr_bench.normalize_text
    ours_t = statistics.median(r["seconds"] for r in ours_runs)
    ref_t = statistics.median(r["seconds"] for r in ref_runs)
    o, f = ours_runs[-1], ref_runs[-1]
    texts = [t for *_, t in o["segments"] if norm(t)]
    ftexts = [t for *_, t in f["segments"] if norm(t)]
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
        "der_exclusive": frame_der(f["turns"], o["turns"]),
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
                f"{s['der_exclusive']:.2%} (target <= 2 %); speakers {s['speakers']}"
            )
        if hours:
            print(f"memory rows with {asr_dir.name} + {Path(diar_dir).name}", flush=True)

            def save(rows: dict) -> None:
                results["memory"] = rows
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")

            results["memory"] = memory_rows(repo, settings, hours, work, save)
    results["info"]["loadavg_end"] = loadavg()
    print(f"load average at start {info['loadavg_start']}, at end {results['info']['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
