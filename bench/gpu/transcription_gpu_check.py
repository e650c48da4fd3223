"""GPU check for the batch transcription job: its Triton stages (VAD, ASR, segmentation, speaker
embeddings) and clustering over one hour of meeting audio on one GPU, wall time split by stage.

    python3 bench/gpu/transcription_gpu_check.py          # on the GPU machine, .gpu-bundle carried
    .envs/serve/bin/python bench/gpu/transcription_gpu_check.py --cpu     # dry run here (~1 min)
    .envs/serve/bin/python bench/gpu/transcription_gpu_check.py --write-bundle .gpu-bundle  # make_bundle.sh

The GPU machine has Python 3.12, torch with CUDA, numpy 2, onnxruntime (CPU only), no tritonserver,
no espeak, no network and at most 64 MiB carried per call (bench/gpu/README.md). So:

* Audio: ``<bundle>/meeting-speech.wav``, 120 s of a synthetic 3-speaker meeting (tests/meetings.py,
  espeak-ng voices, 16-bit), written here by ``--write-bundle``; tiled to ``--hours`` (default 1).
* One tritonserver (the bundle's; ``--cpu``: this environment's) with four models:
  ``vad`` = our own model (model_repository/vad: fsmn-VAD in onnxruntime on the CPU, the real
  weights carried as ``<bundle>/fsmn_vad/``; ``--vad-instances`` instances; kaldi-native-fbank from
  the carried wheel), ``asr_gpu`` = the full-size SenseVoiceSmall in torch on the GPU
  (bench/gpu/sensevoice_torch.py, random weights), ``segmentation`` + ``speaker_embedding`` = pyannote
  segmentation-3.0 + WeSpeaker ResNet34 in torch on the GPU (bench/gpu/pyannote_torch.py, random
  weights, trunk once per window); dynamic batching up to ``--max-batch``.
* The job's stages, one after the other (the job overlaps VAD/ASR with diarization; here each is
  timed alone), driven by ``--streams`` HTTP clients (binary tensors):
  1. ``vad``: the hour in ``--vad-chunk-s`` chunks (fixed cuts; the job cuts at silences, which only
     moves where chunks start), all sent at once;
  2. ``asr``: every VAD segment (<= 30 s) to ``asr_gpu``;
  3. ``segmentation``: every 10 s window at a 1 s step (speechlib's window plan), its scores to local
     speakers (``powerset_to_multilabel``) and embedding masks (``embedding_masks``) as the client does;
  4. ``embeddings``: every window with an active speaker to ``speaker_embedding``;
  5. ``clustering``: ``speechlib.diarization.assemble_diarization`` on those results with the dev
     pipeline parameters (``<bundle>/pyannote_params/``: params.json + PLDA of the full-size dev
     model), in this process on the CPU.
  Each response is checked (segments sorted and inside the chunk, ASR frame counts, finite scores,
  NaN embeddings exactly for silent masks). Reported: seconds per stage, requests, mean batch per
  model, total and total per hour of audio (target <= 20 s per hour).

``--cpu``: 30 s of audio, the tiny SenseVoice and the small pyannote sizes on the CPU, this
environment's tritonserver, ``fsmn_vad`` and ``pyannote_small`` exports from the build cache; no
bundle needed (tests/test_bench_quick.py runs it). Results: ``$OUT/transcription_gpu_check.json``
and ``.log`` (+ ``triton_<precision>.log``). Exit 0 when every stage ran and every response was
well-formed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import shutil
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace

if __package__ in (None, ""):  # run as a script: make ``bench.gpu`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from bench.gpu import common  # noqa: E402
from bench.gpu.asr_gpu_check import MODEL as ASR_MODEL  # noqa: E402
from bench.gpu.asr_gpu_check import recognise  # noqa: E402
from bench.gpu.asr_gpu_check import write_model as write_asr_model  # noqa: E402
from bench.gpu.diarization_gpu_check import DEFAULT_SEED as DIARIZATION_SEED  # noqa: E402
from bench.gpu.diarization_gpu_check import write_models as write_diarization_models  # noqa: E402
from speechlib.interfaces import VAD, Segmentation, SpeakerEmbedding  # noqa: E402

SR = common.SAMPLE_RATE
SPEECH = "meeting-speech.wav"
SPEECH_SECONDS = 120.0
VAD_DIR, PARAMS_DIR = "fsmn_vad", "pyannote_params"
VAD_FILES = ("fsmn_vad.onnx", "am.mvn", "config.yaml", "export_meta.json")
PARAMS_FILES = ("params.json", "plda.npz", "xvec_transform.npz")
MIN_ASR_SAMPLES = 400
TARGET_S_PER_HOUR = 20.0


# -- what travels (made here) -----------------------------------------------------------------------


def write_speech(path: Path, seconds: float = SPEECH_SECONDS) -> Path:
    """``seconds`` of a synthetic 3-speaker meeting as a 16 kHz 16-bit WAV (needs espeak-ng: here only)."""
    from inference_client.audio import decode_audio
    from tests.meetings import synthetic_meeting

    audio = decode_audio(synthetic_meeting(3, seconds=seconds, seed=12)[0])[: int(seconds * SR)]
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes(pcm.tobytes())
    return path


def write_bundle(bundle: Path) -> None:
    """The speech, the fsmn-VAD export and the full-size dev pipeline parameters into ``bundle``."""
    from export_scripts.build import artifact_dir

    write_speech(bundle / SPEECH)
    for name, files, artifact in (
        (VAD_DIR, VAD_FILES, "fsmn_vad"),
        (PARAMS_DIR, PARAMS_FILES, "pyannote_full"),
    ):
        src = artifact_dir(artifact)
        (bundle / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(src / f, bundle / name / f)
    print(f"wrote {bundle / SPEECH}, {bundle / VAD_DIR}/, {bundle / PARAMS_DIR}/")


def read_speech(path: Path) -> np.ndarray:
    with wave.open(str(path)) as f:
        if f.getframerate() != SR or f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise SystemExit(f"{path}: want 16 kHz mono 16-bit")
        return np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0


def tile(speech: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    return np.tile(speech, n // len(speech) + 1)[:n]


# -- the repository ---------------------------------------------------------------------------------


def write_vad_model(repo: Path, vad_dir: Path, instances: int) -> None:
    src = common.REPO_ROOT / "model_repository" / VAD.NAME
    (repo / VAD.NAME / "1").mkdir(parents=True)
    config = (src / "config.pbtxt").read_text()
    config = config.replace("count: 1", f"count: {instances}", 1)
    (repo / VAD.NAME / "config.pbtxt").write_text(config)
    shutil.copy2(src / "1" / "model.py", repo / VAD.NAME / "1" / "model.py")
    for f in VAD_FILES:
        shutil.copy2(vad_dir / f, repo / VAD.NAME / "1" / f)


def install_wheels(env: Path, wheels: list[Path]) -> None:
    """Extra carried wheels (kaldi-native-fbank, for ``vad``) into the stub's venv."""
    site = subprocess.check_output(
        [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True,
    ).strip()
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--target", site, *map(str, wheels)], check=True)


# -- the stages -------------------------------------------------------------------------------------


class Clients:
    """One keep-alive HTTP client per worker thread; ``map`` runs ``fn(client, item)`` over items."""

    def __init__(self, url: str, streams: int):
        self.url, self.streams, self.local = url, streams, threading.local()

    def _client(self) -> common.HttpClient:
        if not hasattr(self.local, "client"):
            self.local.client = common.HttpClient(self.url)
        return self.local.client

    def map(self, fn, items: list) -> list:
        with cf.ThreadPoolExecutor(self.streams) as pool:
            return list(pool.map(lambda item: fn(self._client(), item), items))


def vad_chunk(client: common.HttpClient, audio: np.ndarray, a: int, b: int) -> list[tuple[int, int]]:
    out = client.infer(VAD.NAME, {VAD.WAVEFORM: audio[a:b][None]}, [VAD.SEGMENTS])[VAD.SEGMENTS]
    rows = out.reshape(-1, 2).astype(np.int64)
    length_ms = (b - a) * 1000 // SR
    if len(rows) and ((rows[:, 1] <= rows[:, 0]).any() or rows.min() < 0 or rows.max() > length_ms + 10):
        raise RuntimeError(f"vad: segments out of order or outside the chunk: {rows[:5].tolist()}")
    offset = a * 1000 // SR
    return [(int(s) + offset, int(e) + offset) for s, e in rows]


def window_masks(client: common.HttpClient, window: np.ndarray, settings, min_frames: int):
    from speechlib.diarization.masks import embedding_masks
    from speechlib.diarization.powerset import powerset_to_multilabel

    scores = client.infer(
        Segmentation.NAME, {Segmentation.WAVEFORM: window[None, None]}, [Segmentation.SCORES]
    )
    scores = scores[Segmentation.SCORES].reshape(Segmentation.NUM_FRAMES, Segmentation.NUM_CLASSES)
    if not np.isfinite(scores).all():
        raise RuntimeError("segmentation: non-finite scores")
    binary = powerset_to_multilabel(scores, settings.local_speakers, settings.max_speakers_per_frame)
    masks = embedding_masks(binary[None], settings.exclude_overlap, min_frames)[0]
    return binary.astype(np.uint8), masks.astype(np.float32)


def embed(client: common.HttpClient, window: np.ndarray, masks: np.ndarray, dimension: int) -> np.ndarray:
    out = client.infer(
        SpeakerEmbedding.NAME,
        {SpeakerEmbedding.WAVEFORM: window[None, None], SpeakerEmbedding.MASKS: masks[None]},
        [SpeakerEmbedding.EMBEDDINGS],
    )[SpeakerEmbedding.EMBEDDINGS][0]
    silent = masks.sum(1) <= 0
    if out.shape != (len(masks), dimension) or not (
        np.isnan(out[silent]).all() and np.isfinite(out[~silent]).all()
    ):
        raise RuntimeError(f"speaker_embedding: broken output, shape {out.shape}")
    return out


def run_stages(url: str, metrics_url: str, audio: np.ndarray, settings, args) -> dict:
    from speechlib.diarization.masks import min_num_frames
    from speechlib.diarization.windows import plan_windows

    clients = Clients(url, args.streams)
    stages: dict = {}

    def timed(name: str, models: list[str], fn):
        before = {m: common.batch_metric(metrics_url, m) for m in models}
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        time.sleep(0.7)  # the metrics port refreshes every 500 ms
        after = {m: common.batch_metric(metrics_url, m) for m in models}
        stages[name] = {"seconds": round(wall, 3)}
        for m in models:
            count, total = after[m][0] - before[m][0], after[m][1] - before[m][1]
            stages[name][f"mean_batch_{m}"] = round(total / count, 2) if count else None
        common.log(f"stage {name}: {stages[name]}")
        return out

    step = int(args.vad_chunk_s * SR)
    chunks = [(a, min(a + step, len(audio))) for a in range(0, len(audio), step)]
    segs = timed("vad", [VAD.NAME], lambda: clients.map(lambda c, ab: vad_chunk(c, audio, *ab), chunks))
    segments = [s for chunk in segs for s in chunk]
    stages["vad"].update(requests=len(chunks), segments=len(segments))

    pieces = [audio[s * SR // 1000 : e * SR // 1000] for s, e in segments]
    pieces = [p for p in pieces if p.size >= MIN_ASR_SAMPLES]
    asr = timed("asr", [ASR_MODEL], lambda: clients.map(recognise, pieces))
    stages["asr"].update(requests=len(pieces), audio_s=round(sum(r["audio_s"] for r in asr), 1))
    stages["asr"]["tokens"] = int(sum(r["tokens"] for r in asr))

    plan = plan_windows(len(audio), SR)
    min_frames = min_num_frames(
        num_frames=settings.num_frames, duration_s=settings.window_s, min_num_samples=settings.min_num_samples
    )
    found = timed(
        "segmentation",
        [Segmentation.NAME],
        lambda: clients.map(
            lambda c, k: window_masks(c, plan.window(audio, k), settings, min_frames), range(plan.num_windows)
        ),
    )
    stages["segmentation"]["requests"] = plan.num_windows
    binary = np.stack([b for b, _ in found])
    busy = [k for k, (_, m) in enumerate(found) if m.any()]
    embeddings = np.full(
        (plan.num_windows, settings.local_speakers, settings.embedding_dimension), np.nan, np.float32
    )
    rows = timed(
        "embeddings",
        [SpeakerEmbedding.NAME],
        lambda: clients.map(
            lambda c, k: embed(c, plan.window(audio, k), found[k][1], settings.embedding_dimension), busy
        ),
    )
    for k, e in zip(busy, rows, strict=True):
        embeddings[k] = e
    stages["embeddings"]["requests"] = len(busy)

    from speechlib.diarization.pipeline import assemble_diarization

    result = timed(
        "clustering",
        [],
        lambda: assemble_diarization(binary, embeddings, settings, len(audio) / SR),
    )
    stages["clustering"].update(speakers=len(result.speakers), turns=len(result.turns))
    return stages


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_arguments(ap, seconds_default="-", precision_default="fp32")
    ap.add_argument("--hours", type=float, default=None, help="audio length (default 1; --cpu 30 s)")
    ap.add_argument("--vad-chunk-s", type=float, default=300.0)
    ap.add_argument("--vad-instances", type=int, default=None, help="default 8; --cpu 1")
    ap.add_argument(
        "--write-bundle", type=Path, default=None, help="write what travels into this folder, exit"
    )
    args = ap.parse_args(argv)
    if args.write_bundle is not None:
        write_bundle(args.write_bundle)
        return 0

    from export_scripts.sensevoice_dev import DEFAULT_SEED as ASR_SEED

    device, asr_variant, diar_variant = ("cpu", "tiny", "small") if args.cpu else ("cuda", "full", "full")
    seconds = args.hours * 3600 if args.hours is not None else (30.0 if args.cpu else 3600.0)
    args.streams = int(args.streams or (8 if args.cpu else 64))
    vad_instances = args.vad_instances or (1 if args.cpu else 8)
    precs = common.precisions(ap, args.precision or "fp32")
    args.seed = DIARIZATION_SEED
    run = common.Run(
        "transcription_gpu_check",
        args,
        device=device,
        variants={"asr": asr_variant, "diarization": diar_variant},
        precisions=",".join(precs),
        audio_s=seconds,
        streams=args.streams,
        vad_instances=vad_instances,
    )
    result = run.result

    def body() -> bool:
        from speechlib.diarization.pipeline import PipelineSettings

        result["probe"] = common.probe(device)
        common.log("probe:", json.dumps(result["probe"]))
        if args.cpu:
            from export_scripts.build import artifact_dir

            speech = read_speech(write_speech(run.work / SPEECH, 30.0))
            vad_dir, params_dir = artifact_dir("fsmn_vad"), artifact_dir("pyannote_small")
        else:
            speech = read_speech(args.bundle / SPEECH)
            vad_dir, params_dir = args.bundle / VAD_DIR, args.bundle / PARAMS_DIR
            root, env, result["ldd_missing"] = common.prepare_triton(args.bundle, run.work)
            install_wheels(env, sorted(args.bundle.glob("kaldi_native_fbank-*.whl")))
        settings = PipelineSettings.from_dir(params_dir)
        audio = tile(speech, seconds)
        result["speech_s"] = round(len(speech) / SR, 1)
        common.log(f"audio: {len(audio) / SR:.0f} s tiled from {len(speech) / SR:.0f} s of speech")
        result["stages"] = {}
        for prec in precs:
            repo = run.work / f"repository_{prec}"
            write_vad_model(repo, vad_dir, vad_instances)
            write_asr_model(
                repo, SimpleNamespace(**{**vars(args), "seed": ASR_SEED}), device, asr_variant, prec
            )
            write_diarization_models(repo, args, device, diar_variant, prec)
            t0 = time.monotonic()
            if args.cpu:
                from serving.launcher import TritonServer

                run.server = TritonServer(repo, log_path=run.work / f"triton_{prec}.log").start(300)
            else:
                run.serve(root, env, repo, prec)
            ports = run.server.ports
            common.log(f"tritonserver ({prec}) ready in {time.monotonic() - t0:.1f} s")
            run_stages(ports.http_url, ports.metrics_url, audio[: 60 * SR], settings, args)  # warm-up
            stages = run_stages(ports.http_url, ports.metrics_url, audio, settings, args)
            total = sum(s["seconds"] for s in stages.values())
            stages["total_s"] = round(total, 2)
            stages["s_per_hour"] = round(total * 3600 / (len(audio) / SR), 2)
            stages["target_s_per_hour"] = TARGET_S_PER_HOUR
            result["stages"][prec] = stages
            common.log(
                f"{prec}: {total:.1f} s for {len(audio) / SR:.0f} s of audio = {stages['s_per_hour']} s per "
                f"hour (target <= {TARGET_S_PER_HOUR}): "
                + ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in stages.items() if isinstance(v, dict))
            )
            run.stop_server()
        return all(
            s["vad"]["segments"] > 0 and s["asr"]["tokens"] > 0 and s["clustering"]["speakers"] > 0
            for s in result["stages"].values()
        )

    return run.finish(body)


if __name__ == "__main__":
    sys.exit(main())
