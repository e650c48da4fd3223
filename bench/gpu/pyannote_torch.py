"""pyannote's diarization networks in plain torch for the GPU check. Written here from the
architecture (no pyannote import: the GPU machine has no pyannote):

* :class:`Segmenter` -- segmentation-3.0's PyanNet: SincNet (80 parametrised sinc band-pass filters of
  251 taps, stride 10, the absolute value of that first layer's output, then two 5-tap convolutions;
  each layer max-pooled by 3, instance-normalised, leaky ReLU; the waveform instance-normalised first),
  a bidirectional LSTM, leaky-ReLU linear layers and the powerset classifier with log-softmax:
  ``[B, 1, 160000] -> [B, 589, 7]``.
* :class:`SpeakerEmbedder` -- WeSpeaker's ResNet (basic blocks, configurable: ``[3, 4, 6, 3]`` x 32
  channels x 256-d is ResNet34, ``[1, 1, 1, 1]`` x 8 x 128-d the small dev model) run the way our served
  ``speaker_embedding`` runs it: kaldi fbank on the device (mean-centred per window), the trunk **once
  per window**, then each local speaker's mask (resized 'nearest' to the trunk's frames) pools the
  frame features (weighted mean + unbiased weighted std, pyannote's ``StatsPool``) and the embedding
  layer ``seg_1`` maps them to the embedding. All-zero masks give NaN rows.

Parameter names follow pyannote's state dicts (``sincnet.*``, ``lstm.*``, ``linear.*``,
``classifier.*``; ``resnet.*``) so the dev models' checkpoints load as they are
(``diarization_gpu_check.py --cpu --fidelity`` compares them with their ONNX exports). On the GPU
machine the weights are random, drawn on the device from a seed (PyTorch's default initialisers;
the sinc filters start mel-spaced, as SincNet's do).

Also the Triton Python-backend models of the check, :class:`TritonSegmentation` and
:class:`TritonSpeakerEmbedding`: the tensors of ``speechlib.interfaces.Segmentation`` /
``SpeakerEmbedding``; the whole dynamic batch runs as one call on the device; the batch size of each
call goes to our batch-size metric.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.gpu.common import BatchedTritonModel, torch_dtype
from bench.gpu.sensevoice_torch import hamming_window, kaldi_log_mel, mel_matrix
from export_scripts.pyannote_dev import EMB_SMALL, SEG_FULL, SEG_SMALL
from speechlib.interfaces import SAMPLE_RATE, Segmentation, SpeakerEmbedding

WINDOW_SAMPLES = Segmentation.WINDOW_SAMPLES
MASK_FRAMES = Segmentation.NUM_FRAMES
POWERSET_CLASSES = Segmentation.NUM_CLASSES
POOL_EPS = 1e-8

SEGMENTATION = {"small": SEG_SMALL, "full": SEG_FULL}
RESNET = {"small": EMB_SMALL, "full": {"num_blocks": [3, 4, 6, 3], "m_channels": 32, "embed_dim": 256}}


# -- segmentation ------------------------------------------------------------------------------------


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincFilterbank(nn.Module):
    """``n_filters / 2`` learnt bands (``low_hz_``, ``band_hz_``, each ``[n/2, 1]``; at least
    ``min_low_hz`` / ``min_band_hz``) -> ``n/2`` even (cosine) and ``n/2`` odd (sine) windowed band-pass
    filters of ``kernel`` taps. Buffers hold the left half of the Hamming window (``window_``) and the
    left half of the time axis in radians per Hz (``n_``), as the checkpoints do."""

    def __init__(self, n_filters=80, kernel=251, sample_rate=SAMPLE_RATE, min_low_hz=50.0, min_band_hz=50.0):
        super().__init__()
        self.sample_rate, self.min_low_hz, self.min_band_hz = float(sample_rate), min_low_hz, min_band_hz
        half = kernel // 2
        edges = _mel_to_hz(
            np.linspace(
                _hz_to_mel(30.0), _hz_to_mel(sample_rate / 2 - (min_low_hz + min_band_hz)), n_filters // 2 + 1
            )
        ).astype(np.float32)
        self.low_hz_ = nn.Parameter(torch.from_numpy(edges[:-1]).view(-1, 1))
        self.band_hz_ = nn.Parameter(torch.from_numpy(np.diff(edges)).view(-1, 1))
        self.register_buffer("window_", torch.from_numpy(np.hamming(kernel)[:half]).float())
        self.register_buffer(
            "n_", (2 * math.pi / sample_rate) * torch.arange(-half, 0, dtype=torch.float32)[None]
        )

    def filters(self) -> torch.Tensor:
        """``[n_filters, 1, kernel]``, each normalised by twice its bandwidth."""
        f_lo = self.min_low_hz + self.low_hz_.abs()
        f_hi = torch.clamp(
            f_lo + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, self.sample_rate / 2
        )
        width = f_hi - f_lo  # [n/2, 1]
        phase_lo, phase_hi = f_lo * self.n_, f_hi * self.n_  # [n/2, half]
        t_half = self.n_ / 2
        even = (torch.sin(phase_hi) - torch.sin(phase_lo)) / t_half * self.window_
        odd = (torch.cos(phase_lo) - torch.cos(phase_hi)) / t_half * self.window_
        even = torch.cat([even, 2 * width, even.flip(1)], 1)
        odd = torch.cat([odd, torch.zeros_like(width), -odd.flip(1)], 1)
        return (torch.cat([even, odd]) / (2 * width).repeat(2, 1))[:, None, :]


class SincConv(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        self.filterbank = SincFilterbank()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filterbank.filters(), stride=self.stride)


class SincNet(nn.Module):
    """``[B, 1, N]`` -> ``[B, 60, frames]``."""

    def __init__(self, stride: int = 10):
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([SincConv(stride), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.wav_norm1d(x)
        for layer, (conv, pool, norm) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d, strict=True)):
            x = conv(x)
            if layer == 0:
                x = x.abs()  # rectify the band-pass responses before pooling
            x = F.leaky_relu(norm(pool(x)))
        return x


class Segmenter(nn.Module):
    """PyanNet with a powerset head: waveforms ``[B, 1, N]`` -> log-probabilities ``[B, frames, 7]``.
    ``sincnet`` / ``lstm`` / ``linear``: the hyper-parameters of pyannote's checkpoints."""

    def __init__(self, sincnet: dict, lstm: dict, linear: dict, classes: int = POWERSET_CLASSES):
        super().__init__()
        if not lstm.get("monolithic", True):
            raise ValueError("only the monolithic LSTM (segmentation-3.0's) is written here")
        self.sincnet = SincNet(sincnet.get("stride", 10))
        directions = 2 if lstm.get("bidirectional", True) else 1
        self.lstm = nn.LSTM(
            60,
            lstm["hidden_size"],
            num_layers=lstm["num_layers"],
            bidirectional=directions == 2,
            batch_first=True,
        )
        widths = [lstm["hidden_size"] * directions] + [linear["hidden_size"]] * linear["num_layers"]
        self.linear = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.classifier = nn.Linear(widths[-1], classes)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.sincnet(waveforms).transpose(1, 2))
        for layer in self.linear:
            x = F.leaky_relu(layer(x))
        return F.log_softmax(self.classifier(x).float(), dim=-1)


# -- speaker embedding -------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """WeSpeaker's ResNet: ``trunk`` (fbank ``[B, F, 80]`` -> frame features ``[B, C, T']``, C = channels x
    frequency bins) and the embedding layer ``seg_1`` (``[.., 2C] -> [.., embed_dim]``)."""

    def __init__(self, num_blocks, m_channels: int, embed_dim: int, feat_dim: int = 80):
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        channels = m_channels
        for i, (blocks, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2), strict=True)):
            width = m_channels * 2**i
            layer = [BasicBlock(channels, width, stride)] + [
                BasicBlock(width, width, 1) for _ in range(blocks - 1)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            channels = width
        self.feature_dim = channels * (feat_dim // 8)
        self.seg_1 = nn.Linear(2 * self.feature_dim, embed_dim)

    def trunk(self, fbank: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(fbank.transpose(1, 2)[:, None])))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.flatten(1, 2)


def nearest_index(src: int, dst: int, device=None) -> torch.Tensor:
    """Source frame of each of ``dst`` frames for 'nearest' resizing (the scale in float32, as torch
    and our served model compute it)."""
    scale = np.float32(src) / np.float32(dst)
    idx = torch.floor(torch.arange(dst, dtype=torch.float32) * float(scale)).long().clamp(max=src - 1)
    return idx.to(device)


def masked_stats(features: torch.Tensor, masks: torch.Tensor, eps: float = POOL_EPS) -> torch.Tensor:
    """Weighted mean and unbiased weighted std of ``features [B, C, T]`` under ``masks [B, S, T]`` ->
    ``[B, S, 2C]`` (float32)."""
    x, w = features.float(), masks.float()
    v1 = w.sum(-1, keepdim=True) + eps  # [B, S, 1]
    mean = torch.einsum("bst,bct->bsc", w, x) / v1
    spread = torch.einsum("bst,bsct->bsc", w, (x[:, None] - mean[..., None]).square())
    v2 = w.square().sum(-1, keepdim=True)
    return torch.cat([mean, torch.sqrt(spread / (v1 - v2 / v1 + eps))], -1)


class SpeakerEmbedder(nn.Module):
    """Front end + ``resnet``: windows ``[B, N]`` in [-1, 1] and masks ``[B, S, 589]`` -> ``[B, S, D]``."""

    def __init__(self, num_blocks, m_channels: int, embed_dim: int):
        super().__init__()
        self.resnet = ResNet(num_blocks, m_channels, embed_dim)
        self.register_buffer("window", hamming_window(), persistent=False)
        self.register_buffer("mel", mel_matrix("cpu"), persistent=False)

    def fbank(self, windows: torch.Tensor) -> torch.Tensor:
        """Kaldi fbank ``[B, F, 80]`` minus each window's mean over time (WeSpeaker's front end)."""
        fb = kaldi_log_mel(windows.float(), self.window, self.mel)
        return fb - fb.mean(1, keepdim=True)

    def pool(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, S, D]`` of trunk output ``[B, C, T']`` under masks ``[B, S, M]``; NaN rows
        where a mask is all zero."""
        w = masks[..., nearest_index(masks.shape[-1], features.shape[-1], masks.device)]
        emb = self.resnet.seg_1(masked_stats(features, w))
        return emb.masked_fill((masks.sum(-1) <= 0)[..., None], float("nan"))

    def forward(self, windows: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.pool(self.resnet.trunk(self.fbank(windows)), masks)


# -- runners (numpy in, numpy out, on one device) ------------------------------------------------------


def _build(module_class, conf: dict, seed: int, device: str) -> nn.Module:
    torch.manual_seed(seed)
    with torch.device(device):
        model = module_class(**conf)
    return model.to(device).eval()


def _autocast(device: str, dtype):
    return torch.autocast(device_type=device, dtype=dtype, enabled=dtype in (torch.float16, torch.bfloat16))


class SegmentationRunner:
    """:class:`Segmenter` of ``variant`` (full: segmentation-3.0; small: the dev model) with random
    weights from ``seed`` on ``device``; ``precision`` fp16/bf16 run under autocast."""

    def __init__(
        self, variant: str, seed: int, device: str, precision: str = "fp32", model: nn.Module | None = None
    ):
        self.device, self.dtype = device, torch_dtype(precision)
        self.model = model if model is not None else _build(Segmenter, SEGMENTATION[variant], seed, device)
        self.params = sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """``[B, 1, 160000]`` -> ``[B, 589, 7]`` float32."""
        x = torch.from_numpy(np.ascontiguousarray(windows, np.float32)).to(self.device)
        with _autocast(self.device, self.dtype):
            scores = self.model(x)
        return scores.float().cpu().numpy()


class EmbeddingRunner:
    """:class:`SpeakerEmbedder` of ``variant`` (full: ResNet34, 256-d; small: the dev model's ResNet)."""

    def __init__(
        self, variant: str, seed: int, device: str, precision: str = "fp32", model: nn.Module | None = None
    ):
        self.device, self.dtype = device, torch_dtype(precision)
        self.model = model if model is not None else _build(SpeakerEmbedder, RESNET[variant], seed, device)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.dimension = self.model.resnet.seg_1.out_features

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray, masks: list[np.ndarray]) -> list[np.ndarray]:
        """Windows ``[B, 1, 160000]``, ``masks[i] [S_i, 589]`` -> one ``[S_i, D]`` float32 per window.
        The trunk runs once per window that has an active speaker (on all of them in one call)."""
        out = [np.full((len(m), self.dimension), np.nan, np.float32) for m in masks]
        busy = [i for i, m in enumerate(masks) if (np.asarray(m) > 0).any()]
        if not busy:
            return out
        s = max(len(masks[i]) for i in busy)
        w = np.zeros((len(busy), s, MASK_FRAMES), np.float32)
        for j, i in enumerate(busy):
            w[j, : len(masks[i])] = masks[i]
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(windows, np.float32)[busy, 0])).to(self.device)
        fbank = self.model.fbank(x)
        with _autocast(self.device, self.dtype):
            features = self.model.resnet.trunk(fbank)
        emb = self.model.pool(features.float(), torch.from_numpy(w).to(self.device)).cpu().numpy()
        for j, i in enumerate(busy):
            out[i] = emb[j, : len(masks[i])]
        return out


# -- Triton Python backend ---------------------------------------------------------------------------


class TritonSegmentation(BatchedTritonModel):
    """``segmentation``: WAVEFORM ``[1, 160000]`` -> SCORES ``[589, 7]``."""

    def build(self, variant, seed, device, precision):
        self.runner = SegmentationRunner(variant, seed, device, precision)
        rng = np.random.default_rng(0)
        for n in (1, 8):  # warm-up: kernels, allocator
            self.runner(rng.normal(0, 0.1, (n, 1, WINDOW_SAMPLES)).astype(np.float32))

    def parse(self, request):
        return self.io.window_input(request, Segmentation.WAVEFORM, WINDOW_SAMPLES)

    def run(self, windows):
        return [{Segmentation.SCORES: scores} for scores in self.runner(np.stack(windows))]


class TritonSpeakerEmbedding(BatchedTritonModel):
    """``speaker_embedding``: WAVEFORM ``[1, 160000]`` + MASKS ``[S, 589]`` -> EMBEDDINGS ``[S, D]``."""

    def build(self, variant, seed, device, precision):
        self.runner = EmbeddingRunner(variant, seed + 1, device, precision)
        rng = np.random.default_rng(0)
        for n in (1, 8):
            windows = rng.normal(0, 0.1, (n, 1, WINDOW_SAMPLES)).astype(np.float32)
            self.runner(windows, [np.ones((3, MASK_FRAMES), np.float32)] * n)

    def parse(self, request):
        window = self.io.window_input(request, SpeakerEmbedding.WAVEFORM, WINDOW_SAMPLES)
        tensor = self.pb.get_input_tensor_by_name(request, SpeakerEmbedding.MASKS)
        masks = None if tensor is None else tensor.as_numpy()
        masks = masks[0] if masks is not None and masks.ndim == 3 and len(masks) == 1 else masks
        if masks is None or masks.ndim != 2 or masks.shape[1] != MASK_FRAMES:
            raise self.io.RequestError(f"{SpeakerEmbedding.MASKS}: want [S, {MASK_FRAMES}] activity weights")
        if (
            not 1 <= len(masks) <= SpeakerEmbedding.MAX_SPEAKERS
            or not np.isfinite(masks).all()
            or (masks < 0).any()
        ):
            raise self.io.RequestError(f"{SpeakerEmbedding.MASKS}: 1-8 rows of finite weights >= 0")
        return window, masks.astype(np.float32, copy=False)

    def run(self, items):
        windows, masks = zip(*items, strict=True)
        return [{SpeakerEmbedding.EMBEDDINGS: e} for e in self.runner(np.stack(windows), list(masks))]
