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

Why its own model folder: the repository's ``asr`` model runs torch only through ``runtime:
torchscript`` (a traced ``model.ts`` from the export), and the full-size ``model.ts`` (~0.9 GB) cannot
travel to the GPU machine (64 MiB), nor can it be exported there (no FunASR); so the network is built
on the device with random weights. Shared plumbing: ``bench/gpu/common.py``. Results: ``$OUT/asr_gpu_check.json`` and ``$OUT/asr_gpu_check.log`` (+ ``triton_<precision>.log``);
``OUT`` defaults to ``./gpu-out``. ``--cpu``: the same flow on the CPU with the tiny configuration;
with ``--fidelity`` it also checks this torch network and front end against the tiny dev model's ONNX
export and ``speechlib.features`` (needs the build cache and ``.envs/serve``). Exit 0 when every step
ran and every response held tokens.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench.gpu`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from bench.gpu.common import (  # noqa: E402
    REPO_ROOT,
    SAMPLE_RATE,
    HttpClient,
    Run,
    add_arguments,
    load_level,
    log,
    noise_bursts,
    parameters_pbtxt,
    precisions,
    prepare_triton,
    probe,
    release,
    time_calls,
)

MODEL = "asr_gpu"
PROMPTS = 4


def write_model(repo: Path, args, device: str, variant: str, precision: str) -> None:
    folder = repo / MODEL
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(
        "from bench.gpu.sensevoice_torch import TritonPythonModel  # noqa: F401\n"
    )
    params = {"device": device, "variant": variant, "seed": args.seed, "precision": precision}
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
"""
        + parameters_pbtxt(params)
    )


def recognise(client: HttpClient, wave: np.ndarray) -> dict:
    """One utterance through ``asr_gpu``; checks NUM_FRAMES (4 prompts + LFR frames) and NUM_TOKENS."""
    out = client.infer(MODEL, {"WAVEFORM": wave[None]}, ["TOKEN_IDS", "NUM_TOKENS", "NUM_FRAMES"])
    ids, frames = out["TOKEN_IDS"].reshape(-1), int(out["NUM_FRAMES"].reshape(-1)[0])
    expect = PROMPTS + (((wave.size - 400) // 160 + 1) + 5) // 6
    if frames != expect or ids.size != int(out["NUM_TOKENS"].reshape(-1)[0]):
        raise RuntimeError(
            f"broken output: NUM_FRAMES {frames} (want {expect}), {ids.size} ids vs NUM_TOKENS "
            f"{out['NUM_TOKENS'].tolist()}"
        )
    return {"audio_s": wave.size / SAMPLE_RATE, "tokens": ids.size}


def utterances(seed: int, count: int, lo_s: float, hi_s: float) -> list[np.ndarray]:
    """Seeded noise bursts of ``lo_s``-``hi_s`` seconds."""
    rng = np.random.default_rng(seed)
    return noise_bursts(rng, [int(rng.uniform(lo_s, hi_s) * SAMPLE_RATE) for _ in range(count)])


# -- 3. direct ----------------------------------------------------------------------------------------


def direct(recognizer, batches: list[int], seconds_each: float, device: str) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for b in batches:
        waves = [rng.normal(0, 0.1, 10 * SAMPLE_RATE).astype(np.float32) for _ in range(b)]
        n, wall = time_calls(lambda waves=waves: recognizer(waves), seconds_each, device)
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
    add_arguments(ap, seconds_default="20; --cpu 4", precision_default="fp32,fp16; --cpu fp32")
    ap.add_argument(
        "--seed", type=int, default=None, help="default: the dev seed (export_scripts.sensevoice_dev)"
    )
    args = ap.parse_args(argv)

    from export_scripts.sensevoice_dev import BLANK_BIAS, DEFAULT_SEED, ENCODERS

    device, variant = ("cpu", "tiny") if args.cpu else ("cuda", "full")
    args.seed = DEFAULT_SEED if args.seed is None else args.seed
    seconds = args.seconds if args.seconds is not None else (4.0 if args.cpu else 20.0)
    streams = [int(s) for s in (args.streams or "1,16,64").split(",")]
    precs = precisions(ap, args.precision or ("fp32" if args.cpu else "fp32,fp16"))
    run = Run("asr_gpu_check", args, device=device, variant=variant, precisions=",".join(precs))
    result = run.result

    def body() -> bool:
        result["probe"] = probe(device)
        log("probe:", json.dumps(result["probe"]))
        if args.fidelity:
            result["fidelity"] = fidelity()
            log("fidelity:", json.dumps(result["fidelity"]))

        from bench.gpu.sensevoice_torch import Recognizer

        result["direct"], result["served"] = {}, {}
        if not args.skip_direct:
            for prec in precs:
                t0 = time.monotonic()
                rec = Recognizer(ENCODERS[variant], args.seed, BLANK_BIAS, device, prec)
                result["params_m"] = round(rec.params / 1e6, 2)
                log(
                    f"model {variant} {prec}: {result['params_m']} M params on {device} ({time.monotonic() - t0:.1f} s)"
                )
                result["direct"][prec] = direct(rec, [1, 16, 64], 1.0 if args.cpu else 3.0, device)
                del rec
                release(device)

        root, env, result["ldd_missing"] = prepare_triton(args.bundle, run.work)
        clips = utterances(args.seed, 256, 3.0, 15.0)

        def step(client: HttpClient, k: int) -> dict:
            return recognise(client, clips[k % len(clips)])

        for prec in precs:
            repo = run.work / f"repository_{prec}"
            write_model(repo, args, device, variant, prec)
            t0 = time.monotonic()
            server = run.serve(root, env, repo, prec)
            load_level(
                server, max(streams), min(seconds, 3.0), step, [MODEL]
            )  # warm-up: every batch shape path
            levels = []
            for s in streams:
                levels.append(load_level(server, s, seconds, step, [MODEL]))
                log(f"served {prec} streams={s}: {json.dumps(levels[-1])}")
            result["served"][prec] = {"ready_s": round(time.monotonic() - t0, 1), "levels": levels}
            run.stop_server()
        return all(r["requests"] > 0 for v in result["served"].values() for r in v["levels"])

    return run.finish(body)


if __name__ == "__main__":
    sys.exit(main())
