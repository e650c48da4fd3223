"""Dev pyannote models in the hub layout of ``pyannote/speaker-diarization-community-1``.

Runs in the export environment::

    python -m export_scripts.pyannote_dev --out DIR --variant small|full|fixture [--seed N]
    python -m export_scripts.pyannote_dev --train-fixture --out tests/fixtures/diarization [--seed N]

Layout written to ``DIR`` (what ``pyannote_export`` and ``reference_diarization`` read)::

    config.yaml                      pipeline class, sub-models, hyper-parameters (as community-1's)
    segmentation/pytorch_model.bin   PyanNet (powerset, 3 speakers, 2 per frame), lightning checkpoint
    embedding/pytorch_model.bin      WeSpeaker ResNet (pyannote's classes), lightning checkpoint
    plda/xvec_transform.npz          mean1, mean2, lda        (pyannote.audio.utils.vbx layout)
    plda/plda.npz                    mu, tr, psi

Variants:

* ``small``  : real classes, random weights from ``--seed``: PyanNet with a smaller LSTM, WeSpeaker
  ResNet [1,1,1,1] x 8 channels, 128-d. BatchNorm statistics are calibrated on espeak speech and the
  classifier is scaled so that pyannote's own pipeline gives several speakers and turns (not one
  constant class); a synthetic but valid PLDA. For parity tests, never for accuracy.
* ``full``   : segmentation-3.0's exact architecture and WeSpeakerResNet34, random weights (benchmarks).
* ``fixture``: the trained tiny models committed in ``tests/fixtures/diarization/`` (see its README).

``--train-fixture`` trains that fixture (``export_scripts.pyannote_train``: synthetic espeak voices,
fixed seed, a few CPU minutes) and writes ``fixture.npz`` + ``fixture.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["PYANNOTE_METRICS_ENABLED"] = "false"  # no telemetry from the export environment

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "diarization"

SEG_FULL = {
    "sincnet": {"stride": 10},
    "lstm": {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True, "dropout": 0.0},
    "linear": {"hidden_size": 128, "num_layers": 2},
}
SEG_SMALL = {
    "sincnet": {"stride": 10},
    "lstm": {"hidden_size": 64, "num_layers": 2, "bidirectional": True, "monolithic": True, "dropout": 0.0},
    "linear": {"hidden_size": 64, "num_layers": 2},
}
EMB_SMALL = {"num_blocks": [1, 1, 1, 1], "m_channels": 8, "embed_dim": 128}

# community-1's pipeline hyper-parameters (its config.yaml)
PIPELINE_PARAMS = {
    "clustering": "VBxClustering",
    "embedding_batch_size": 32,
    "embedding_exclude_overlap": True,
    "segmentation_batch_size": 32,
    "segmentation_step": 0.1,
}
TUNED_PARAMS = {
    "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
    "segmentation": {"min_duration_off": 0.0},
}


def _torch():
    import torch

    return torch


# -- model classes ----------------------------------------------------------------------------------


def _small_resnet_class():
    """A WeSpeaker ResNet of configurable size: pyannote's own ``BaseWeSpeakerResNet`` + ``ResNet``."""
    from pyannote.audio.models.embedding.wespeaker import BaseWeSpeakerResNet
    from pyannote.audio.models.embedding.wespeaker.resnet import BasicBlock, ResNet

    class WeSpeakerResNetSmall(BaseWeSpeakerResNet):
        def __init__(
            self,
            sample_rate: int = 16000,
            num_channels: int = 1,
            num_mel_bins: int = 80,
            frame_length: int = 25,
            frame_shift: int = 10,
            dither: float = 0.0,
            window_type: str = "hamming",
            use_energy: bool = False,
            num_blocks=(1, 1, 1, 1),
            m_channels: int = 8,
            embed_dim: int = 128,
            task=None,
        ):
            super().__init__(
                sample_rate=sample_rate,
                num_channels=num_channels,
                num_mel_bins=num_mel_bins,
                frame_length=frame_length,
                frame_shift=frame_shift,
                dither=dither,
                window_type=window_type,
                use_energy=use_energy,
                task=task,
            )
            self.hparams.update(num_blocks=list(num_blocks), m_channels=m_channels, embed_dim=embed_dim)
            self.resnet = ResNet(
                BasicBlock,
                list(num_blocks),
                m_channels=m_channels,
                feat_dim=num_mel_bins,
                embed_dim=embed_dim,
                pooling_func="TSTP",
                two_emb_layer=False,
            )

    WeSpeakerResNetSmall.__module__ = "export_scripts.pyannote_dev"  # also when run as __main__
    WeSpeakerResNetSmall.__qualname__ = "WeSpeakerResNetSmall"
    return WeSpeakerResNetSmall


def __getattr__(name):  # pyannote imports the checkpoint's class by module + name
    if name == "WeSpeakerResNetSmall":
        import importlib

        module = importlib.import_module("export_scripts.pyannote_dev")
        cls = module.__dict__.get(name) or _small_resnet_class()
        module.__dict__[name] = cls
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def seg_specifications():
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        min_duration=None,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )


def emb_specifications():
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0)


def make_segmentation(conf: dict):
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(**conf)
    model.specifications = seg_specifications()
    model.setup()
    return model.eval()


def make_embedding(small: dict | None):
    if small is None:
        from pyannote.audio.models.embedding import WeSpeakerResNet34

        model = WeSpeakerResNet34()
    else:
        model = __getattr__("WeSpeakerResNetSmall")(**small)
    model.specifications = emb_specifications()
    model.setup()
    return model.eval()


def save_checkpoint(model, path: Path) -> None:
    """A checkpoint ``pyannote.audio.Model.from_pretrained`` loads (what lightning would write)."""
    import lightning
    import pyannote.audio

    torch = _torch()
    ckpt = {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "pyannote.audio": {
            "versions": {"pyannote.audio": pyannote.audio.__version__},
            "architecture": {"module": type(model).__module__, "class": type(model).__name__},
            "specifications": model.specifications,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


def write_plda(folder: Path, mean1, mean2, lda, mu, tr, psi) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "xvec_transform.npz", mean1=mean1, mean2=mean2, lda=lda)
    np.savez(folder / "plda.npz", mu=mu, tr=tr, psi=psi)


def synthetic_plda(dim: int, seed: int, lda_dim: int | None = None):
    """A valid PLDA of pyannote's npz layout: orthonormal LDA, identity within-class, decaying psi."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lda_dim = lda_dim or min(128, dim)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lda = q[:, :lda_dim]
    tr, _ = np.linalg.qr(rng.standard_normal((lda_dim, lda_dim)))
    psi = np.geomspace(PLDA_PSI[0], PLDA_PSI[1], lda_dim)
    return dict(
        mean1=np.zeros(dim),
        mean2=np.zeros(lda_dim),
        lda=lda,
        mu=np.zeros(lda_dim),
        tr=tr,
        psi=psi,
    )


def write_config(out: Path, params: dict | None = None, tuned: dict | None = None) -> None:
    import pyannote.audio
    import yaml

    pipeline_params = dict(PIPELINE_PARAMS if params is None else params)
    pipeline_params.update(
        {"segmentation": "$model/segmentation", "embedding": "$model/embedding", "plda": "$model/plda"}
    )
    config = {
        "version": pyannote.audio.__version__,
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization", "params": pipeline_params},
        "params": TUNED_PARAMS if tuned is None else tuned,
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")


# -- calibration of random models ---------------------------------------------------------------------
#
# Random weights alone give a constant answer (one powerset class everywhere, near-identical
# embeddings). The dev models keep their random trunks but get (1) BatchNorm statistics measured on
# speech and (2) their last linear layers fitted in closed form (ridge regression / LDA) on synthetic
# espeak speech, so pyannote's pipeline produces several speakers and turns. Deterministic.


def _calibration_meeting(seed: int, seconds: float = 60.0):
    """(audio, turns) of a 3-voice synthetic meeting on the *training* sentences (tests/meetings.py)."""
    import numpy as np

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.meetings import TRAIN_SENTENCES, compose

    return compose(3, seconds, np.random.default_rng(seed), [0, 1, 2], TRAIN_SENTENCES, overlap=True)


def frame_targets(turns, start_s: float, num_frames: int, duration: float, speakers: list[str]):
    """Powerset class per frame of a window (0 silence, 1..3 one speaker, 4..6 pairs)."""
    import numpy as np

    t = start_s + (np.arange(num_frames) + 0.5) * duration / num_frames
    active = np.zeros((num_frames, 3), bool)
    for s, e, spk in turns:
        if spk in speakers:
            active[(t >= s) & (t < e), speakers.index(spk) % 3] = True
    pairs = {(0, 1): 4, (0, 2): 5, (1, 2): 6}
    y = np.zeros(num_frames, np.int64)
    for i, row in enumerate(active):
        idx = tuple(np.flatnonzero(row)[:2])
        y[i] = 0 if not idx else (idx[0] + 1 if len(idx) == 1 else pairs[idx])
    return y


def fit_segmentation_head(seg, audio, turns, gain: float = 1.0) -> None:
    """Ridge-regress the classifier on (frozen random) features to the powerset targets."""
    import numpy as np

    torch = _torch()
    n = 160000
    speakers = sorted({t[2] for t in turns})
    starts = list(range(0, len(audio) - n + 1, 16000))
    x = torch.from_numpy(np.stack([audio[s : s + n] for s in starts]))[:, None]
    feats = []
    hook = seg.classifier.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    with torch.no_grad():
        seg(x)
    hook.remove()
    f = feats[0].numpy().astype(np.float64)  # [W,F,H]
    w, frames, h = f.shape
    y = np.concatenate([frame_targets(turns, s / 16000, frames, 10.0, speakers) for s in starts])
    f = f.reshape(-1, h)
    # one global scale (not per-feature standardisation: that makes the head ill-conditioned and
    # float32 noise between PyTorch and ONNX would be amplified beyond the parity tolerance)
    mu, sd = f.mean(0), float(f.std())
    z = (f - mu) / sd
    onehot = np.eye(7)[y] * 2 - 1
    a = np.linalg.solve(z.T @ z + len(z) * RIDGE * np.eye(h), z.T @ onehot)  # [H,7]
    weight = (a / sd).T * gain
    bias = -(mu / sd) @ a * gain
    with torch.no_grad():
        seg.classifier.weight.copy_(torch.from_numpy(weight).float())
        seg.classifier.bias.copy_(torch.from_numpy(bias).float())


def fit_embedding_head(emb, seed: int) -> None:
    """seg_1 := LDA over 8 voices of pooled statistics (+ small random dims for the rest).

    The statistics are pooled exactly as the pipeline pools them: 10 s windows of a synthetic
    8-voice meeting, one oracle mask per speaker (frames where it speaks alone).
    """
    import numpy as np

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.meetings import TRAIN_SENTENCES, VOICES, compose

    torch = _torch()
    n_voices = len(VOICES)
    audio, turns = compose(
        n_voices, 150.0, np.random.default_rng(seed + 1), list(range(n_voices)), TRAIN_SENTENCES, overlap=True
    )
    speakers = [f"spk{v}" for v in range(n_voices)]
    stats, labels = [], []
    frames = 589
    with torch.no_grad():
        for start in range(0, len(audio) - 160000 + 1, 32000):
            t = start / 16000 + (np.arange(frames) + 0.5) * 10.0 / frames
            act = np.zeros((frames, n_voices), np.float32)
            for s, e, spk in turns:
                act[(t >= s) & (t < e), speakers.index(spk)] = 1
            alone = act * (act.sum(1, keepdims=True) == 1)
            keep = [v for v in range(n_voices) if alone[:, v].sum() > 60]
            if not keep:
                continue
            fb = emb.compute_fbank(torch.from_numpy(audio[start : start + 160000])[None, None])
            feats = emb.resnet.forward_frames(fb)
            w = torch.from_numpy(alone[:, keep].T.copy())[None]  # (1, S, frames)
            pooled = emb.resnet.pool(feats, weights=w).numpy()[0]  # (S, 2C)
            stats += list(pooled)
            labels += keep
    s = np.asarray(stats, np.float64)
    labels = np.asarray(labels)
    mu = s.mean(0)
    s0 = s - mu
    # whitening by PCA of the total covariance
    u, sv, vt = np.linalg.svd(s0, full_matrices=False)
    keep = sv > sv[0] * 1e-6
    white = vt[keep].T / (sv[keep] / np.sqrt(len(s0)))  # [2C,K]
    zw = s0 @ white
    means = np.stack([zw[labels == c].mean(0) for c in np.unique(labels)])
    within = sum(np.cov((zw[labels == c]).T, bias=True) for c in np.unique(labels)) / len(means)
    between = np.cov(means.T, bias=True)
    evals, evecs = np.linalg.eig(np.linalg.solve(within + 1e-3 * np.eye(len(within)), between))
    order = np.argsort(-evals.real)
    lda = evecs.real[:, order]
    dim = emb.resnet.embed_dim
    rng = np.random.default_rng(seed)
    n_lda = min(len(means) - 1, dim)
    proj = np.zeros((white.shape[1], dim))
    proj[:, :n_lda] = lda[:, :n_lda] / np.linalg.norm(lda[:, :n_lda], axis=0)
    rest = rng.standard_normal((white.shape[1], dim - n_lda)) * 0.02
    proj[:, n_lda:] = rest
    weight = (white @ proj).T  # [D,2C]
    bias = -weight @ mu
    with torch.no_grad():
        emb.resnet.seg_1.weight.copy_(torch.from_numpy(weight).float())
        emb.resnet.seg_1.bias.copy_(torch.from_numpy(bias).float())
    return s @ weight.T + bias, labels  # the embeddings of the calibration masks, their voices


def fit_plda(x, labels, lda_dim: int = 8, floor: float = 1e-3, within_floor: float = 0.3) -> dict:
    """LDA + two-covariance PLDA in pyannote's npz layout, fitted on embeddings ``x`` [N,D] of ``labels``.

    Mirrors ``pyannote.audio.utils.vbx.vbx_setup``: x -> sqrt(D) l2norm(x - mean1) -> lda -> - mean2
    -> sqrt(L) l2norm; there, tr whitens the within-class covariance W and diagonalises the
    between-class one B (tr W tr' = I, tr B tr' = diag(psi)), which is what vbx_setup inverts.
    """
    import numpy as np
    from scipy.linalg import eigh

    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)

    def l2(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def scatter(z):
        means = np.stack([z[labels == c].mean(0) for c in classes])
        within = sum(np.cov(z[labels == c].T, bias=True) * (labels == c).sum() for c in classes) / len(z)
        between = np.cov(means.T, bias=True)
        return within, between

    mean1 = x.mean(0)
    z = np.sqrt(x.shape[1]) * l2(x - mean1)
    w, b = scatter(z)
    d = z.shape[1]
    lda_dim = min(lda_dim, d)
    _, vecs = eigh(b + floor * np.eye(d), w + floor * np.eye(d))
    lda = vecs[:, ::-1][:, :lda_dim]  # [D,L], most discriminative first
    y = z @ lda
    mean2 = y.mean(0)
    y = np.sqrt(lda_dim) * l2(y - mean2)
    w, b = scatter(y)
    # within_floor: few calibration samples under-estimate the within-class spread (VBx then splits all)
    psi, vecs = eigh(b + floor * np.eye(lda_dim), w + within_floor * np.eye(lda_dim))
    return dict(mean1=mean1, mean2=mean2, lda=lda, mu=y.mean(0), tr=vecs.T, psi=np.maximum(psi, floor))


def calibrate_batchnorm(emb, audio) -> None:
    """Set BatchNorm running statistics from real fbank (random nets otherwise explode or collapse)."""
    torch = _torch()
    bns = [m for m in emb.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    x = torch.from_numpy(audio)
    win = 48000
    chunks = torch.stack([x[i : i + win] for i in range(0, len(x) - win + 1, 32000)])[:, None]
    emb.train()
    with torch.no_grad():
        fb = emb.compute_fbank(chunks)
        emb.resnet(fb)
    emb.eval()
    for m in bns:
        m.momentum = 0.1


# -- variants --------------------------------------------------------------------------------------


def build_random(out: Path, variant: str, seed: int) -> None:
    torch = _torch()
    torch.manual_seed(seed)
    seg = make_segmentation(SEG_SMALL if variant == "small" else SEG_FULL)
    emb = make_embedding(EMB_SMALL if variant == "small" else None)
    audio, turns = _calibration_meeting(seed)
    calibrate_batchnorm(emb, audio)
    fit_segmentation_head(seg, audio, turns, gain=SEG_GAIN)
    cal_embeddings, cal_labels = fit_embedding_head(emb, seed)
    save_checkpoint(seg, out / "segmentation" / "pytorch_model.bin")
    save_checkpoint(emb, out / "embedding" / "pytorch_model.bin")
    write_plda(out / "plda", **fit_plda(cal_embeddings, cal_labels))
    tuned = json.loads(json.dumps(TUNED_PARAMS))
    tuned["clustering"]["threshold"] = DEV_AHC_THRESHOLD
    write_config(out, tuned=tuned)
    (out / "DEV_MODEL.json").write_text(
        json.dumps(
            {
                "variant": variant,
                "seed": seed,
                "weights": "random trunks (torch.manual_seed); BatchNorm stats from speech; classifier and "
                "embedding layer fitted in closed form on synthetic espeak speech",
                "plda": "LDA + two-covariance PLDA fitted on the calibration embeddings (8 voices)",
            },
            indent=2,
        )
    )


SEG_GAIN = 0.01  # argmax is all the pipeline uses; small logits keep float32 noise far below 1e-5
RIDGE = 1e-2
DEV_AHC_THRESHOLD = 0.6
PLDA_PSI = (300.0, 1.0)  # between-class variances of the synthetic PLDA (large: VBx keeps >1 speaker)


def build_fixture(out: Path, fixture_dir: Path) -> None:
    import numpy as np

    torch = _torch()
    meta = json.loads((fixture_dir / "fixture.json").read_text())
    data = np.load(fixture_dir / "fixture.npz")
    seg = make_segmentation(meta["segmentation"])
    emb = make_embedding(meta["embedding"])
    for prefix, model in (("seg.", seg), ("emb.", emb)):
        state = {
            k[len(prefix) :]: torch.from_numpy(data[k].astype(np.float32))
            for k in data.files
            if k.startswith(prefix)
        }
        for k, v in model.state_dict().items():
            if k not in state and v.dtype == torch.long:  # num_batches_tracked
                state[k] = v
        model.load_state_dict(state, strict=True)
    save_checkpoint(seg, out / "segmentation" / "pytorch_model.bin")
    save_checkpoint(emb, out / "embedding" / "pytorch_model.bin")
    write_plda(
        out / "plda",
        **{k: data[f"plda.{k}"].astype(np.float64) for k in ("mean1", "mean2", "lda", "mu", "tr", "psi")},
    )
    write_config(out, params=meta.get("pipeline"), tuned=meta.get("params"))
    (out / "DEV_MODEL.json").write_text(
        json.dumps({"variant": "fixture", **meta.get("training", {})}, indent=2)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.pyannote_dev", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variant", choices=("small", "full", "fixture"), default="small")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fixture-dir", type=Path, default=FIXTURE_DIR)
    p.add_argument("--fixture-digest", default=None, help="(cache key only) digest of the fixture files")
    p.add_argument("--train-fixture", action="store_true", help="train the tiny fixture into --out")
    args = p.parse_args(argv)
    out = args.out.resolve()
    if args.train_fixture:
        from export_scripts.pyannote_train import train_fixture

        train_fixture(out, 0 if args.seed is None else args.seed)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    torch = _torch()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.variant == "fixture":
        build_fixture(out, args.fixture_dir)
    else:
        build_random(out, args.variant, 7 if args.seed is None else args.seed)
    print(f"pyannote_dev: {args.variant} -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
