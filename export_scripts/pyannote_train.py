"""Train the tiny diarization fixture on synthetic espeak-ng speech (export environment, CPU).

    python -m export_scripts.pyannote_dev --train-fixture --out tests/fixtures/diarization [--seed N]

Recipe (docs: ../shared/docs/PLATFORM.md, "Training tiny fixtures on synthetic speech"):

* data: the 8 espeak voices of ``tests/meetings.py`` speaking the *training* sentences only;
  random 10 s chunks with 1-3 speakers, random gaps, gains and overlaps, built on the fly;
* segmentation: pyannote's ``PyanNet`` (SincNet, LSTM 64x2, linear 64x2), powerset ``Powerset(3, 2)``
  outputs, permutation-invariant NLL (minimum over the 6 speaker permutations), Adam 5e-3 with cosine
  decay, batches of 16 x 10 s; SincNet's first filter layer and its input norm frozen (cheaper steps);
  an auxiliary per-frame speaker-id head (training only, dropped afterwards);
* embedding: ``WeSpeakerResNetSmall`` (ResNet [1,1,1,1], 8 channels, 128-d) with an AAM-softmax
  head (margin 0.4, scale 30) over the 8 voices, on random single-voice crops;
* PLDA: LDA + two-covariance PLDA (``pyannote_dev.fit_plda``) on embeddings pooled exactly as the
  pipeline pools them (10 s windows of a training meeting, one mask per speaker);
* writes ``fixture.npz`` (``seg.*``, ``emb.*`` float16, ``plda.*`` float32) + ``fixture.json``.

Fixed seeds, fixed step counts, ``torch.set_num_threads(1)``: re-runs give close (not
bit-identical: CPU kernels) weights.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from export_scripts import pyannote_dev as dev

SR = 16000
CHUNK = 10 * SR
SEG_STEPS = 600  # fixed step counts (not a time budget): re-runs do the same work on any CPU load
EMB_STEPS = 200
# The pipeline only uses the argmax of the powerset scores: scaling the classifier by a positive gain
# changes none of its decisions, and small logits keep float32 noise between PyTorch and ONNX below
# the exporter's 1e-5 parity gate (as pyannote_dev.SEG_GAIN does for the random dev models).
SEG_OUTPUT_GAIN = 0.01
THREADS = 1  # one thread: no OpenMP spin contention on a shared 2-core machine; steadier results
# pipeline: community-1's (VBx on the fitted PLDA); threshold/Fa/Fb picked by bench/diarization_params_sweep.py
# on the scripted 2/3/4-speaker meetings of seeds 0-5 (seed 0 is what the tests upload): right speaker
# count on 18/18 as mp3 (mean DER 5.7 %) and 17/18 as WAV (5.4 %); the earlier Fa 0.3 / Fb 0.3 gave
# 11/18 (WAV). Changing them needs no retraining: the training does not use them.
FIXTURE_PIPELINE = dict(dev.PIPELINE_PARAMS)
FIXTURE_PARAMS = {
    "clustering": {"threshold": 0.6, "Fa": 0.5, "Fb": 0.8},
    "segmentation": {"min_duration_off": 0.0},
}


def _log(msg: str) -> None:
    print(f"[train-fixture {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_utterances() -> list[list[np.ndarray]]:
    if str(dev.REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(dev.REPO_ROOT))
    from tests.meetings import VOICES, voice_utterances

    return [voice_utterances(v, "train") for v in range(len(VOICES))]


def random_chunk(rng: np.random.Generator, utts: list[list[np.ndarray]]):
    """(10 s audio, per-sample activity [n_local, samples] bool, global voice ids of local speakers)."""
    n_local = int(rng.choice([1, 2, 2, 3, 3]))
    voices = [int(v) for v in rng.choice(len(utts), n_local, replace=False)]
    audio = np.zeros(CHUNK, np.float32)
    act = np.zeros((n_local, CHUNK), bool)
    pos = int(rng.uniform(-3.0, 1.0) * SR)  # chunks may start mid-utterance
    prev = -1
    prev_span = None
    while pos < CHUNK:
        choices = [i for i in range(n_local) if i != prev] or [0]
        k = int(rng.choice(choices))
        x = utts[voices[k]][int(rng.integers(len(utts[voices[k]])))]
        x = x * np.float32(10 ** (rng.uniform(-6, 3) / 20) * 0.5 / max(1e-6, float(np.abs(x).max())))
        start = pos
        if prev_span is not None and n_local > 1 and rng.random() < 0.3:
            ov = int(rng.uniform(0.3, 1.2) * SR)
            start = max(prev_span[0] + int(0.3 * SR), prev_span[1] - ov)
        end = start + len(x)
        a, b = max(start, 0), min(end, CHUNK)
        if b > a:
            audio[a:b] += x[a - start : b - start]
            act[k, a:b] = True
        prev, prev_span = k, (start, end)
        pos = end + int(rng.uniform(0.2, 1.5) * SR)
    audio += rng.standard_normal(CHUNK).astype(np.float32) * np.float32(10 ** (rng.uniform(-70, -45) / 20))
    return np.clip(audio, -1, 1), act, voices


def frame_activity(act: np.ndarray, num_frames: int) -> np.ndarray:
    """[n_local, samples] -> [num_frames, 3] (frame centres, as pyannote's frames)."""
    idx = np.minimum(((np.arange(num_frames) + 0.5) * CHUNK / num_frames).astype(int), CHUNK - 1)
    out = np.zeros((num_frames, 3), np.float32)
    out[:, : act.shape[0]] = act[:, idx].T
    return out


def powerset_targets(multi, torch):
    """[B,F,3] multilabel -> [B,F] powerset class (0 silence, 1..3 single, 4..6 pairs; 3-way -> pair)."""
    pairs = {(0, 1): 4, (0, 2): 5, (1, 2): 6}
    code = torch.zeros(multi.shape[:2], dtype=torch.long)
    one = multi.sum(-1) == 1
    code[one] = multi[one].argmax(-1) + 1
    for (i, j), c in pairs.items():
        code[(multi[..., i] > 0) & (multi[..., j] > 0)] = c
    return code


def train_segmentation(utts, seed: int, steps: int):
    torch = dev._torch()
    torch.manual_seed(seed)
    seg = dev.make_segmentation(dev.SEG_SMALL)
    seg.train()
    # frozen: SincNet's input norm and first (sinc filterbank) layer
    for m in (seg.sincnet.wav_norm1d, seg.sincnet.conv1d[0]):
        for p in m.parameters():
            p.requires_grad_(False)
    num_frames = seg.num_frames(CHUNK)
    n_voices = len(utts)
    hidden = seg.classifier.in_features
    aux = torch.nn.Linear(hidden, n_voices)
    feats: list = []
    hook = seg.classifier.register_forward_hook(lambda m, i, o: feats.append(i[0]))
    params = [p for p in seg.parameters() if p.requires_grad] + list(aux.parameters())
    opt = torch.optim.Adam(params, lr=5e-3)
    rng = np.random.default_rng(seed)
    perms = list(itertools.permutations(range(3)))
    t0 = time.time()
    step, batch = 0, 16
    lr0 = 5e-3
    while step < steps:
        elapsed = time.time() - t0
        frac = step / steps  # cosine decay

        for g in opt.param_groups:
            g["lr"] = lr0 * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * frac)))
        xs, ys, vs = [], [], []
        for _ in range(batch):
            a, act, voices = random_chunk(rng, utts)
            xs.append(a)
            ys.append(frame_activity(act, num_frames))
            v = np.zeros((num_frames, n_voices), np.float32)
            for k, g in enumerate(voices):
                v[:, g] = ys[-1][:, k]
            vs.append(v)
        x = torch.from_numpy(np.stack(xs))[:, None]
        y = torch.from_numpy(np.stack(ys))
        yv = torch.from_numpy(np.stack(vs))
        feats.clear()
        logp = seg(x)  # [B,F,7] log-probabilities
        nll = torch.stack(
            [
                torch.nn.functional.nll_loss(
                    logp.reshape(-1, 7),
                    powerset_targets(y[..., list(p)], torch).reshape(-1),
                    reduction="none",
                )
                .reshape(len(xs), -1)
                .mean(1)
                for p in perms
            ],
            1,
        )
        loss_seg = nll.min(1).values.mean()
        loss_aux = torch.nn.functional.binary_cross_entropy_with_logits(aux(feats[0]), yv)
        loss = loss_seg + 0.5 * loss_aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            _log(f"seg step {step} {elapsed:.0f}s nll {loss_seg.item():.3f} aux {loss_aux.item():.3f}")
    hook.remove()
    seg.eval()
    _log(f"segmentation: {step} steps in {time.time() - t0:.0f}s")
    return seg, step, time.time() - t0


def train_embedding(utts, seed: int, steps: int):
    torch = dev._torch()
    torch.manual_seed(seed + 1)
    emb = dev.make_embedding(dev.EMB_SMALL)
    emb.train()
    n_voices = len(utts)
    dim = dev.EMB_SMALL["embed_dim"]
    w = torch.nn.Parameter(torch.randn(n_voices, dim) * 0.1)
    opt = torch.optim.Adam(list(emb.parameters()) + [w], lr=3e-3)
    margin, scale = 0.4, 30.0
    rng = np.random.default_rng(seed + 1)
    # one long stream per voice, crops of 2-4 s
    streams = [
        np.concatenate([np.concatenate([u, np.zeros(int(0.3 * SR), np.float32)]) for u in us]) for us in utts
    ]
    t0 = time.time()
    step = 0
    while step < steps:
        frac = step / steps
        for g in opt.param_groups:
            g["lr"] = 3e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        n = int(rng.uniform(2.0, 4.0) * SR)
        xs, ys = [], []
        for _ in range(32):
            v = int(rng.integers(n_voices))
            s = int(rng.integers(len(streams[v]) - n))
            a = streams[v][s : s + n]
            a = a * np.float32(10 ** (rng.uniform(-6, 3) / 20) * 0.5 / max(1e-6, float(np.abs(a).max())))
            a = a + rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (rng.uniform(-70, -45) / 20))
            xs.append(a)
            ys.append(v)
        x = torch.from_numpy(np.stack(xs))[:, None]
        y = torch.tensor(ys)
        e = emb(x)  # [B,D]
        cos = torch.nn.functional.normalize(e, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.nn.functional.one_hot(y, n_voices).bool()
        logits = scale * torch.where(target, torch.cos(theta + margin), cos)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 20 == 0:
            _log(
                f"emb step {step} loss {loss.item():.3f} acc {(cos.argmax(1) == y).float().mean().item():.2f}"
            )
    emb.eval()
    _log(f"embedding: {step} steps in {time.time() - t0:.0f}s")
    return emb, step, time.time() - t0


def pipeline_embeddings(emb, seed: int):
    """Embeddings of a training meeting pooled as the pipeline pools them (one mask per speaker)."""
    torch = dev._torch()
    if str(dev.REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(dev.REPO_ROOT))
    from tests.meetings import TRAIN_SENTENCES, VOICES, compose

    n = len(VOICES)
    audio, turns = compose(
        n, 240.0, np.random.default_rng(seed + 2), list(range(n)), TRAIN_SENTENCES, overlap=True
    )
    speakers = [f"spk{v}" for v in range(n)]
    frames = 589
    xs, labels = [], []
    with torch.no_grad():
        for start in range(0, len(audio) - CHUNK + 1, 16000):
            t = start / SR + (np.arange(frames) + 0.5) * 10.0 / frames
            act = np.zeros((frames, n), np.float32)
            for s, e, spk in turns:
                act[(t >= s) & (t < e), speakers.index(spk)] = 1
            alone = act * (act.sum(1, keepdims=True) == 1)
            keep = [v for v in range(n) if alone[:, v].sum() > 30]
            if not keep:
                continue
            wav = torch.from_numpy(audio[start : start + CHUNK])[None, None].repeat(len(keep), 1, 1)
            w = torch.from_numpy(alone[:, keep].T.copy())
            xs += list(emb(wav, weights=w).numpy())
            labels += keep
    return np.asarray(xs), np.asarray(labels)


def train_fixture(out: Path, seed: int = 0) -> None:
    torch = dev._torch()
    torch.set_num_threads(THREADS)
    torch.set_flush_denormal(True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    utts = load_utterances()
    _log(f"{sum(len(u) for u in utts)} utterances of {len(utts)} voices in {time.time() - t0:.0f}s")
    seg, seg_steps, seg_s = train_segmentation(utts, seed, SEG_STEPS)
    emb, emb_steps, emb_s = train_embedding(utts, seed, EMB_STEPS)
    x, labels = pipeline_embeddings(emb, seed)
    plda = dev.fit_plda(x, labels)
    arrays = {}
    for prefix, model in (("seg.", seg), ("emb.", emb)):
        for k, v in model.state_dict().items():
            if v.dtype == torch.long:  # num_batches_tracked: rebuilt by build_fixture
                continue
            arrays[prefix + k] = v.detach().numpy().astype(np.float16)
    for k in ("seg.classifier.weight", "seg.classifier.bias"):  # tiny: kept float32 after the gain
        arrays[k] = arrays[k].astype(np.float32) * np.float32(SEG_OUTPUT_GAIN)
    for k, v in plda.items():
        arrays["plda." + k] = np.asarray(v, np.float32)
    np.savez_compressed(out / "fixture.npz", **arrays)
    meta = {
        "segmentation": dev.SEG_SMALL,
        "embedding": dev.EMB_SMALL,
        "pipeline": FIXTURE_PIPELINE,
        "params": FIXTURE_PARAMS,
        "training": {
            "recipe": "python -m export_scripts.pyannote_dev --train-fixture --out tests/fixtures/diarization "
            f"--seed {seed}",
            "seed": seed,
            "data": "8 espeak-ng voices (tests/meetings.py VOICES), training sentences only",
            "segmentation": {"steps": seg_steps, "seconds": round(seg_s, 1), "batch": 16, "lr": 5e-3},
            "embedding": {"steps": emb_steps, "seconds": round(emb_s, 1), "aam_margin": 0.4, "batch": 32},
            "plda": {"embeddings": int(len(x)), "lda_dim": int(plda["lda"].shape[1])},
            "seg_output_gain": SEG_OUTPUT_GAIN,
            "total_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
        },
    }
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    _log(f"wrote {out} in {time.time() - t0:.0f}s")
