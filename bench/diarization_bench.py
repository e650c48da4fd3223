"""Our Triton diarization vs pyannote.audio's own pipeline: same weights, same audio, same threads.

    .envs/serve/bin/python bench/diarization_bench.py [--artifact pyannote_full] [--minutes 5]
        [--threads 2] [--repeats 3] [--cpu] [--latency 20] [--memory-hours 1,4] [--skip-speed]

* Audio: ``--minutes`` of synthetic meetings (tests/meetings.py) tiled with random gains, or ``--wav``.
* Ours: a tritonserver with only ``segmentation`` + ``speaker_embedding`` (the artifact's export),
  one onnxruntime thread per model (``--threads`` 2 = two models x 1), the client pipeline
  (``inference_client.diarization``) over the WAV read in chunks.
* pyannote: the same folder's hub-layout source through ``SpeakerDiarization`` in the export
  environment, ``torch.set_num_threads(--threads)`` (this file re-runs itself there with
  ``--pyannote-worker``).
* Each side: one warm-up on 30 s, then the median of ``--repeats`` runs. Printed: seconds, real-time
  factor, speed ratio, the DER between the two outputs (regular and exclusive; frame-based,
  ``tests.diarization_helpers.frame_der``) on all frames and without the frames where pyannote's own
  run recorded a tie in its speaker selection (its choice there is arbitrary: tests/diarization_ties.py),
  a stage-by-stage comparison (:func:`compare_stages`) and peak RSS (ours: every process, by
  tests/memory.py; pyannote: its process's maximum RSS). pyannote's runs record its intermediate
  outputs (``export_scripts.reference_diarization.diarize_file``; the hooks cost little next to the
  networks); ours are :meth:`DiarizationClient.analyze` + :meth:`WindowAnalysis.assemble`, which is
  what ``diarize`` does.
* ``--latency N``: N calls of a 60 s clip end to end (client + Triton), p50/p95.
* ``--memory-hours``: one run per length of tiled audio, peak RSS of tritonserver, each stub and
  the client. ``--skip-speed`` leaves out the comparison (e.g. memory runs with a smaller model).

``--cpu`` (the default on this machine) keeps both sides on the CPU; without it, pyannote runs on CUDA
when torch sees a GPU and our models use ``configs/gpu.pbtxt`` — the same script dry-runs anywhere.
Nothing is written but ``--json`` / ``--keep`` when given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from export_scripts.common import EXPORT_PYTHON  # noqa: E402 - stdlib only, loads in both environments

SAMPLE_RATE = 16000


# -- pyannote side (runs in the export environment) -------------------------------------------------


def pyannote_worker(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from export_scripts.pyannote_export import load_pipeline
    from export_scripts.reference_diarization import diarize_file, save

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    pipeline = load_pipeline(Path(args.model_dir))
    if not args.cpu and torch.cuda.is_available():
        pipeline.to(torch.device("cuda"))
    wav = Path(args.wav)
    warm = Path(args.result).with_name("warm.wav")
    write_wav_slice(wav, warm, 30.0)
    bound = {"max_speakers": args.max_speakers} if getattr(args, "max_speakers", None) else {}
    diarize_file(pipeline, warm, **bound)
    # Each run records what pyannote computed, its tied frames included (the hooks cost little next
    # to the networks): export_scripts.reference_diarization, docs/diarization-export.md.
    times, rec = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        rec = diarize_file(pipeline, wav, **bound)
        times.append(time.perf_counter() - t)
    save([rec], Path(args.result).with_suffix(".npz"), {"model_dir": args.model_dir})

    def turns(key, labels):
        return [(float(s), float(e), str(labels[int(k)])) for s, e, k in np.asarray(rec[key]).reshape(-1, 3)]

    result = {
        "times": times,
        "turns": turns("diarization", rec["labels"]),
        "exclusive_turns": turns("exclusive_diarization", rec.get("exclusive_labels", rec["labels"])),
        "seconds": float(rec["duration"]),
        "device": str(next(pipeline._segmentation.model.parameters()).device),
        "numpy": np.__version__,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


def write_wav_slice(src: Path, dest: Path, seconds: float) -> None:
    """The first ``seconds`` of a 16 kHz WAV file (export environment: soundfile)."""
    import soundfile as sf

    from export_scripts.pyannote_export import read_wav

    sf.write(str(dest), read_wav(src)[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE, subtype="FLOAT")


# -- our side (serve environment) -------------------------------------------------------------------


def export_folders(artifact: str) -> tuple[Path, Path]:
    """(export folder, hub-layout source folder) of a build artifact, from the build cache."""
    from export_scripts.build import ARTIFACTS, _ensure_cached
    from export_scripts.common import default_cache_root

    art = next((a for a in ARTIFACTS if a.name == artifact), None)
    if art is None:
        raise SystemExit(f"no build artifact {artifact!r}; known: {', '.join(a.name for a in ARTIFACTS)}")
    cached, _, _, source = _ensure_cached(
        art, "dev", default_cache_root() / "models", force=False, cache_only=False
    )
    return cached, source


def make_audio(path: Path, minutes: float, seed: int = 0) -> Path:
    import numpy as np

    from inference_client.audio import decode_audio
    from tests.audio import shuffled_tiling
    from tests.meetings import synthetic_meeting

    sources = [decode_audio(synthetic_meeting(n, seconds=60.0, seed=200 + n)[0]) for n in (2, 3, 4)]
    rng = np.random.default_rng(seed)
    return shuffled_tiling(path, sources, minutes * 60, seed=int(rng.integers(1 << 30)))


def run_ours(
    export_dir: Path,
    wav: Path | None,
    repeats: int,
    config_name: str | None,
    work: Path,
    latency_calls: int = 0,
    memory_hours: tuple[float, ...] = (),
) -> dict:
    """Our side: ``repeats`` timed runs on ``wav`` (after a 30 s warm-up), then ``latency_calls``
    end-to-end calls on a 60 s clip, then one run per ``memory_hours`` tiled file with the peak RSS of
    every process sampled (tests/memory.py)."""
    import numpy as np

    from inference_client import TritonClient
    from inference_client.audio import decode_audio
    from inference_client.diarization import DiarizationClient, PipelineSettings
    from serving.launcher import TritonServer
    from tests.audio import wav_chunks
    from tests.diarization_helpers import as_tuples, diarization_repository
    from tests.memory import PeakRSS

    repo = diarization_repository(work / "repo", export_dir)
    settings = PipelineSettings.from_dir(export_dir)
    out: dict = {}
    with TritonServer(repo, config_name=config_name) as server:
        analyses = []

        async def once(audio):
            async with TritonClient(server.ports.grpc_url) as client:
                t = time.perf_counter()
                # = DiarizationClient.diarize (analyze, then assemble off the event loop), keeping the
                # per-window results for the comparison with pyannote's stages
                analysis = await DiarizationClient(client, settings).analyze(audio)
                res = await asyncio.to_thread(analysis.assemble, clip_to_audio=False)
                dt = time.perf_counter() - t
                res.timings = {"inference": analysis.seconds, "clustering": dt - analysis.seconds}
                analyses[:] = [analysis]
                return dt, res

        clip = (
            decode_audio(wav)[: 60 * SAMPLE_RATE]
            if wav is not None
            else decode_audio(make_audio(work / "clip.wav", 1.0))
        )
        asyncio.run(once(clip[: 30 * SAMPLE_RATE]))
        if wav is not None and repeats:
            times, result = [], None
            for _ in range(repeats):
                with PeakRSS(server.process.pid) as rss:
                    dt, result = asyncio.run(once(wav_chunks(wav)))
                times.append(dt)
                print(f"  ours: {dt:.2f} s", flush=True)
            np.savez(work / "ours.npz", binary=analyses[0].binary, embeddings=analyses[0].embeddings)
            out.update(
                times=times,
                turns=as_tuples(result.turns),
                exclusive_turns=as_tuples(result.exclusive_turns),
                timings=result.timings,
                seconds=result.duration_s,
                peak_rss_mib=rss.mib(),
            )
        if latency_calls:
            lat = [asyncio.run(once(clip))[0] for _ in range(latency_calls)]
            out["latency_60s"] = {
                "calls": latency_calls,
                "p50": float(np.percentile(lat, 50)),
                "p95": float(np.percentile(lat, 95)),
            }
            print(
                f"  60 s clip: p50 {out['latency_60s']['p50']:.2f} s, p95 {out['latency_60s']['p95']:.2f} s"
            )
        memory = {}
        for hours in memory_hours:
            path = make_audio(work / f"{hours:g}h.wav", hours * 60, seed=int(hours * 100))
            with PeakRSS(server.process.pid) as rss:
                dt, res = asyncio.run(once(wav_chunks(path)))
            memory[f"{hours:g} h"] = {"seconds": dt, "peak_rss_mib": rss.mib(), "speakers": len(res.speakers)}
            print(f"  {hours:g} h: {dt:.0f} s, peak RSS (MiB) {rss.mib()}", flush=True)
            path.unlink()
        if memory:
            out["memory"] = memory
    return out


def compare_stages(export_dir: Path, pyannote_record: Path, ours_npz: Path) -> dict:
    """Where our output and pyannote's part, stage by stage (serve environment, numpy only):

    * ``der_untied`` / ``der_untied_exclusive``: DER between the two outputs without the frames where
      pyannote's own run recorded a tie in its speaker selection (its choice there is arbitrary);
      ``tied`` / ``exclusive_tied``: the fraction of such frames.
    * ``seg_frames_differ``: fraction of (window, frame) whose hard segmentation differs (powerset
      argmax on near-equal scores: ONNX vs PyTorch float rounding); ``embedding_min_cosine`` over the
      (window, speaker) pairs both computed.
    * ``same_inputs_der_untied`` (+ ``_exclusive``): our global part (:func:`assemble_diarization`) on
      pyannote's own segmentation and embeddings vs pyannote's output, ties left out — 0 means the
      global part agrees and every difference comes from the networks' outputs.
    """
    import numpy as np

    from export_scripts.reference_diarization import load
    from inference_client.diarization import PipelineSettings, assemble_diarization
    from speechlib.diarization.masks import inactive_speakers
    from tests.diarization_helpers import as_tuples
    from tests.diarization_ties import der_with_and_without_ties, untied_frames_differing

    rec = load(pyannote_record)[0]
    ours = np.load(ours_npz)
    settings = PipelineSettings.from_dir(export_dir)
    grid = (rec["tied_start"], rec["tied_step"], rec["tied_duration"])
    labels = rec["labels"]
    xlabels = rec.get("exclusive_labels", labels)

    def turns(key, names):
        return [(float(a), float(b), str(names[int(k)])) for a, b, k in np.asarray(rec[key]).reshape(-1, 3)]

    theirs, theirs_x = turns("diarization", labels), turns("exclusive_diarization", xlabels)
    theirs_seg = np.asarray(rec["segmentations"]).astype(np.uint8)
    emb = np.asarray(rec["embeddings"], np.float32).copy()
    emb[inactive_speakers(theirs_seg)] = np.nan  # pyannote embeds them too, then ignores them
    ours_result = assemble_diarization(
        ours["binary"], ours["embeddings"], settings, rec["duration"], clip_to_audio=False
    )
    same = assemble_diarization(theirs_seg, emb, settings, rec["duration"], clip_to_audio=False)
    out = {}
    for suffix, result in (("", ours_result), ("same_inputs_", same)):
        _, d, tied = der_with_and_without_ties(theirs, as_tuples(result.turns), rec["tied"], grid)
        _, dx, xtied = der_with_and_without_ties(
            theirs_x, as_tuples(result.exclusive_turns), rec["exclusive_tied"], grid
        )
        out[f"{suffix}der_untied"], out[f"{suffix}der_untied_exclusive"] = d, dx
        out[f"{suffix}untied_frames_differing"] = untied_frames_differing(
            theirs, as_tuples(result.turns), rec["tied"], grid
        )
        out[f"{suffix}untied_frames_differing_exclusive"] = untied_frames_differing(
            theirs_x, as_tuples(result.exclusive_turns), rec["exclusive_tied"], grid
        )
        if not suffix:
            out["tied"], out["exclusive_tied"] = tied, xtied
            out["frames"] = len(rec["tied"])
    ours_seg = ours["binary"]
    n = min(len(ours_seg), len(theirs_seg))
    out["seg_frames_differ"] = float((ours_seg[:n] != theirs_seg[:n]).any(axis=2).mean())
    both = ~np.isnan(ours["embeddings"][:n]).any(-1) & ~np.isnan(emb[:n]).any(-1)
    a, b = ours["embeddings"][:n][both].astype(np.float64), emb[:n][both].astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    out["embedding_min_cosine"] = float(cos.min(initial=1.0))
    out["speakers"] = f"ours {len(ours_result.speakers)}, pyannote {len(labels)}"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--artifact",
        default="pyannote_full",
        help="build artifact with the weights (default: full-size random)",
    )
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--wav", type=Path, default=None, help="use this 16 kHz WAV instead of synthetic meetings")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpu", action="store_true", help="both sides on the CPU (the dry run of the GPU check)")
    p.add_argument("--skip-pyannote", action="store_true")
    p.add_argument(
        "--skip-speed", action="store_true", help="no speed comparison (only --latency / --memory-hours)"
    )
    p.add_argument(
        "--latency", type=int, default=0, metavar="N", help="also N end-to-end calls on a 60 s clip"
    )
    p.add_argument(
        "--memory-hours",
        default="",
        help="comma-separated hours of tiled audio: peak RSS of every process for each (e.g. 1,4)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--keep", type=Path, default=None, help="copy the audio and both sides' records here")
    # internal: the pyannote half, run with the export environment's Python
    p.add_argument("--pyannote-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--max-speakers", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pyannote_worker:
        return pyannote_worker(args)

    from tests.diarization_helpers import frame_der

    export_dir, source = export_folders(args.artifact)
    hours = tuple(float(h) for h in args.memory_hours.split(",") if h)
    with tempfile.TemporaryDirectory(prefix="diarization-bench-") as tmp:
        work = Path(tmp)
        wav = None if args.skip_speed else (args.wav or make_audio(work / "meeting.wav", args.minutes))
        ours = run_ours(
            export_dir,
            wav,
            0 if args.skip_speed else args.repeats,
            None if args.cpu else "gpu",
            work,
            latency_calls=args.latency,
            memory_hours=hours,
        )
        theirs = None
        if wav is not None and not args.skip_pyannote:
            cmd = [
                str(EXPORT_PYTHON),
                str(Path(__file__).resolve()),
                "--pyannote-worker",
                "--model-dir",
                str(source),
            ]
            cmd += ["--wav", str(wav), "--threads", str(args.threads), "--repeats", str(args.repeats)]
            cmd += ["--result", str(work / "pyannote.json")] + (["--cpu"] if args.cpu else [])
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYANNOTE_METRICS_ENABLED="false")
            subprocess.run(cmd, check=True, cwd=REPO_ROOT, env=env)
            theirs = json.loads((work / "pyannote.json").read_text())
            theirs["stages"] = compare_stages(export_dir, work / "pyannote.npz", work / "ours.npz")
        if args.keep:
            import shutil

            args.keep.mkdir(parents=True, exist_ok=True)
            for f in ("meeting.wav", "pyannote.npz", "pyannote.json", "ours.npz"):
                if (work / f).is_file():
                    shutil.copy2(work / f, args.keep / f)

    results = {"artifact": args.artifact, "threads": args.threads, **ours}
    if "times" in ours:
        seconds = ours["seconds"]
        ours_t = statistics.median(ours["times"])
        print(
            f"audio: {seconds / 60:.1f} min; artifact {args.artifact}; {args.threads} threads; median of {args.repeats}"
        )
        print(f"ours (Triton):  {ours_t:8.2f} s  RTF {ours_t / seconds:.3f}  {ours['timings']}")
        print(f"ours peak RSS (MiB): {ours['peak_rss_mib']}")
    if theirs is not None:
        theirs_t = statistics.median(theirs["times"])
        der = frame_der(theirs["turns"], ours["turns"])
        der_x = frame_der(theirs["exclusive_turns"], ours["exclusive_turns"])
        print(f"pyannote:       {theirs_t:8.2f} s  RTF {theirs_t / seconds:.3f}  ({theirs['device']})")
        print(f"pyannote peak RSS: {theirs['peak_rss_mib']:.0f} MiB")
        print(f"speed ratio:    {theirs_t / ours_t:.2f}x")
        stages = theirs["stages"]
        print(
            f"DER between outputs, all frames: regular {der:.2%}, exclusive {der_x:.2%}; without pyannote's "
            f"tied frames ({stages['tied']:.1%} / {stages['exclusive_tied']:.1%} of frames): regular "
            f"{stages['der_untied']:.2%}, exclusive {stages['der_untied_exclusive']:.2%}"
        )
        print(
            "stages: "
            + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stages.items())
        )
        results.update(
            pyannote=theirs["times"],
            pyannote_peak_rss_mib=theirs["peak_rss_mib"],
            ratio=theirs_t / ours_t,
            der=der,
            der_exclusive=der_x,
            stages=stages,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
