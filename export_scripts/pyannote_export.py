"""Export a pyannote speaker-diarization model folder (community-1 layout) for onnxruntime + numpy.

Runs in the export environment::

    python -m export_scripts.pyannote_export --model-dir DIR --out OUTDIR
                                             [--seg-tolerance 1e-5] [--min-cosine 0.99999] [--opset 17]

``DIR`` has the layout of ``pyannote/speaker-diarization-community-1``: ``config.yaml``,
``segmentation/pytorch_model.bin``, ``embedding/pytorch_model.bin``, ``plda/{xvec_transform,plda}.npz``.
Written to ``OUTDIR`` (staged, renamed at the end; nothing on failure):

* ``segmentation.onnx``   ``waveform`` [B,1,160000] -> ``scores`` [B,589,7] (the whole PyanNet,
  powerset log-softmax), symbolic batch.
* ``embedding_trunk.onnx`` ``fbank`` [B,F,80] -> ``features`` [B,C,T'] (the WeSpeaker ResNet up to
  its statistics pooling, channels x frequency flattened as pyannote's TSTP does), symbolic B/F.
* ``embedding_head.npz``  the pooling + embedding layer, applied in numpy (see docs/diarization-export.md).
* ``plda.npz``, ``xvec_transform.npz``  byte copies of the source's ``plda/`` files.
* ``params.json``          everything the client pipeline needs (windows, frames, clustering, ...).
* ``fbank.json``           the exact kaldi fbank options of the embedding model.
* ``head_check.npz``       one recorded head check (trunk features, masks, PyTorch embeddings).
* ``export_meta.json``     source hashes, parity numbers, versions.

Parity gate (exit 1, nothing written, when it fails): segmentation max |Δ| vs PyTorch <= tolerance
on several windows (batch 1 and 3); for >= 3 windows of real speech and every active local speaker
(pyannote's binarised powerset masks) plus synthetic masks, cosine(ONNX trunk + numpy head,
``model.resnet(fbank, weights=mask)``) >= ``--min-cosine``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path

os.environ["PYANNOTE_METRICS_ENABLED"] = "false"

from export_scripts.common import sha256_file, staging_dir  # noqa: E402
from export_scripts.hub import load_config

SOURCE_FILES = (
    "config.yaml",
    "segmentation/pytorch_model.bin",
    "embedding/pytorch_model.bin",
    "plda/xvec_transform.npz",
    "plda/plda.npz",
)
OUTPUT_FILES = (
    "segmentation.onnx",
    "embedding_trunk.onnx",
    "embedding_head.npz",
    "plda.npz",
    "xvec_transform.npz",
    "params.json",
    "fbank.json",
    "head_check.npz",
    "export_meta.json",
)
SAMPLE_RATE = 16000
WAVEFORM_SCALE = 32768.0  # pyannote's compute_fbank: waveforms * (1 << 15)
STATS_EPS = 1e-8


class ParityError(RuntimeError):
    pass


# -- loading (shared with reference_diarization) ----------------------------------------------------


def _quiet():
    warnings.filterwarnings("ignore")


def load_models(model_dir: Path):
    """(segmentation Model, embedding Model, PLDA) from a hub-layout folder, in memory, eval mode."""
    _quiet()
    from pyannote.audio import Model
    from pyannote.audio.core.plda import PLDA

    model_dir = Path(model_dir)
    seg = Model.from_pretrained(str(model_dir / "segmentation" / "pytorch_model.bin"))
    emb = Model.from_pretrained(str(model_dir / "embedding" / "pytorch_model.bin"))
    if seg is None or emb is None:
        raise SystemExit(f"{model_dir}: could not load the segmentation/embedding checkpoints")
    plda = PLDA(model_dir / "plda" / "xvec_transform.npz", model_dir / "plda" / "plda.npz")
    return seg.eval(), emb.eval(), plda


def pipeline_kwargs(config: dict) -> dict:
    params = dict(config.get("pipeline", {}).get("params", {}))
    for key in ("segmentation", "embedding", "plda", "token", "cache_dir"):
        params.pop(key, None)
    return params


def load_pipeline(model_dir: Path, models=None):
    """pyannote's own ``SpeakerDiarization`` with in-memory models and the folder's hyper-parameters."""
    _quiet()
    from pyannote.audio.pipelines import SpeakerDiarization

    config = load_config(model_dir)
    seg, emb, plda = models or load_models(model_dir)
    pipeline = SpeakerDiarization(segmentation=seg, embedding=emb, plda=plda, **pipeline_kwargs(config))
    pipeline.instantiate(config.get("params") or pipeline.default_parameters())
    return pipeline


def default_wav() -> Path:
    spec = importlib.util.find_spec("pyannote.audio")
    return Path(list(spec.submodule_search_locations)[0]) / "sample" / "sample.wav"


def read_wav(path: Path):
    import numpy as np
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise SystemExit(f"{path}: must be {SAMPLE_RATE} Hz (is {sr})")
    return np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32)


# -- graphs -------------------------------------------------------------------------------------------


def _trunk_module(emb):
    import torch

    resnet = emb.resnet
    with torch.no_grad():
        probe = resnet.forward_frames(torch.zeros(1, 200, int(emb.hparams.num_mel_bins)))
    channels = int(probe.shape[1] * probe.shape[2])  # C * F' (static in the graph)

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.resnet = resnet

        def forward(self, fbank):
            r = self.resnet
            x = fbank.permute(0, 2, 1).unsqueeze(1)  # (B,T,F) -> (B,1,F,T)
            out = torch.relu(r.bn1(r.conv1(x)))
            out = r.layer4(r.layer3(r.layer2(r.layer1(out))))
            # (B, C, F', T') -> (B, C*F', T') as TSTP's rearrange "b d c f -> b (d c) f"
            return out.reshape(out.shape[0], channels, -1)

    return Trunk().eval()


def export_graphs(seg, emb, stage: Path, opset: int, num_samples: int) -> dict:
    import onnx
    import torch

    gen = torch.Generator().manual_seed(0)
    seg_path, trunk_path = stage / "segmentation.onnx", stage / "embedding_trunk.onnx"
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(
            seg,
            (torch.randn(2, 1, num_samples, generator=gen) * 0.1,),
            str(seg_path),
            input_names=["waveform"],
            output_names=["scores"],
            dynamic_axes={"waveform": {0: "batch"}, "scores": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        fb = emb.compute_fbank(torch.randn(2, 1, num_samples, generator=gen) * 0.1)
        torch.onnx.export(
            _trunk_module(emb),
            (fb,),
            str(trunk_path),
            input_names=["fbank"],
            output_names=["features"],
            dynamic_axes={"fbank": {0: "batch", 1: "frames"}, "features": {0: "batch", 2: "feature_frames"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    # the trunk's channel axis is a constant, but shape inference through Reshape loses it: pin it
    trunk = onnx.load(str(trunk_path))
    with torch.no_grad():
        probe = _trunk_module(emb)(fb[:1])
    trunk.graph.output[0].type.tensor_type.shape.dim[1].ClearField("dim_param")
    trunk.graph.output[0].type.tensor_type.shape.dim[1].dim_value = int(probe.shape[1])
    onnx.save(trunk, str(trunk_path))
    shapes = {}
    for path in (seg_path, trunk_path):
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        for vi in list(model.graph.input) + list(model.graph.output):
            dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            if dims[0] != "batch":
                raise SystemExit(f"{path.name}:{vi.name}: batch axis is not symbolic ({dims})")
            shapes[vi.name] = dims
    return shapes


# -- numpy head (the formula documented in docs/diarization-export.md) --------------------------------


def nearest_index(src: int, dst: int):
    """Source index of each of ``dst`` frames for torch's F.interpolate(mode='nearest', size=dst).

    torch computes floor(i * (src / dst)) with the scale in float32; reproduced here exactly.
    """
    import numpy as np

    scale = np.float32(src) / np.float32(dst)
    idx = np.floor(np.arange(dst, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, src - 1)


def head_numpy(features, masks, weight, bias, index=None):
    """features [C,T'], masks [S,M] -> embeddings [S,D] (float32, as pyannote's StatsPool + seg_1)."""
    import numpy as np

    features = np.asarray(features, np.float32)
    masks = np.asarray(masks, np.float32)
    if index is None:
        index = nearest_index(masks.shape[1], features.shape[1])
    w = masks[:, index]  # [S,T']
    v1 = w.sum(axis=1, keepdims=True) + np.float32(STATS_EPS)  # [S,1]
    mean = (w @ features.T) / v1  # [S,C]
    v2 = np.square(w).sum(axis=1, keepdims=True)
    dx2 = np.square(features[None, :, :] - mean[:, :, None])  # [S,C,T']
    var = np.einsum("sct,st->sc", dx2, w) / (v1 - v2 / v1 + np.float32(STATS_EPS))
    stats = np.concatenate([mean, np.sqrt(var)], axis=1)  # [S,2C]
    return (stats @ np.asarray(weight, np.float32).T + np.asarray(bias, np.float32)).astype(np.float32)


# -- parity --------------------------------------------------------------------------------------------


def _cos(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def run_parity(seg, emb, stage: Path, wav: Path, num_samples: int, head: dict) -> tuple[dict, dict]:
    import numpy as np
    import onnxruntime as ort
    import torch
    from pyannote.audio.utils.powerset import Powerset

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    seg_sess = ort.InferenceSession(
        str(stage / "segmentation.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    trunk_sess = ort.InferenceSession(
        str(stage / "embedding_trunk.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    audio = read_wav(wav)
    step = num_samples // 2
    starts = [s for s in range(0, max(1, len(audio) - num_samples + 1), step)][:4]
    windows = np.stack(
        [np.pad(audio[s : s + num_samples], (0, max(0, num_samples - len(audio[s:])))) for s in starts]
    )
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal((1, num_samples))).astype(np.float32)

    seg_checks = {}
    with torch.no_grad():
        for name, x in (
            ("speech_batch", windows[:3, None]),
            ("speech_single", windows[3:4, None] if len(windows) > 3 else windows[:1, None]),
            ("noise_single", noise[:, None]),
        ):
            ref = seg(torch.from_numpy(x)).numpy()
            got = seg_sess.run(["scores"], {"waveform": x})[0]
            seg_checks[name] = {"shape": list(got.shape), "max_abs_diff": float(np.max(np.abs(ref - got)))}
        scores = seg(torch.from_numpy(windows[:, None])).numpy()
    powerset = Powerset(len(seg.specifications.classes), seg.specifications.powerset_max_classes)
    with torch.no_grad():
        binary = powerset.to_multilabel(torch.from_numpy(scores)).numpy()  # [W,589,3] hard

    emb_checks = []
    record = None
    with torch.no_grad():
        fbank = emb.compute_fbank(torch.from_numpy(windows[:, None]))  # [W,F,80]
        feats = trunk_sess.run(["features"], {"fbank": fbank.numpy()})[0]  # [W,C,T']
        for w in range(len(windows)):
            masks = [binary[w, :, s] for s in range(binary.shape[2]) if binary[w, :, s].sum() > 0]
            kinds = ["active_speaker"] * len(masks)
            masks.append((rng.random(binary.shape[1]) > 0.5).astype(np.float32))
            kinds.append("random_binary")
            soft = np.clip(np.sin(np.linspace(0, 6, binary.shape[1])) + 0.2, 0, 1).astype(np.float32)
            masks.append(soft)
            kinds.append("soft")
            m = np.stack(masks).astype(np.float32)
            ref = emb.resnet(fbank[w : w + 1].repeat(len(m), 1, 1), weights=torch.from_numpy(m))[1].numpy()
            got = head_numpy(feats[w], m, head["weight"], head["bias"])
            for s, kind in enumerate(kinds):
                emb_checks.append(
                    {
                        "window": w,
                        "mask": kind,
                        "active_frames": int((m[s] > 0).sum()),
                        "cosine": _cos(ref[s], got[s]),
                        "max_abs_diff": float(np.max(np.abs(ref[s] - got[s]))),
                    }
                )
            if record is None and kinds.count("active_speaker") >= 1:
                record = {"features": feats[w], "masks": m, "embeddings": ref}
    return {"segmentation": seg_checks, "embedding": emb_checks}, record


# -- metadata -------------------------------------------------------------------------------------------


def fbank_options(emb) -> dict:
    hp = emb.hparams
    return {
        "implementation": "torchaudio.compliance.kaldi.fbank, applied per window (batch via torch.vmap)",
        "sample_frequency": float(hp.sample_rate),
        "waveform_scale": WAVEFORM_SCALE,
        "num_mel_bins": int(hp.num_mel_bins),
        "frame_length_ms": float(hp.frame_length),
        "frame_shift_ms": float(hp.frame_shift),
        "window_type": str(hp.window_type),
        "dither": float(hp.dither),
        "round_to_power_of_two": bool(hp.get("round_to_power_of_two", True)),
        "snip_edges": bool(hp.get("snip_edges", True)),
        "use_energy": bool(hp.use_energy),
        # torchaudio.compliance.kaldi.fbank defaults pyannote does not override
        "preemphasis_coefficient": 0.97,
        "remove_dc_offset": True,
        "raw_energy": True,
        "energy_floor": 1.0,
        "low_freq": 20.0,
        "high_freq": 0.0,
        "use_log_fbank": True,
        "use_power": True,
        "htk_compat": False,
        "blackman_coeff": 0.42,
        "vtln_warp": 1.0,
        "mean_centering": (
            "global"
            if hp.get("fbank_centering_span") is None
            else f"running, span {hp.get('fbank_centering_span')} s"
        ),
        "mean_centering_formula": "fbank -= fbank.mean(axis=frames) per window (after the log)",
        "log_floor": "log(max(mel_energy, float32 eps))",
    }


def _json_scalar(value):
    """A tuned hyper-parameter as JSON: strings kept, integers as int, other numbers as float."""
    import numbers

    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def clustering_params(method: str, tuned: dict, pipeline) -> dict:
    """params.json's ``clustering``: ``method`` is the pyannote class (``VBxClustering`` or
    ``AgglomerativeClustering``), then its tuned hyper-parameters (VBx: threshold, Fa, Fb;
    agglomerative: threshold, min_cluster_size, and its scipy linkage ``method`` stored as
    ``linkage_method`` so that it cannot shadow the class name)."""
    out: dict = {"method": method}
    for key, value in tuned.items():
        out["linkage_method" if key == "method" else key] = _json_scalar(value)
    if method.startswith("Agglomerative"):
        linkage = out.get("linkage_method", "centroid")
        ahc = (
            f"scipy linkage(method='{linkage}', metric='euclidean') on L2-normalised embeddings"
            if linkage in ("centroid", "median", "ward")
            else f"scipy linkage(method='{linkage}', metric='cosine')"
        ) + ", fcluster distance, clusters under min_cluster_size merged into the nearest large one"
    else:
        ahc = "scipy linkage(method='centroid', metric='euclidean') on L2-normalised embeddings, fcluster distance"
    out.update({"plda_lda_dimension": int(pipeline._plda.lda_dimension), "vbx_max_iters": 20, "ahc": ahc})
    return out


def pipeline_params(config: dict, seg, emb, pipeline) -> dict:
    import torch
    from pyannote.audio.utils.powerset import Powerset

    specs = seg.specifications
    rf = seg.receptive_field
    num_samples = int(round(specs.duration * SAMPLE_RATE))
    with torch.no_grad():
        frames = seg(torch.zeros(1, 1, num_samples)).shape[1]
    powerset = Powerset(len(specs.classes), specs.powerset_max_classes)
    kw = pipeline_kwargs(config)
    inst = pipeline.parameters(instantiated=True)
    return {
        "sample_rate": SAMPLE_RATE,
        "segmentation": {
            "duration": float(specs.duration),
            "step_ratio": float(pipeline.segmentation_step),
            "step": float(pipeline.segmentation_step * specs.duration),
            "window_samples": num_samples,
            "num_frames": int(frames),
            "num_classes": int(powerset.num_powerset_classes),
            "local_speakers": len(specs.classes),
            "max_speakers_per_frame": int(specs.powerset_max_classes),
            "powerset_mapping": powerset.mapping.numpy().astype(int).tolist(),
            "receptive_field": {
                "start": float(rf.start),
                "duration": float(rf.duration),
                "step": float(rf.step),
            },
            "min_duration_off": float(inst["segmentation"]["min_duration_off"]),
            "batch_size": int(kw.get("segmentation_batch_size", 1)),
        },
        "embedding": {
            "dimension": int(emb.dimension),
            "exclude_overlap": bool(kw.get("embedding_exclude_overlap", False)),
            "min_num_samples": int(pipeline._embedding.min_num_samples),
            "batch_size": int(kw.get("embedding_batch_size", 1)),
            "metric": "cosine",
        },
        "clustering": clustering_params(
            str(kw.get("clustering", "VBxClustering")), inst["clustering"], pipeline
        ),
        "pyannote_audio_config_params": config.get("params"),
    }


def export(
    model_dir: Path, out_dir: Path, seg_tol: float, min_cos: float, opset: int, wav: Path | None
) -> dict:
    import numpy as np
    import onnx
    import onnxruntime
    import pyannote.audio
    import torch

    model_dir = Path(model_dir)
    missing = [f for f in SOURCE_FILES if not (model_dir / f).is_file()]
    if missing:
        raise SystemExit(f"{model_dir}: missing {', '.join(missing)}")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    config = load_config(model_dir)
    seg, emb, plda = load_models(model_dir)
    pipeline = load_pipeline(model_dir, (seg, emb, plda))
    resnet = emb.resnet
    if getattr(resnet, "two_emb_layer", False):
        raise SystemExit("embedding ResNet has two_emb_layer=True: only the single-layer head is supported")
    num_samples = int(round(seg.specifications.duration * SAMPLE_RATE))
    wav = wav or default_wav()

    with staging_dir(out_dir) as stage:
        shapes = export_graphs(seg, emb, stage, opset, num_samples)
        with torch.no_grad():
            fb = emb.compute_fbank(torch.zeros(1, 1, num_samples))
            t_out = resnet.forward_frames(fb.clone()).shape[-1]
            mask_frames = int(seg(torch.zeros(1, 1, num_samples)).shape[1])
        head = {
            "weight": resnet.seg_1.weight.detach().numpy().astype(np.float32),
            "bias": resnet.seg_1.bias.detach().numpy().astype(np.float32),
            "eps": np.float32(STATS_EPS),
            "mask_frames": np.int64(mask_frames),
            "feature_frames": np.int64(t_out),
            "fbank_frames": np.int64(fb.shape[1]),
            "mask_index": nearest_index(mask_frames, t_out),
        }
        np.savez(stage / "embedding_head.npz", **head)
        checks, record = run_parity(seg, emb, stage, wav, num_samples, head)
        seg_worst = max(c["max_abs_diff"] for c in checks["segmentation"].values())
        active = [c for c in checks["embedding"] if c["mask"] == "active_speaker"]
        cos_worst = min(c["cosine"] for c in checks["embedding"])
        for name, c in checks["segmentation"].items():
            ok = "ok" if c["max_abs_diff"] <= seg_tol else "FAIL"
            print(
                f"parity segmentation {name:14s} {c['shape']} max|Δ| {c['max_abs_diff']:.2e} [{ok}]",
                file=sys.stderr,
            )
        for c in checks["embedding"]:
            ok = "ok" if c["cosine"] >= min_cos else "FAIL"
            print(
                f"parity embedding window {c['window']} {c['mask']:14s} frames {c['active_frames']:3d} "
                f"cos {c['cosine']:.8f} max|Δ| {c['max_abs_diff']:.2e} [{ok}]",
                file=sys.stderr,
            )
        windows_with_speaker = len({c["window"] for c in active})
        if windows_with_speaker < 3:
            raise ParityError(
                f"only {windows_with_speaker} windows with an active speaker in {wav}: need >= 3"
            )
        if not seg_worst <= seg_tol:
            raise ParityError(f"segmentation ONNX differs from PyTorch by {seg_worst:.3e} > {seg_tol:g}")
        if not cos_worst >= min_cos:
            raise ParityError(f"embedding cosine {cos_worst:.8f} < {min_cos}")
        np.savez(stage / "head_check.npz", **record)

        shutil.copyfile(model_dir / "plda" / "plda.npz", stage / "plda.npz")
        shutil.copyfile(model_dir / "plda" / "xvec_transform.npz", stage / "xvec_transform.npz")
        params = pipeline_params(config, seg, emb, pipeline)
        params["embedding"]["feature_frames"] = int(t_out)
        params["embedding"]["fbank_frames"] = int(fb.shape[1])
        params["embedding"]["feature_channels"] = int(shapes["features"][1])
        (stage / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        (stage / "fbank.json").write_text(json.dumps(fbank_options(emb), indent=2) + "\n")
        meta = {
            "artifact": "pyannote",
            "source_files_sha256": {f: sha256_file(model_dir / f) for f in SOURCE_FILES},
            "dev_model": json.loads((model_dir / "DEV_MODEL.json").read_text())
            if (model_dir / "DEV_MODEL.json").is_file()
            else None,
            "onnx": {
                "opset": opset,
                "exporter": "torch.onnx.export(dynamo=False)",
                "segmentation.onnx": {
                    "inputs": {"waveform": shapes["waveform"]},
                    "outputs": {"scores": shapes["scores"]},
                },
                "embedding_trunk.onnx": {
                    "inputs": {"fbank": shapes["fbank"]},
                    "outputs": {"features": shapes["features"]},
                },
                "sha256": {n: sha256_file(stage / n) for n in ("segmentation.onnx", "embedding_trunk.onnx")},
            },
            "parity": {
                "wav": wav.name,
                "segmentation_tolerance": seg_tol,
                "segmentation_max_abs_diff": seg_worst,
                "embedding_min_cosine_required": min_cos,
                "embedding_min_cosine": cos_worst,
                "embedding_min_cosine_active_speakers": min(c["cosine"] for c in active),
                "embedding_max_abs_diff": max(c["max_abs_diff"] for c in checks["embedding"]),
                "windows_with_active_speaker": windows_with_speaker,
                "checks": checks,
            },
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "pyannote.audio": pyannote.audio.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "numpy": np.__version__,
            },
        }
        (stage / "export_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.pyannote_export", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seg-tolerance", type=float, default=1e-5)
    p.add_argument("--min-cosine", type=float, default=0.99999)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--wav", type=Path, default=None, help="parity audio (default: pyannote's sample.wav)")
    args = p.parse_args(argv)
    try:
        meta = export(args.model_dir, args.out, args.seg_tolerance, args.min_cosine, args.opset, args.wav)
    except ParityError as e:
        print(f"error: parity gate failed: {e}; nothing written to {args.out}", file=sys.stderr)
        return 1
    par = meta["parity"]
    print(
        f"pyannote_export: segmentation max|Δ| {par['segmentation_max_abs_diff']:.2e}, embedding min cosine "
        f"{par['embedding_min_cosine']:.8f} -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
