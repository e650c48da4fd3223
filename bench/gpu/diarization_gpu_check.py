"""GPU check for diarization: pyannote segmentation-3.0 + WeSpeaker ResNet34 (torch on CUDA, full size)
served by tritonserver on the GPU machine.

    python3 bench/gpu/diarization_gpu_check.py              # on the GPU machine (see bench/gpu/README.md)
    .envs/export/bin/python bench/gpu/diarization_gpu_check.py --cpu --fidelity --bundle /tmp/gpu-bundle-311

The GPU machine has Python 3.12, torch with CUDA, numpy 2, no tritonserver, no pyannote, no network.
The flow is the ASR check's (``asr_gpu_check.py``; shared parts in ``bench/gpu/common.py``):

1. probe: nvidia-smi, torch.cuda, Python, libpython (the backend stub links it);
2. direct: both networks in this process (``bench/gpu/pyannote_torch.py``, random weights from the seed,
   drawn on the device): ``segmentation`` on batches of 1/16/64 10 s windows, ``speaker_embedding``
   (device fbank, the trunk once per window, three masks pooled per window) on the same batches ->
   windows / s and audio s / s;
3. unpack ``<bundle>/tritonserver-py<X.Y>.tar.xz`` and make the stub's environment (numpy<2 first);
4. served: a temporary repository with ``segmentation`` and ``speaker_embedding`` (the tensors of
   ``speechlib.interfaces.Segmentation`` / ``SpeakerEmbedding``, dynamic batching up to 64) running
   those modules on the device; closed-loop clients (1/16/64 streams), each window through
   ``segmentation`` then ``speaker_embedding`` with 1-3 seeded local-speaker masks (some all zero),
   for ``--seconds`` per level -> windows / s, latency p50/p95 per window (both requests), mean batch
   of each model from our batch-size metric. Every response is checked: SCORES ``[589, 7]`` finite
   log-probabilities, EMBEDDINGS ``[S, D]`` finite except NaN rows exactly for all-zero masks.

Results: ``$OUT/diarization_gpu_check.json`` and ``.log`` (+ ``triton_<precision>.log``); ``OUT``
defaults to ``./gpu-out``. ``--cpu``: the same flow on the CPU with the small dev configuration and
short levels; ``--fidelity`` also loads the small dev model (artifact ``pyannote_small`` from the build
cache) into these torch modules and compares them with its ONNX export as the served code runs it
(``serving.diarization`` in ``.envs/serve``). Exit 0 when every step ran and every response was
well-formed (and, with ``--fidelity``, the torch code matched).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench.gpu`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from bench.gpu import common  # noqa: E402
from speechlib.interfaces import Segmentation, SpeakerEmbedding  # noqa: E402

WINDOW = Segmentation.WINDOW_SAMPLES
FRAMES = Segmentation.NUM_FRAMES
WINDOW_S = WINDOW / common.SAMPLE_RATE
MODELS = [Segmentation.NAME, SpeakerEmbedding.NAME]
DEFAULT_SEED = 7  # export_scripts.pyannote_dev's default
SEG_TOLERANCE = 1e-4  # --fidelity bounds (tests/test_diarization_triton.py uses the same against pyannote)
MIN_COSINE = 0.9999


def speaker_masks(rng: np.random.Generator, speakers: int, silent: float) -> np.ndarray:
    """``[speakers, 589]`` 0/1 activity: each row silent with probability ``silent``, else 1-4 turns."""
    masks = np.zeros((speakers, FRAMES), np.float32)
    for row in masks:
        if rng.random() < silent:
            continue
        for _ in range(int(rng.integers(1, 5))):
            start = int(rng.integers(0, FRAMES - 20))
            row[start : start + int(rng.integers(20, 300))] = 1.0
    return masks


def workload(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (window [1, 160000], masks [S, 589]) pairs; S = 1-3, some masks (and some whole windows'
    masks) all zero, as the client sends for silent local speakers."""
    rng = np.random.default_rng(seed)
    windows = common.noise_bursts(rng, [WINDOW] * count)
    return [(w[None], speaker_masks(rng, int(rng.choice([1, 2, 3, 3, 3])), silent=0.25)) for w in windows]


# -- 2. direct ----------------------------------------------------------------------------------------


def direct(segment, embed, batches: list[int], seconds_each: float, device: str) -> dict:
    rng = np.random.default_rng(1)
    out: dict = {Segmentation.NAME: [], SpeakerEmbedding.NAME: []}
    for b in batches:
        windows = np.stack(common.noise_bursts(rng, [WINDOW] * b))[:, None]
        masks = [speaker_masks(rng, 3, silent=0.0) for _ in range(b)]
        finite = {  # every mask is active here: no NaN rows expected
            Segmentation.NAME: bool(np.isfinite(segment(windows)).all()),
            SpeakerEmbedding.NAME: all(bool(np.isfinite(e).all()) for e in embed(windows, masks)),
        }
        for name, fn in (
            (Segmentation.NAME, lambda w=windows: segment(w)),
            (SpeakerEmbedding.NAME, lambda w=windows, m=masks: embed(w, m)),
        ):
            n, wall = common.time_calls(fn, seconds_each, device)
            out[name].append(
                {
                    "batch": b,
                    "calls": n,
                    "s_per_call": round(wall / n, 4),
                    "windows_per_s": round(n * b / wall, 1),
                    "audio_s_per_s": round(n * b * WINDOW_S / wall, 1),
                    "finite": finite[name],
                }
            )
            common.log(f"direct {name} batch {b}: {out[name][-1]}")
    return out


# -- 4. served ----------------------------------------------------------------------------------------


def write_models(repo: Path, args, device: str, variant: str, precision: str) -> None:
    params = common.parameters_pbtxt(
        {"device": device, "variant": variant, "seed": args.seed, "precision": precision}
    )
    masks = f'{{ name: "{SpeakerEmbedding.MASKS}" data_type: TYPE_FP32 dims: [ -1, {FRAMES} ] allow_ragged_batch: true }}'
    specs = {
        Segmentation.NAME: (
            "TritonSegmentation",
            f'{{ name: "{Segmentation.SCORES}" data_type: TYPE_FP32 dims: [ {FRAMES}, {Segmentation.NUM_CLASSES} ] }}',
            [],
        ),
        SpeakerEmbedding.NAME: (
            "TritonSpeakerEmbedding",
            f'{{ name: "{SpeakerEmbedding.EMBEDDINGS}" data_type: TYPE_FP32 dims: [ -1, -1 ] }}',
            [masks],
        ),
    }
    for name, (cls, output, extra_inputs) in specs.items():
        folder = repo / name
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "model.py").write_text(
            f"from bench.gpu.pyannote_torch import {cls} as TritonPythonModel  # noqa: F401\n"
        )
        inputs = [
            f'{{ name: "{Segmentation.WAVEFORM}" data_type: TYPE_FP32 dims: [ 1, {WINDOW} ] }}',
            *extra_inputs,
        ]
        (folder / "config.pbtxt").write_text(
            f"""name: "{name}"
backend: "python"
max_batch_size: {args.max_batch}
input [ {", ".join(inputs)} ]
output [ {output} ]
dynamic_batching {{ max_queue_delay_microseconds: {args.queue_delay_us} }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
            + params
        )


def diarize_window(client: common.HttpClient, window: np.ndarray, masks: np.ndarray, dimension: int) -> dict:
    """One window through ``segmentation`` then ``speaker_embedding``, both responses validated."""
    scores = client.infer(Segmentation.NAME, {Segmentation.WAVEFORM: window[None]}, [Segmentation.SCORES])
    scores = scores[Segmentation.SCORES]
    if scores.shape != (1, FRAMES, Segmentation.NUM_CLASSES) or not np.isfinite(scores).all():
        raise RuntimeError(f"broken SCORES: shape {scores.shape}, finite {np.isfinite(scores).all()}")
    if np.abs(np.exp(scores).sum(-1) - 1).max() > 1e-3:
        raise RuntimeError("SCORES are not log-probabilities")
    out = client.infer(
        SpeakerEmbedding.NAME,
        {SpeakerEmbedding.WAVEFORM: window[None], SpeakerEmbedding.MASKS: masks[None]},
        [SpeakerEmbedding.EMBEDDINGS],
    )[SpeakerEmbedding.EMBEDDINGS]
    silent = masks.sum(1) <= 0
    if out.shape != (1, len(masks), dimension):
        raise RuntimeError(f"broken EMBEDDINGS: shape {out.shape}, want (1, {len(masks)}, {dimension})")
    if not (np.isnan(out[0][silent]).all() and np.isfinite(out[0][~silent]).all()):
        raise RuntimeError(f"EMBEDDINGS: NaN rows must be exactly the all-zero masks {silent.tolist()}")
    return {"audio_s": WINDOW_S, "speakers": int((~silent).sum())}


def rejects_bad_input(url: str) -> dict:
    """A short window and negative mask weights must fail alone (HTTP 400), the server stay up."""
    client, window = common.HttpClient(url), np.zeros((1, 1, WINDOW), np.float32)
    bad = {
        Segmentation.NAME: {Segmentation.WAVEFORM: window[..., :1000]},
        SpeakerEmbedding.NAME: {
            SpeakerEmbedding.WAVEFORM: window,
            SpeakerEmbedding.MASKS: -np.ones((1, 2, FRAMES), np.float32),
        },
    }
    out = {}
    for model, inputs in bad.items():
        try:
            client.infer(model, inputs, [])
            out[model] = "accepted"
        except RuntimeError as exc:
            out[model] = "rejected" if "HTTP 400" in str(exc) else str(exc)[:200]
    return out


# -- --fidelity (CPU dry run only) ------------------------------------------------------------------

REFERENCE = """
import sys, numpy as np
from serving.diarization import EmbeddingNetwork, SegmentationNetwork
d = np.load(sys.argv[2]); folder = sys.argv[1]
seg, emb = SegmentationNetwork(folder), EmbeddingNetwork(folder)
masks = [d["masks"][i, : int(n)] for i, n in enumerate(d["speakers"])]
out = np.full(d["masks"].shape[:2] + (emb.dimension,), np.nan, np.float32)
for i, e in enumerate(emb.embed(d["windows"], masks)):
    out[i, : len(e)] = e
np.savez(sys.argv[3], scores=seg.scores(d["windows"]), embeddings=out,
         fbank=emb.fbank(d["windows"][0, 0]), features=emb.frame_features(d["windows"][:1]))
"""


def speech_windows() -> np.ndarray:
    """Four 10 s windows of pyannote's ``sample.wav`` (two speakers; the last one zero-padded past the
    end of the file), or seeded noise if the wheel's sample is not there."""
    found = sorted(
        (common.REPO_ROOT / ".envs" / "export" / "lib").glob(
            "python3*/site-packages/pyannote/audio/sample/sample.wav"
        )
    )
    if found:
        with wave.open(str(found[0])) as f:
            audio = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768.0
    else:
        audio = common.noise_bursts(np.random.default_rng(3), [30 * common.SAMPLE_RATE])[0]
    audio = np.concatenate([audio, np.zeros(WINDOW, np.float32)])
    return np.stack(
        [audio[s * common.SAMPLE_RATE : s * common.SAMPLE_RATE + WINDOW] for s in (0, 7, 14, 25)]
    )[:, None]


def load_state(model, path: Path) -> dict:
    """pyannote's lightning checkpoint -> ``model``; returns the keys that did not match."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.eval()
    return {"missing": list(missing), "unexpected": list(unexpected)}


def fidelity() -> dict:
    """The small dev model (pyannote checkpoints) in this torch code vs its ONNX export run by the
    served code (``serving.diarization``: onnxruntime + kaldi-native-fbank, in ``.envs/serve``)."""
    import torch

    from bench.gpu.pyannote_torch import (
        RESNET,
        SEGMENTATION,
        EmbeddingRunner,
        SegmentationRunner,
        Segmenter,
        SpeakerEmbedder,
    )
    from export_scripts.build import ARTIFACTS, artifact_dir, dev_source
    from export_scripts.common import default_cache_root

    serve = common.REPO_ROOT / ".envs" / "serve" / "bin" / "python"
    if not serve.exists():
        raise SystemExit(f"--fidelity needs {serve} (make envs)")
    art = next(a for a in ARTIFACTS if a.name == "pyannote_small")
    source = dev_source(art, (default_cache_root() / "models").expanduser().resolve(), cache_only=True)
    export = artifact_dir("pyannote_small", cache_only=True)
    seg_model, emb_model = Segmenter(**SEGMENTATION["small"]), SpeakerEmbedder(**RESNET["small"])
    result = {
        "source": str(source),
        "export": str(export),
        "segmentation_keys": load_state(seg_model, source / "segmentation" / "pytorch_model.bin"),
        "embedding_keys": load_state(emb_model, source / "embedding" / "pytorch_model.bin"),
    }
    segment = SegmentationRunner("small", 0, "cpu", model=seg_model)
    embed = EmbeddingRunner("small", 0, "cpu", model=emb_model)

    windows = speech_windows()
    scores = segment(windows)
    # masks: each window's local speakers from the powerset argmax (classes {1},{2},{3},{1,2},{1,3},{2,3}),
    # plus a random binary, a soft and an all-zero row
    rng = np.random.default_rng(5)
    powerset = np.array(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float32
    )
    masks = np.zeros((len(windows), 6, FRAMES), np.float32)
    masks[:, :3] = powerset[scores.argmax(-1)].transpose(0, 2, 1)
    masks[:, 3] = rng.random((len(windows), FRAMES)) < 0.4
    masks[:, 4] = rng.random((len(windows), FRAMES))
    speakers = np.full(len(windows), 6)
    speakers[1] = 4  # ragged: one window sends fewer rows
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", windows=windows, masks=masks, speakers=speakers)
        subprocess.run(
            [str(serve), "-c", REFERENCE, str(export), str(Path(tmp) / "in.npz"), str(Path(tmp) / "ref.npz")],
            check=True,
            cwd=common.REPO_ROOT,
        )
        ref = dict(np.load(Path(tmp) / "ref.npz"))
    mine = np.full_like(ref["embeddings"], np.nan)
    for i, e in enumerate(embed(windows, [masks[i, : int(n)] for i, n in enumerate(speakers)])):
        mine[i, : len(e)] = e
    with torch.inference_mode():
        fbank = emb_model.fbank(torch.from_numpy(windows[:1, 0]))
        features = emb_model.resnet.trunk(torch.from_numpy(ref["fbank"][None])).numpy()
    both = np.isfinite(mine).all(-1) & np.isfinite(ref["embeddings"]).all(-1)
    a, b = mine[both], ref["embeddings"][both]
    cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    result.update(
        {
            "segmentation_max_abs_diff": float(np.abs(scores - ref["scores"]).max()),
            "segmentation_argmax_agree": float((scores.argmax(-1) == ref["scores"].argmax(-1)).mean()),
            "embedding_rows": int(both.sum()),
            "embedding_min_cosine": float(cosine.min()),
            "embedding_nan_rows_equal": bool(
                (np.isnan(mine).any(-1) == np.isnan(ref["embeddings"]).any(-1)).all()
            ),
            "fbank_max_abs_diff": float(np.abs(fbank[0].numpy() - ref["fbank"]).max()),
            "trunk_max_abs_diff": float(np.abs(features - ref["features"]).max()),
            "trunk_scale": float(np.abs(ref["features"]).max()),
        }
    )
    result["ok"] = bool(
        result["segmentation_max_abs_diff"] <= SEG_TOLERANCE
        and result["embedding_min_cosine"] >= MIN_COSINE
        and result["embedding_nan_rows_equal"]
        and not any(
            result[k]["missing"] or result[k]["unexpected"] for k in ("segmentation_keys", "embedding_keys")
        )
    )
    return result


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_arguments(ap, seconds_default="15; --cpu 3", precision_default="fp32,fp16; --cpu fp32")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--batches", default=None, help="direct batch sizes (default 1,16,64; --cpu 1,4,16)")
    args = ap.parse_args(argv)

    device, variant = ("cpu", "small") if args.cpu else ("cuda", "full")
    seconds = args.seconds if args.seconds is not None else (3.0 if args.cpu else 15.0)
    streams = [int(s) for s in (args.streams or ("1,4,16" if args.cpu else "1,16,64")).split(",")]
    batches = [int(b) for b in (args.batches or ("1,4,16" if args.cpu else "1,16,64")).split(",")]
    precs = common.precisions(ap, args.precision or ("fp32" if args.cpu else "fp32,fp16"))
    run = common.Run(
        "diarization_gpu_check", args, device=device, variant=variant, precisions=",".join(precs)
    )
    result = run.result

    def body() -> bool:
        result["probe"] = common.probe(device)
        common.log("probe:", json.dumps(result["probe"]))
        ok = True
        if args.fidelity:
            result["fidelity"] = fidelity()
            common.log("fidelity:", json.dumps(result["fidelity"]))
            ok = result["fidelity"]["ok"]

        from bench.gpu.pyannote_torch import EmbeddingRunner, SegmentationRunner

        result["direct"], result["served"], result["bad_input"] = {}, {}, {}
        if not args.skip_direct:
            for prec in precs:
                t0 = time.monotonic()
                segment = SegmentationRunner(variant, args.seed, device, prec)
                embed = EmbeddingRunner(variant, args.seed + 1, device, prec)
                result["params_m"] = {
                    Segmentation.NAME: round(segment.params / 1e6, 3),
                    SpeakerEmbedding.NAME: round(embed.params / 1e6, 3),
                }
                common.log(
                    f"models {variant} {prec}: {result['params_m']} M params on {device} ({time.monotonic() - t0:.1f} s)"
                )
                result["direct"][prec] = direct(segment, embed, batches, 1.0 if args.cpu else 3.0, device)
                del segment, embed
                common.release(device)

        root, env, result["ldd_missing"] = common.prepare_triton(args.bundle, run.work)
        from bench.gpu.pyannote_torch import RESNET

        dimension = RESNET[variant]["embed_dim"]
        work = workload(args.seed, 64)

        def step(client: common.HttpClient, k: int) -> dict:
            window, masks = work[k % len(work)]
            return diarize_window(client, window, masks, dimension)

        for prec in precs:
            repo = run.work / f"repository_{prec}"
            write_models(repo, args, device, variant, prec)
            t0 = time.monotonic()
            server = run.serve(root, env, repo, prec)
            # warm-up: every batch shape path
            common.load_level(server, max(streams), min(seconds, 3.0), step, MODELS)
            result["bad_input"][prec] = rejects_bad_input(server.url)
            common.log(f"bad input ({prec}): {result['bad_input'][prec]}")
            levels = []
            for s in streams:
                level = common.load_level(server, s, seconds, step, MODELS)
                level["windows_per_s"] = round(level["requests"] / level["wall_s"], 1)  # request = window
                levels.append(level)
                common.log(f"served {prec} streams={s}: {json.dumps(level)}")
            result["served"][prec] = {"ready_s": round(time.monotonic() - t0, 1), "levels": levels}
            run.stop_server()
        finite = all(r["finite"] for v in result["direct"].values() for rows in v.values() for r in rows)
        rejected = all(v == "rejected" for r in result["bad_input"].values() for v in r.values())
        served = all(r["requests"] > 0 for v in result["served"].values() for r in v["levels"])
        return ok and finite and rejected and served

    return run.finish(body)


if __name__ == "__main__":
    sys.exit(main())
