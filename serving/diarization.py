"""pyannote segmentation and WeSpeaker embeddings on onnxruntime, batched across requests.

Shared by the Triton models ``segmentation`` and ``speaker_embedding`` (and importable by tests and
benchmarks without Triton). Artifacts, written next to ``model.py`` by ``export_scripts``:

* ``segmentation.onnx``: ``waveform [B, 1, 160000]`` -> ``scores [B, 589, 7]`` (powerset log-probs).
* ``embedding_trunk.onnx``: ``fbank [B, F, 80]`` -> ``features [B, C, T']`` (ResNet trunk, the
  channel and frequency axes flattened into C).
* ``embedding_head.npz``: the embedding layer after statistics pooling (applied here in numpy).
* ``fbank.json``: the kaldi fbank options of the WeSpeaker front end.

pyannote runs the whole ResNet once per (window, local speaker), silent speakers included. Here the
trunk runs once per window; each active speaker's mask then pools the trunk's frame features
(weighted mean and unbiased std, masks resized 'nearest' to T' as pyannote's ``StatsPool`` does) and
the head maps the statistics to the embedding. Speakers whose mask is all zero get NaN rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np

from serving.onnx_session import create_session
from speechlib.interfaces import SAMPLE_RATE, Segmentation

SEGMENTATION_ONNX = "segmentation.onnx"
TRUNK_ONNX = "embedding_trunk.onnx"
HEAD_NPZ = "embedding_head.npz"
FBANK_JSON = "fbank.json"
POOL_EPS = 1e-8  # pyannote's StatsPool epsilon


# -- front end -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeSpeakerFbank:
    """WeSpeaker's front end as pyannote runs it: ``torchaudio.compliance.kaldi.fbank`` on
    16-bit-scaled samples, then each window's features minus their mean over time
    (``BaseWeSpeakerResNet.compute_fbank``). Computed with kaldi-native-fbank; fields are the keys of
    ``fbank.json`` (the export writes every kaldi option, defaults included)."""

    sample_frequency: float = float(SAMPLE_RATE)
    waveform_scale: float = 32768.0
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "hamming"
    dither: float = 0.0
    round_to_power_of_two: bool = True
    snip_edges: bool = True
    use_energy: bool = False
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    raw_energy: bool = True
    energy_floor: float = 1.0
    low_freq: float = 20.0
    high_freq: float = 0.0
    use_log_fbank: bool = True
    use_power: bool = True
    htk_compat: bool = False
    blackman_coeff: float = 0.42
    mean_centering: str = "global"

    @classmethod
    def from_json(cls, path: str | Path) -> WeSpeakerFbank:
        conf = json.loads(Path(path).read_text())
        known = {k: conf[k] for k in cls.__dataclass_fields__ if k in conf}
        fbank = cls(**known)
        if fbank.mean_centering not in ("global", "none"):
            raise ValueError(
                f"{path}: mean_centering {fbank.mean_centering!r} is not supported (only 'global')"
            )
        if float(conf.get("vtln_warp", 1.0)) != 1.0 or fbank.dither != 0.0:
            raise ValueError(f"{path}: vtln_warp != 1 and dither != 0 are not supported")
        if int(fbank.sample_frequency) != SAMPLE_RATE:
            raise ValueError(f"{path}: sample_frequency {fbank.sample_frequency}, expected {SAMPLE_RATE}")
        return fbank

    def options(self) -> knf.FbankOptions:
        opts = knf.FbankOptions()
        fo = opts.frame_opts
        fo.samp_freq = self.sample_frequency
        fo.frame_length_ms = self.frame_length_ms
        fo.frame_shift_ms = self.frame_shift_ms
        fo.window_type = self.window_type
        fo.dither = self.dither
        fo.snip_edges = self.snip_edges
        fo.round_to_power_of_two = self.round_to_power_of_two
        fo.remove_dc_offset = self.remove_dc_offset
        fo.preemph_coeff = self.preemphasis_coefficient
        fo.blackman_coeff = self.blackman_coeff
        opts.mel_opts.num_bins = self.num_mel_bins
        opts.mel_opts.low_freq = self.low_freq
        opts.mel_opts.high_freq = self.high_freq
        opts.mel_opts.htk_mode = self.htk_compat
        opts.use_energy = self.use_energy
        opts.raw_energy = self.raw_energy
        opts.energy_floor = self.energy_floor
        opts.htk_compat = self.htk_compat
        opts.use_log_fbank = self.use_log_fbank
        opts.use_power = self.use_power
        return opts

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """``[frames, num_mel_bins]`` float32 features of one window of 16 kHz samples in [-1, 1]."""
        fb = knf.OnlineFbank(self.options())
        fb.accept_waveform(
            SAMPLE_RATE, np.asarray(window, dtype=np.float32) * np.float32(self.waveform_scale)
        )
        fb.input_finished()
        n = fb.num_frames_ready
        feats = np.stack([fb.get_frame(i) for i in range(n)]).astype(np.float32)
        if self.mean_centering == "global":
            feats -= feats.mean(axis=0, keepdims=True)
        return feats


# -- pooling head ----------------------------------------------------------------------------------


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` frames for ``torch.nn.functional.interpolate(mode='nearest')``:
    ``floor(i * (src / dst))`` with the scale in float32, as torch computes it."""
    scale = np.float32(src) / np.float32(dst)
    idx = np.floor(np.arange(dst, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, src - 1)


def weighted_stats(features: np.ndarray, weights: np.ndarray, eps: float = POOL_EPS) -> np.ndarray:
    """pyannote's ``StatsPool`` for one window: ``features [C, T]``, ``weights [S, T]`` -> ``[S, 2C]``
    (weighted mean, then unbiased weighted std), computed in float64."""
    f = features.astype(np.float64)
    w = weights.astype(np.float64)
    v1 = w.sum(axis=1, keepdims=True) + eps  # [S, 1]
    mean = (w @ f.T) / v1  # [S, C]
    v2 = np.square(w).sum(axis=1, keepdims=True)
    # sum_t w_t (f_t - mean)^2, expanded so that no [S, C, T] array is built
    dx2 = w @ np.square(f).T - 2.0 * mean * (w @ f.T) + np.square(mean) * (v1 - eps)
    var = np.maximum(dx2, 0.0) / (v1 - v2 / v1 + eps)
    return np.concatenate([mean, np.sqrt(var)], axis=1)


class EmbeddingHead:
    """Statistics pooling + the embedding layer (``resnet.seg_1``), from ``embedding_head.npz``:
    ``weight [D, 2C]``, ``bias [D]``, optional ``eps`` and ``mask_index`` (the nearest-neighbour
    index from mask frames to trunk frames). See docs/diarization-export.md."""

    def __init__(self, path: str | Path):
        with np.load(path) as npz:
            self.weight = npz["weight"].astype(np.float64)
            self.bias = npz["bias"].astype(np.float64)
            self.eps = float(npz["eps"]) if "eps" in npz.files else POOL_EPS
            self.mask_index = npz["mask_index"].astype(np.int64) if "mask_index" in npz.files else None

    @property
    def dimension(self) -> int:
        return self.weight.shape[0]

    def index(self, mask_frames: int, feature_frames: int) -> np.ndarray:
        idx = self.mask_index
        if idx is not None and len(idx) == feature_frames and int(idx.max()) < mask_frames:
            return idx
        return nearest_index(mask_frames, feature_frames)

    def __call__(self, features: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Embeddings ``[S, D]`` (float64) of trunk features ``[C, T']`` pooled by masks ``[S, M]``."""
        w = masks[:, self.index(masks.shape[1], features.shape[1])]
        return weighted_stats(features, w, self.eps) @ self.weight.T + self.bias


# -- networks --------------------------------------------------------------------------------------


def _as_windows(windows: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(windows, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or x.shape[1:] != (1, Segmentation.WINDOW_SAMPLES):
        raise ValueError(f"windows must be [B, 1, {Segmentation.WINDOW_SAMPLES}], got {list(windows.shape)}")
    return x


def _warm_up_windows(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.1, (n, 1, Segmentation.WINDOW_SAMPLES)).astype(np.float32)


class SegmentationNetwork:
    """segmentation-3.0 (or any pyannote powerset segmentation exported the same way)."""

    def __init__(
        self,
        model_dir: str | Path,
        intra_op_threads: int = 1,
        device: str = "cpu",
        device_id: int = 0,
        on_batch: Callable[[int], None] | None = None,
        max_batch: int = 32,
    ):
        self.session = create_session(
            Path(model_dir) / SEGMENTATION_ONNX, intra_op_threads, device, device_id
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.on_batch = on_batch
        self.max_batch = max_batch

    def warm_up(self) -> None:
        """One call at the largest batch this network runs (``max_batch``): onnxruntime's memory arena
        grows to its high-water mark at load time instead of step by step while serving (memory then
        stays flat however long the audio), and the first slow call is not a user's."""
        on_batch, self.on_batch = self.on_batch, None
        try:
            self.scores(_warm_up_windows(self.max_batch))
        finally:
            self.on_batch = on_batch

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """Powerset log-probabilities ``[B, 589, 7]`` of ``B`` 10 s windows ``[B, 1, 160000]``."""
        x = _as_windows(windows)
        out = []
        for start in range(0, len(x), self.max_batch):
            batch = x[start : start + self.max_batch]
            out.append(self.session.run([self.output_name], {self.input_name: batch})[0])
            if self.on_batch is not None:
                self.on_batch(len(batch))
        return np.concatenate(out).astype(np.float32, copy=False)


class EmbeddingNetwork:
    """WeSpeaker ResNet: fbank (here) -> trunk (ONNX, once per window) -> per-speaker pooling + head."""

    def __init__(
        self,
        model_dir: str | Path,
        intra_op_threads: int = 1,
        device: str = "cpu",
        device_id: int = 0,
        on_batch: Callable[[int], None] | None = None,
        max_batch: int = 32,
    ):
        model_dir = Path(model_dir)
        self.fbank = WeSpeakerFbank.from_json(model_dir / FBANK_JSON)
        self.head = EmbeddingHead(model_dir / HEAD_NPZ)
        self.session = create_session(model_dir / TRUNK_ONNX, intra_op_threads, device, device_id)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.on_batch = on_batch
        self.max_batch = max_batch

    @property
    def dimension(self) -> int:
        return self.head.dimension

    def warm_up(self) -> None:
        """One trunk call at ``max_batch`` windows (see :meth:`SegmentationNetwork.warm_up`)."""
        on_batch, self.on_batch = self.on_batch, None
        try:
            windows = _warm_up_windows(self.max_batch)
            self.embed(windows, [np.ones((3, Segmentation.NUM_FRAMES), np.float32)] * len(windows))
        finally:
            self.on_batch = on_batch

    def frame_features(self, windows: np.ndarray) -> np.ndarray:
        """Trunk output ``[B, C, T']`` for windows ``[B, 1, 160000]``."""
        x = _as_windows(windows)
        out = []
        for start in range(0, len(x), self.max_batch):
            batch = x[start : start + self.max_batch, 0]
            fbank = np.stack([self.fbank(w) for w in batch])
            out.append(self.session.run([self.output_name], {self.input_name: fbank})[0])
            if self.on_batch is not None:
                self.on_batch(len(batch))
        return np.concatenate(out)

    def pool(self, features: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Embeddings ``[S, D]`` float32 of one window's trunk output ``[C, T']`` and masks ``[S, frames]``;
        NaN rows for speakers whose mask is all zero."""
        masks = np.asarray(masks, dtype=np.float32)
        out = np.full((len(masks), self.dimension), np.nan, dtype=np.float32)
        active = masks.sum(axis=1) > 0
        if active.any():
            out[active] = self.head(features, masks[active]).astype(np.float32)
        return out

    def embed(self, windows: np.ndarray, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One ``[S_i, D]`` array per window: ``windows [B, 1, 160000]``, ``masks[i] [S_i, frames]``.

        Windows in which no speaker is active skip the trunk altogether.
        """
        x = _as_windows(windows)
        if len(masks) != len(x):
            raise ValueError(f"{len(x)} windows but {len(masks)} mask arrays")
        results: list[np.ndarray] = [
            np.full((len(m), self.dimension), np.nan, dtype=np.float32) for m in masks
        ]
        busy = [i for i, m in enumerate(masks) if len(m) and (np.asarray(m) > 0).any()]
        if busy:
            feats = self.frame_features(x[busy])
            for j, i in enumerate(busy):
                results[i] = self.pool(feats[j], masks[i])
        return results
