"""Export FunASR's fsmn-VAD network (the FSMN encoder) to ONNX with a dynamic batch axis.

Runs in the export environment::

    python -m export_scripts.fsmn_vad --model-dir DIR --out OUTDIR [--tolerance 1e-5] [--opset 14]

``DIR`` is a model folder in the hub layout of ``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch``
(``model.pt``, ``config.yaml``, ``am.mvn``, optionally ``configuration.json``). The encoder is built
with FunASR's own classes (``FSMN`` from the registry, weights loaded strictly from ``model.pt``) and
exported through FunASR's ``FSMNExport`` wrapper with the legacy TorchScript exporter
(``dynamo=False``). The graph:

* inputs  ``speech`` float32 [B, T, 400], ``in_cache0..3`` float32 [B, 128, 19, 1]
* outputs ``logits`` float32 [B, T, 248] (softmax posteriors, pdf 0 = silence),
  ``out_cache0..3`` float32 [B, 128, 19, 1]

with ``B`` and ``T`` symbolic. The shipped ``model.onnx`` of the hub has a fixed batch of 1, hence this.

Parity gate: FunASR's PyTorch encoder (its streaming ``cache`` dict path, the one
``FsmnVADStreaming`` runs) and onnxruntime are compared on five inputs (batch 1 and 3, random and
real speech features, a two-call continuation with the caches carried); if any output differs by
more than ``--tolerance`` the numbers are printed and the script exits 1 without creating ``OUTDIR``
(everything is staged in a temporary folder beside it and renamed at the end). ``logits`` are
compared absolutely; the caches (activations of magnitude ~5-10) relative to their largest value,
max |Δ| / max(1, max |ref|); both raw numbers go to ``export_meta.json``.

Written to ``OUTDIR``: ``fsmn_vad.onnx``, ``am.mvn`` and ``config.yaml`` (byte copies of the source),
``export_meta.json`` (source hashes, parity numbers, opset, versions).

FunASR prints to stdout when imported; that output is sent to stderr here. Nothing this script prints
is meant to be parsed: read ``export_meta.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import platform
import shutil
import sys
from pathlib import Path

from export_scripts.common import (
    FSMN_VAD_MODEL_ID,
    FSMN_VAD_OPTIONAL_FILES,
    FSMN_VAD_REQUIRED_FILES,
    missing_files,
    sha256_file,
    staging_dir,
)
from export_scripts.hub import load_config, source_model_id

ONNX_NAME = "fsmn_vad.onnx"
INPUT_NAMES = ["speech", "in_cache0", "in_cache1", "in_cache2", "in_cache3"]
OUTPUT_NAMES = ["logits", "out_cache0", "out_cache1", "out_cache2", "out_cache3"]
DEFAULT_OPSET = 14  # what FunASR's own export uses; onnxruntime >= 1.10 runs it
DEFAULT_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    pass


def _quiet_import_funasr():
    """Import the FunASR pieces we use; FunASR's import-time notice goes to stderr, not stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        import funasr
        import funasr.models.fsmn_vad_streaming.encoder as fsmn_encoder  # registers FSMN/FSMNExport
        from funasr.frontends.wav_frontend import WavFrontend
        from funasr.register import tables
    return funasr, fsmn_encoder, WavFrontend, tables


def build_encoder(model_dir: Path, config: dict):
    """FunASR's FSMN encoder with ``model.pt``'s weights, loaded strictly (no silent random init)."""
    import torch

    _, _, _, tables = _quiet_import_funasr()
    enc_name = config.get("encoder", "FSMN")
    encoder_class = tables.encoder_classes.get(enc_name)
    if encoder_class is None:
        raise SystemExit(f"encoder class {enc_name!r} from config.yaml is not registered in funasr")
    encoder = encoder_class(**config.get("encoder_conf", {}))
    if not getattr(encoder, "use_softmax", False):
        raise SystemExit("the FSMN encoder must end in its softmax (use_softmax: true)")

    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    enc_state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    others = sorted(k for k in state if not k.startswith("encoder."))
    if others:
        raise SystemExit(f"model.pt has weights outside the encoder, not expected for fsmn-VAD: {others[:5]}")
    encoder.load_state_dict(enc_state, strict=True)
    encoder.eval()
    return encoder


class _ExportWrapper:
    """Built lazily (needs torch): FunASR's FSMNExport with a flat output tuple."""

    @staticmethod
    def create(encoder):
        import torch
        from funasr.models.fsmn_vad_streaming.encoder import FSMNExport

        class Wrapper(torch.nn.Module):
            def __init__(self, enc):
                super().__init__()
                # FSMNExport rewires the blocks of the module it is given: hand it a copy.
                self.net = FSMNExport(copy.deepcopy(enc))

            def forward(self, speech, in_cache0, in_cache1, in_cache2, in_cache3):
                logits, caches = self.net(speech, in_cache0, in_cache1, in_cache2, in_cache3)
                return (logits, *caches)

        return Wrapper(encoder).eval()


def cache_shape(config: dict, batch: int) -> tuple[int, int, int, int]:
    ec = config["encoder_conf"]
    return (batch, ec["proj_dim"], (ec["lorder"] - 1) * ec.get("lstride", 1), 1)


def export_onnx(encoder, config: dict, path: Path, opset: int) -> None:
    import torch

    wrapper = _ExportWrapper.create(encoder)
    ec = config["encoder_conf"]
    n_layers = ec["fsmn_layers"]
    if n_layers != 4:
        raise SystemExit(f"fsmn_layers={n_layers}: the serving contract has exactly 4 caches")
    gen = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 30, ec["input_dim"], generator=gen)
    caches = [torch.randn(*cache_shape(config, 2), generator=gen) for _ in range(n_layers)]
    dynamic_axes = {"speech": {0: "batch", 1: "frames"}, "logits": {0: "batch", 1: "frames"}}
    for i in range(n_layers):
        dynamic_axes[f"in_cache{i}"] = {0: "batch"}
        dynamic_axes[f"out_cache{i}"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (speech, *caches),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != INPUT_NAMES or got_out != OUTPUT_NAMES:
        raise SystemExit(f"exported graph has inputs {got_in} outputs {got_out}")
    for vi in list(model.graph.input) + list(model.graph.output):
        d0 = vi.type.tensor_type.shape.dim[0]
        if d0.dim_param != "batch":
            raise SystemExit(f"{vi.name}: batch axis is not symbolic ({d0})")


# -- parity -------------------------------------------------------------------------------------


def _torch_reference(encoder, speech, caches=None):
    """FunASR's runtime path: ``FSMN.forward(feats, cache=dict)`` as FsmnVADStreaming.ComputeScores runs it."""
    import torch

    cache: dict = {}
    if caches is not None:
        for i, c in enumerate(caches):
            cache[f"cache_layer_{i}"] = torch.as_tensor(c).clone()
    with torch.no_grad():
        logits = encoder(torch.as_tensor(speech), cache=cache)
    outs = [logits.numpy()] + [cache[f"cache_layer_{i}"].numpy() for i in range(len(cache))]
    return outs


def _max_abs(a, b) -> float:
    import numpy as np

    if a.shape != b.shape:
        raise ParityError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def real_features(model_dir: Path, config: dict, wav: Path | None, seconds: float = 12.0):
    """fbank/LFR/CMVN features as FunASR computes them (dither 0) from real speech, [T, 400]."""
    import numpy as np
    import soundfile as sf
    import torch

    _, _, WavFrontend, _ = _quiet_import_funasr()
    if wav is None:
        wav = default_parity_wav()
    if wav is not None:
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != 16000:
            raise SystemExit(f"{wav}: parity audio must be 16 kHz (is {sr})")
        source = wav.name
    else:  # a speech-like stand-in: voiced harmonics, syllabic modulation, pauses
        sr = 16000
        t = np.arange(int(seconds * sr)) / sr
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        voiced = sum(np.sin(k * phase) / k for k in range(1, 15))
        envelope = (np.sin(2 * np.pi * 4 * t) > -0.2) * (np.sin(2 * np.pi * 0.25 * t) > -0.3)
        rng = np.random.default_rng(0)
        audio = (0.1 * voiced * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)
        source = "synthetic"
    audio = audio[: int(seconds * sr)]
    conf = dict(config.get("frontend_conf", {}))
    conf["dither"] = 0.0
    frontend = WavFrontend(cmvn_file=str(model_dir / "am.mvn"), **conf)
    with torch.no_grad():
        feats, _ = frontend(torch.from_numpy(audio)[None, :], torch.tensor([audio.size]))
    return feats[0].numpy().astype(np.float32), source


def default_parity_wav() -> Path | None:
    """pyannote.audio's 30 s two-speaker sample (ships in its wheel, in the export environment)."""
    try:
        spec = importlib.util.find_spec("pyannote.audio")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    wav = Path(list(spec.submodule_search_locations)[0]) / "sample" / "sample.wav"
    return wav if wav.is_file() else None


def run_parity(encoder, config: dict, onnx_path: Path, model_dir: Path, wav: Path | None) -> dict:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def ort_run(speech, caches):
        feed = {"speech": speech.astype(np.float32)}
        feed.update({f"in_cache{i}": c.astype(np.float32) for i, c in enumerate(caches)})
        return sess.run(OUTPUT_NAMES, feed)

    rng = np.random.default_rng(1234)
    dim = config["encoder_conf"]["input_dim"]
    zeros = lambda b: [np.zeros(cache_shape(config, b), np.float32) for _ in range(4)]  # noqa: E731
    feats, feat_source = real_features(model_dir, config, wav)
    checks: dict[str, dict] = {}

    def record(name, ref, got, note):
        d_logits = _max_abs(ref[0], got[0])
        d_cache = max(_max_abs(r, g) for r, g in zip(ref[1:], got[1:], strict=True))
        # Caches are hidden activations of magnitude ~5-10 on speech, where float32 summation-order
        # noise alone reaches ~5e-6 absolute: they are gated relative to their scale (never below
        # absolute for |x| <= 1). Logits are posteriors in [0, 1]: gated absolutely.
        d_cache_scaled = max(
            _max_abs(r, g) / max(1.0, float(np.max(np.abs(r))) if r.size else 1.0)
            for r, g in zip(ref[1:], got[1:], strict=True)
        )
        checks[name] = {
            "note": note,
            "logits_max_abs_diff": d_logits,
            "caches_max_abs_diff": d_cache,
            "caches_max_scaled_diff": d_cache_scaled,
            "gated_diff": max(d_logits, d_cache_scaled),
        }

    # 1. batch 1, random features, zero caches (a stream's first call)
    x = rng.standard_normal((1, 57, dim)).astype(np.float32)
    record(
        "batch1_random", _torch_reference(encoder, x), ort_run(x, zeros(1)), "B=1 T=57 N(0,1), zero caches"
    )

    # 2. batch 3, random features, random caches (three streams mid-way)
    x = rng.standard_normal((3, 131, dim)).astype(np.float32)
    c = [rng.standard_normal(cache_shape(config, 3)).astype(np.float32) for _ in range(4)]
    record("batch3_random_caches", _torch_reference(encoder, x, c), ort_run(x, c), "B=3 T=131, random caches")

    # 3. real speech, one PyTorch call vs two ONNX calls with the caches carried between them
    x = feats[None, :]
    split = min(317, x.shape[1] // 2)
    ref = _torch_reference(encoder, x)
    first = ort_run(x[:, :split], zeros(1))
    second = ort_run(x[:, split:], first[1:])
    got = [np.concatenate([first[0], second[0]], axis=1)] + second[1:]
    record(
        "real_chunked_continuation",
        ref,
        got,
        f"{feat_source}: T={x.shape[1]} in one torch call vs ONNX {split}+{x.shape[1] - split} frames, caches carried",
    )

    # 4. real speech, batch 3 (three windows of the recording), zero caches
    t = min(400, feats.shape[0] // 3)
    x = np.stack([feats[i * t : (i + 1) * t] for i in range(3)])
    record("real_batch3", _torch_reference(encoder, x), ort_run(x, zeros(3)), f"{feat_source}: B=3 T={t}")

    # 5. the same real windows run one by one must equal the batched run (batch independence)
    batched = ort_run(x, zeros(3))
    singles = [ort_run(x[i : i + 1], zeros(1)) for i in range(3)]
    stacked = [np.concatenate([s[k] for s in singles], axis=0) for k in range(5)]
    record("onnx_batch_vs_single", batched, stacked, "ONNX B=3 vs three B=1 runs of the same windows")
    return checks


# -- main ---------------------------------------------------------------------------------------


def export(model_dir: Path, out_dir: Path, tolerance: float, opset: int, wav: Path | None) -> dict:
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    funasr, _, _, _ = _quiet_import_funasr()
    missing = missing_files(model_dir, FSMN_VAD_REQUIRED_FILES)
    if missing:
        raise SystemExit(f"{model_dir}: missing {', '.join(missing)}")
    config = load_config(model_dir)
    torch.manual_seed(0)
    encoder = build_encoder(model_dir, config)

    with staging_dir(out_dir) as stage:
        onnx_path = stage / ONNX_NAME
        with contextlib.redirect_stdout(sys.stderr):
            export_onnx(encoder, config, onnx_path, opset)
        checks = run_parity(encoder, config, onnx_path, model_dir, wav)
        worst = max(c["gated_diff"] for c in checks.values())
        for name, c in checks.items():
            flag = "ok" if c["gated_diff"] <= tolerance else "FAIL"
            print(
                f"parity {name:26s} max|Δ| logits {c['logits_max_abs_diff']:.2e}  caches {c['caches_max_abs_diff']:.2e}"
                f" (scaled {c['caches_max_scaled_diff']:.2e})  [{flag}]  {c['note']}",
                flush=True,
            )
        if not worst <= tolerance:
            raise ParityError(f"ONNX differs from PyTorch by {worst:.3e} > tolerance {tolerance:g}")

        shutil.copyfile(model_dir / "am.mvn", stage / "am.mvn")
        shutil.copyfile(model_dir / "config.yaml", stage / "config.yaml")
        sources = {
            name: sha256_file(model_dir / name)
            for name in FSMN_VAD_REQUIRED_FILES + FSMN_VAD_OPTIONAL_FILES
            if (model_dir / name).is_file()
        }
        meta = {
            "artifact": "fsmn_vad",
            "source_model_id": source_model_id(model_dir, FSMN_VAD_MODEL_ID),
            "source_files_sha256": sources,
            "onnx": {
                "file": ONNX_NAME,
                "sha256": sha256_file(onnx_path),
                "opset": opset,
                "exporter": "torch.onnx.export(dynamo=False) of funasr FSMNExport",
                "inputs": {
                    "speech": ["batch", "frames", config["encoder_conf"]["input_dim"]],
                    **{f"in_cache{i}": ["batch", *cache_shape(config, 1)[1:]] for i in range(4)},
                },
                "outputs": {
                    "logits": ["batch", "frames", config["encoder_conf"]["output_dim"]],
                    **{f"out_cache{i}": ["batch", *cache_shape(config, 1)[1:]] for i in range(4)},
                },
                "logits": "softmax posteriors; pdf 0 is silence (sil_pdf_ids in config.yaml)",
            },
            "parity": {
                "tolerance": tolerance,
                "gate": "logits: max |Δ|; caches: max |Δ| / max(1, max |ref|) per cache",
                "gated_diff": worst,
                "logits_max_abs_diff": max(c["logits_max_abs_diff"] for c in checks.values()),
                "caches_max_abs_diff": max(c["caches_max_abs_diff"] for c in checks.values()),
                "checks": checks,
            },
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "funasr": getattr(funasr, "__version__", "unknown"),
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "numpy": np.__version__,
            },
        }
        (stage / "export_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out_dir} (gated max |Δ| {worst:.2e} <= tolerance {tolerance:g})", flush=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.fsmn_vad", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", required=True, type=Path, help="fsmn-VAD folder in the hub layout")
    p.add_argument("--out", required=True, type=Path, help="output folder (created or replaced atomically)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |ONNX - PyTorch| allowed")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--parity-wav", type=Path, default=None, help="16 kHz speech for the real-feature checks")
    args = p.parse_args(argv)
    try:
        export(args.model_dir.resolve(), args.out.resolve(), args.tolerance, args.opset, args.parity_wav)
    except ParityError as e:
        print(f"parity gate failed: {e}; nothing written to {args.out}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
