"""Export FunASR SenseVoiceSmall to ONNX + runtime assets, gated by parity with PyTorch.

Runs in the export environment::

    python -m export_scripts.sensevoice --model-dir DIR --out OUTDIR [--tolerance 1e-4] [--opset 14]
                                        [--parity-wav WAV] [--int8]

``DIR`` is a model folder in the hub layout of ``iic/SenseVoiceSmall`` (``model.pt``, ``config.yaml``,
``am.mvn``, ``chn_jpn_yue_eng_ko_spectok.bpe.model``, optionally ``configuration.json`` and, for the
dev fixture, ``fixture_clips.npz``). The model is built with FunASR's own classes from
``config.yaml`` (vocabulary size = the BPE's piece count), ``model.pt`` is loaded strictly, and the
network is exported through FunASR's ``export_rebuild_model`` (``funasr/models/sense_voice/export_meta.py``)
with ``torch.onnx.export(dynamo=False)``. The graph:

* inputs  ``speech`` float32 [B, T, 560] (fbank 80, LFR 7/6, CMVN), ``speech_lengths`` int32 [B],
  ``language`` int32 [B], ``textnorm`` int32 [B] -- prompt-embedding indices, not BPE ids:
  language auto 0, zh 3, en 4, yue 7, ja 11, ko 12, nospeech 13; textnorm withitn 14, woitn 15
* outputs ``ctc_logits`` float32 [B, T+4, V] (raw logits of ``ctc_lo``; the first 4 frames are the
  language/emotion/event/ITN prompts), ``encoder_out_lens`` int32 [B] (= speech_lengths + 4)

with batch and time symbolic.

Parity gate: onnxruntime against FunASR's PyTorch inference arithmetic (``SenseVoiceSmall.inference``:
prompt embeddings, encoder, ``ctc_lo``) on three inputs -- random features (B=1), a batch of three
real utterances of different lengths with different language/textnorm prompts (padded), and one
long real utterance. Over the valid frames of every row: max |Δ logit| <= ``--tolerance`` and the
argmax must agree on 100 % of frames; ``encoder_out_lens`` must be equal. Otherwise the numbers are
printed and the script exits 1 without creating ``OUTDIR``.

Written to ``OUTDIR``: ``model.onnx``, ``am.mvn`` (copy), ``config.yaml`` (the source's, with
``frontend_conf.dither: 0.0``), ``chn_jpn_yue_eng_ko_spectok.bpe.model`` (copy), ``tokens.json`` (the
piece string of every id 0..V-1), ``export_meta.json`` (source hashes, parity numbers, versions),
``fixture_clips.npz`` when the source has one, and ``model_quant.onnx`` with ``--int8`` (dynamic
int8 quantisation; its argmax agreement is recorded, not gated).

FunASR prints to stdout when imported; that output goes to stderr here. Read ``export_meta.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import shutil
import sys
from pathlib import Path

from export_scripts.common import missing_files, sha256_file, staging_dir
from export_scripts.hub import load_config, source_model_id

MODEL_ID = "iic/SenseVoiceSmall"
BPE_NAME = "chn_jpn_yue_eng_ko_spectok.bpe.model"
REQUIRED_FILES = ("model.pt", "config.yaml", "am.mvn", BPE_NAME)
OPTIONAL_FILES = ("configuration.json", "fixture_clips.npz")
ONNX_NAME = "model.onnx"
QUANT_NAME = "model_quant.onnx"
TORCHSCRIPT_NAME = "model.ts"
INPUT_NAMES = ["speech", "speech_lengths", "language", "textnorm"]
OUTPUT_NAMES = ["ctc_logits", "encoder_out_lens"]
DEFAULT_OPSET = 14
DEFAULT_TOLERANCE = 1e-4
LANGUAGE_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
TEXTNORM_IDS = {"withitn": 14, "woitn": 15}


class ParityError(RuntimeError):
    pass


def _quiet_funasr():
    with contextlib.redirect_stdout(sys.stderr):
        import funasr
        import funasr.models.sense_voice.model  # noqa: F401  (registers the classes)
        from funasr.frontends.wav_frontend import WavFrontend
        from funasr.register import tables
    return funasr, WavFrontend, tables


def build_model(model_dir: Path, config: dict, vocab_size: int):
    """FunASR's SenseVoiceSmall from config.yaml with model.pt loaded strictly."""
    import torch

    _, _, tables = _quiet_funasr()
    model_name = config.get("model", "SenseVoiceSmall")
    cls = tables.model_classes.get(model_name)
    if cls is None:
        raise SystemExit(f"model class {model_name!r} from config.yaml is not registered in funasr")
    frontend_conf = config.get("frontend_conf", {})
    input_size = int(frontend_conf.get("n_mels", 80)) * int(frontend_conf.get("lfr_m", 7))
    model = cls(
        encoder=config["encoder"],
        encoder_conf=config["encoder_conf"],
        input_size=input_size,
        vocab_size=vocab_size,
        **config.get("model_conf", {}),
    )
    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def export_onnx(model, path: Path, opset: int) -> None:
    import onnx
    import torch

    export_model = copy.deepcopy(model).export(max_seq_len=512, device="cpu")
    export_model.eval()
    dummy = export_model.export_dummy_inputs()
    dynamic_axes = {
        "speech": {0: "batch", 1: "frames"},
        "speech_lengths": {0: "batch"},
        "language": {0: "batch"},
        "textnorm": {0: "batch"},
        "ctc_logits": {0: "batch", 1: "out_frames"},
        "encoder_out_lens": {0: "batch"},
    }
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(
            export_model,
            dummy,
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    m = onnx.load(str(path), load_external_data=False)
    if path.stat().st_size < 2**31 - 1:
        onnx.checker.check_model(str(path))
    got_in = [i.name for i in m.graph.input]
    got_out = [o.name for o in m.graph.output]
    if got_in != INPUT_NAMES or got_out != OUTPUT_NAMES:
        raise SystemExit(f"exported graph has inputs {got_in} outputs {got_out}")
    for vi in list(m.graph.input) + list(m.graph.output):
        if vi.type.tensor_type.shape.dim[0].dim_param != "batch":
            raise SystemExit(f"{vi.name}: batch axis is not symbolic")


def export_torchscript(model, path: Path, cases, tolerance: float) -> dict:
    """Trace the same export graph to TorchScript (``model.ts``: the serving ``torchscript`` runtime,
    for torch on CUDA) and gate it against eager PyTorch on the parity cases."""
    import warnings

    import numpy as np
    import torch

    export_model = copy.deepcopy(model).export(max_seq_len=512, device="cpu")
    export_model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python ints: shapes checked below
        traced = torch.jit.trace(export_model, export_model.export_dummy_inputs(), check_trace=False)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    worst, checks = 0.0, {}
    for name, x, n, lang, tn, _ in cases:
        ref, ref_lens = torch_logits(model, x, n, lang, tn)
        with torch.no_grad():
            got, got_lens = loaded(
                torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                torch.as_tensor(n, dtype=torch.int32),
                torch.as_tensor(lang, dtype=torch.int32),
                torch.as_tensor(tn, dtype=torch.int32),
            )
        diff = max(
            float(np.abs(ref[b, : int(ref_lens[b])] - got.numpy()[b, : int(ref_lens[b])]).max())
            for b in range(len(n))
        )
        same_lens = bool(np.array_equal(np.asarray(ref_lens), got_lens.numpy()))
        checks[name] = {"max_abs_diff": diff, "encoder_out_lens_equal": same_lens}
        worst = max(worst, diff)
        print(f"torchscript {name:20s} max|Δlogit| {diff:.2e}  lens {'=' if same_lens else '!='}", flush=True)
        if diff > tolerance or not same_lens:
            raise ParityError(f"TorchScript differs from PyTorch on {name}: max |Δlogit| {diff:.3e}")
    return {"file": path.name, "sha256": sha256_file(path), "max_abs_diff": worst, "checks": checks}


# -- parity -------------------------------------------------------------------------------------


def torch_logits(model, speech, lengths, language, textnorm):
    """FunASR's inference arithmetic (SenseVoiceSmall.inference) up to ctc_lo, per-row prompts."""
    import torch

    x = torch.as_tensor(speech)
    lang_q = model.embed(torch.as_tensor(language, dtype=torch.long)[:, None])
    tn_q = model.embed(torch.as_tensor(textnorm, dtype=torch.long)[:, None])
    ee_q = model.embed(torch.LongTensor([[1, 2]])).repeat(x.shape[0], 1, 1)
    x = torch.cat((lang_q, ee_q, tn_q, x), dim=1)
    with torch.no_grad():
        enc, olens = model.encoder(x, torch.as_tensor(lengths, dtype=torch.long) + 4)
        if isinstance(enc, tuple):
            enc = enc[0]
        logits = model.ctc.ctc_lo(enc)
    return logits.numpy(), olens.numpy()


def features(model_dir: Path, config: dict, audios):
    """WavFrontend features (dither 0) with the model's am.mvn, one [T, 560] array per clip."""
    import torch

    _, WavFrontend, _ = _quiet_funasr()
    conf = dict(config.get("frontend_conf", {}))
    conf.pop("cmvn_file", None)
    conf["dither"] = 0.0
    fe = WavFrontend(cmvn_file=str(model_dir / "am.mvn"), **conf)
    fe.eval()
    out = []
    with torch.no_grad():
        for a in audios:
            f, n = fe(torch.from_numpy(a)[None, :], torch.tensor([len(a)]))
            out.append(f[0, : int(n[0])].numpy())
    return out


def parity_audio(model_dir: Path, wav: Path | None):
    """(three short clips, one long clip, description): fixture clips / pyannote sample / espeak-ng."""
    import numpy as np
    import soundfile as sf

    def read(path: Path):
        a, sr = sf.read(str(path), dtype="float32", always_2d=True)
        if sr != 16000:
            raise SystemExit(f"{path}: parity audio must be 16 kHz (is {sr})")
        return np.ascontiguousarray(a.mean(axis=1))

    if wav is None:
        wav = default_parity_wav()
    if wav is not None:
        a = read(wav)
        shorts = [a[16000 * s : 16000 * (s + d)] for s, d in ((1, 3), (6, 5), (12, 2))]
        return shorts, a[: 16000 * 20], f"{wav.name}: 3 s/5 s/2 s windows, first 20 s"
    if (model_dir / "fixture_clips.npz").is_file():
        z = np.load(model_dir / "fixture_clips.npz")
        clips = [z[k] for k in sorted(k for k in z.files if k.startswith("audio_"))]
        return clips[:3], np.concatenate(clips), "fixture_clips.npz: 3 clips, all clips concatenated"
    from export_scripts.sensevoice_dev import espeak

    shorts = [
        espeak("hello everyone", "en-us", None, None),
        espeak("我们明天下午开会讨论新项目", "cmn", None, None),
        espeak("thank you", "en-gb+f3", None, None),
    ]
    return shorts, np.concatenate(shorts * 3), "espeak-ng: 3 sentences, concatenated x3"


def default_parity_wav() -> Path | None:
    """pyannote.audio's 30 s two-speaker sample.wav (in its wheel, in the export environment), or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("pyannote.audio")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    wav = Path(list(spec.submodule_search_locations)[0]) / "sample" / "sample.wav"
    return wav if wav.is_file() else None


def _pad(feats):
    import numpy as np

    t = max(f.shape[0] for f in feats)
    x = np.zeros((len(feats), t, feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
    return x, np.array([f.shape[0] for f in feats], np.int32)


def compare(ref, got) -> dict:
    import numpy as np

    (rl, rn), (gl, gn) = ref, got
    if rl.shape != gl.shape:
        raise ParityError(f"ctc_logits shape {gl.shape} != PyTorch {rl.shape}")
    lens_equal = bool(np.array_equal(rn.astype(np.int64), gn.astype(np.int64)))
    diff, agree, total = 0.0, 0, 0
    for b in range(rl.shape[0]):
        n = int(rn[b])
        r, g = rl[b, :n].astype(np.float64), gl[b, :n].astype(np.float64)
        diff = max(diff, float(np.max(np.abs(r - g))) if n else 0.0)
        agree += int(np.sum(r.argmax(-1) == g.argmax(-1)))
        total += n
    return {
        "max_abs_diff": diff,
        "argmax_agreement": agree / total if total else 1.0,
        "frames": total,
        "encoder_out_lens_equal": lens_equal,
    }


def run_parity(model, config: dict, model_dir: Path, onnx_path: Path, wav: Path | None, threads: int = 2):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def ort_run(x, n, lang, tn):
        feed = {
            "speech": x.astype(np.float32),
            "speech_lengths": np.asarray(n, np.int32),
            "language": np.asarray(lang, np.int32),
            "textnorm": np.asarray(tn, np.int32),
        }
        return tuple(sess.run(OUTPUT_NAMES, feed))

    shorts, long, source = parity_audio(model_dir, wav)
    fc = config.get("frontend_conf", {})
    dim = int(fc.get("n_mels", 80)) * int(fc.get("lfr_m", 7))
    rng = np.random.default_rng(1234)
    cases = []
    x = rng.standard_normal((1, 83, dim)).astype(np.float32)
    cases.append(("batch1_random", x, np.array([83], np.int32), [0], [15], "B=1 T=83 N(0,1), auto/woitn"))
    x, n = _pad(features(model_dir, config, shorts))
    cases.append(
        (
            "batch3_real_ragged",
            x,
            n,
            [0, 3, 4],
            [14, 15, 15],
            f"{source}; B=3 T={n.tolist()} padded, auto/zh/en",
        )
    )
    x, n = _pad(features(model_dir, config, [long]))
    cases.append(("batch1_real_long", x, n, [7], [14], f"{source}; B=1 T={int(n[0])}, yue/withitn"))

    checks = {}
    for name, x, n, lang, tn, note in cases:
        ref = torch_logits(model, x, n, lang, tn)
        got = ort_run(x, n, lang, tn)
        checks[name] = {"note": note, **compare(ref, got)}
    return checks, cases, ort_run


def quantize(onnx_path: Path, out: Path, model, cases) -> dict:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # MatMul weights only, as FunASR's own export quantises (onnxruntime has no ConvInteger kernel on CPU)
    quantize_dynamic(
        str(onnx_path),
        str(out),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QUInt8,
    )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    agree, total = 0, 0
    for _name, x, n, lang, tn, _ in cases:
        ref, _ = torch_logits(model, x, n, lang, tn)
        got = sess.run(
            ["ctc_logits"],
            {
                "speech": x,
                "speech_lengths": n,
                "language": np.asarray(lang, np.int32),
                "textnorm": np.asarray(tn, np.int32),
            },
        )[0]
        for b in range(x.shape[0]):
            k = int(n[b]) + 4
            agree += int(np.sum(ref[b, :k].argmax(-1) == got[b, :k].argmax(-1)))
            total += k
    return {"file": out.name, "sha256": sha256_file(out), "argmax_agreement": agree / total}


# -- main ---------------------------------------------------------------------------------------


def tokens_list(bpe: Path) -> list[str]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(bpe))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def export(
    model_dir: Path,
    out_dir: Path,
    tolerance: float,
    opset: int,
    wav: Path | None,
    int8: bool,
    torchscript: bool = False,
) -> dict:
    import numpy as np
    import onnx
    import onnxruntime
    import sentencepiece
    import torch
    import yaml

    funasr, _, _ = _quiet_funasr()
    missing = missing_files(model_dir, REQUIRED_FILES)
    if missing:
        raise SystemExit(f"{model_dir}: missing {', '.join(missing)}")
    config = load_config(model_dir)
    tokens = tokens_list(model_dir / BPE_NAME)
    torch.manual_seed(0)
    model = build_model(model_dir, config, len(tokens))
    if model.ctc.ctc_lo.out_features != len(tokens):
        raise SystemExit(f"ctc_lo has {model.ctc.ctc_lo.out_features} outputs, the BPE {len(tokens)} pieces")

    with staging_dir(out_dir) as stage:
        onnx_path = stage / ONNX_NAME
        export_onnx(model, onnx_path, opset)
        checks, cases, _ = run_parity(model, config, model_dir, onnx_path, wav)
        worst = max(c["max_abs_diff"] for c in checks.values())
        worst_agree = min(c["argmax_agreement"] for c in checks.values())
        lens_ok = all(c["encoder_out_lens_equal"] for c in checks.values())
        for name, c in checks.items():
            ok = (
                c["max_abs_diff"] <= tolerance
                and c["argmax_agreement"] == 1.0
                and c["encoder_out_lens_equal"]
            )
            print(
                f"parity {name:20s} max|Δlogit| {c['max_abs_diff']:.2e}  argmax {100 * c['argmax_agreement']:.2f} %"
                f" of {c['frames']} frames  lens {'=' if c['encoder_out_lens_equal'] else '!='}  [{'ok' if ok else 'FAIL'}]"
                f"  {c['note']}",
                flush=True,
            )
        if not (worst <= tolerance and worst_agree == 1.0 and lens_ok):
            raise ParityError(
                f"ONNX differs from PyTorch: max |Δlogit| {worst:.3e} (tolerance {tolerance:g}), "
                f"argmax agreement {100 * worst_agree:.3f} %, encoder_out_lens equal: {lens_ok}"
            )
        quant = quantize(onnx_path, stage / QUANT_NAME, model, cases) if int8 else None
        ts = export_torchscript(model, stage / TORCHSCRIPT_NAME, cases, tolerance) if torchscript else None

        shutil.copyfile(model_dir / "am.mvn", stage / "am.mvn")
        shutil.copyfile(model_dir / BPE_NAME, stage / BPE_NAME)
        if (model_dir / "fixture_clips.npz").is_file():
            shutil.copyfile(model_dir / "fixture_clips.npz", stage / "fixture_clips.npz")
        out_config = copy.deepcopy(config)
        out_config.setdefault("frontend_conf", {})["dither"] = 0.0
        out_config["frontend_conf"]["cmvn_file"] = "am.mvn"
        out_config.setdefault("tokenizer_conf", {})["bpemodel"] = BPE_NAME
        with open(stage / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(out_config, f, sort_keys=False, allow_unicode=True)
        (stage / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False) + "\n", encoding="utf-8")

        sources = {
            name: sha256_file(model_dir / name)
            for name in REQUIRED_FILES + OPTIONAL_FILES
            if (model_dir / name).is_file()
        }
        dev_meta = model_dir / "dev_meta.json"
        meta = {
            "artifact": "sensevoice",
            "source_model_id": source_model_id(model_dir, MODEL_ID),
            "source_dir": str(model_dir),
            "dev_model": json.loads(dev_meta.read_text()) if dev_meta.is_file() else None,
            "source_files_sha256": sources,
            "params": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokens),
            "onnx": {
                "file": ONNX_NAME,
                "sha256": sha256_file(onnx_path),
                "opset": opset,
                "exporter": "torch.onnx.export(dynamo=False) of funasr sense_voice export_rebuild_model",
                "inputs": {
                    "speech": ["batch", "frames", int(cases[0][1].shape[2])],
                    "speech_lengths": ["batch"],
                    "language": ["batch"],
                    "textnorm": ["batch"],
                },
                "outputs": {
                    "ctc_logits": ["batch", "out_frames", len(tokens)],
                    "encoder_out_lens": ["batch"],
                },
                "language_ids": LANGUAGE_IDS,
                "textnorm_ids": TEXTNORM_IDS,
                "logits": "raw ctc_lo output (argmax = argmax of FunASR's log_softmax); frames 0..3 are the "
                "language, emotion, event and ITN prompts; out_frames = frames + 4",
                "blank_id": 0,
                "control_ids_decode_to_empty": [
                    i for i, t in enumerate(tokens[:3]) if t in ("<unk>", "<s>", "</s>")
                ],
            },
            "parity": {
                "tolerance": tolerance,
                "gate": "valid frames: max |Δ logit| <= tolerance and 100 % argmax agreement; encoder_out_lens equal",
                "max_abs_diff": worst,
                "argmax_agreement": worst_agree,
                "checks": checks,
            },
            "int8": quant,
            "torchscript": ts,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "funasr": getattr(funasr, "__version__", "unknown"),
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "sentencepiece": sentencepiece.__version__,
                "numpy": np.__version__,
            },
        }
        (stage / "export_meta.json").write_text(
            json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    print(f"wrote {out_dir} (max |Δlogit| {worst:.2e} <= {tolerance:g}, argmax 100 %)", flush=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.sensevoice", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", required=True, type=Path, help="SenseVoiceSmall folder in the hub layout")
    p.add_argument("--out", required=True, type=Path, help="output folder (created or replaced atomically)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |ONNX - PyTorch| logit")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--parity-wav", type=Path, default=None, help="16 kHz speech for the real-feature checks")
    p.add_argument("--int8", action="store_true", help="also write model_quant.onnx (dynamic int8)")
    p.add_argument("--torchscript", action="store_true", help="also write model.ts (traced, parity-gated)")
    args = p.parse_args(argv)
    try:
        export(
            args.model_dir.resolve(),
            args.out.resolve(),
            args.tolerance,
            args.opset,
            args.parity_wav,
            args.int8,
            args.torchscript,
        )
    except ParityError as e:
        print(f"parity gate failed: {e}; nothing written to {args.out}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
