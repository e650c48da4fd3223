"""SenseVoiceSmall in plain torch for the GPU check: kaldi fbank + LFR on the device, the SANM encoder,
greedy CTC. Written here from the architecture (no FunASR import: the GPU machine has no FunASR).

Parameter names follow FunASR's state dict (``embed``, ``encoder.encoders0/encoders/tp_encoders``,
``encoder.after_norm/tp_norm``, ``ctc.ctc_lo``) so a dev ``model.pt`` loads as is; the CPU dry run
(``asr_gpu_check.py --cpu``) checks that the tiny dev model gives the logits of its ONNX export.
On the GPU machine the weights are random, drawn on the device from the dev seed.

Also the Triton Python-backend model ``asr_gpu`` (:class:`TritonPythonModel`): ragged WAVEFORM
``[1, samples]`` -> ``TOKEN_IDS`` ``[1, N]`` (INT32, greedy CTC, tags included), ``NUM_TOKENS`` ``[1, 1]`` and ``NUM_FRAMES`` ``[1, 1]``
(encoder frames, prompts included: never 0, so an empty response shows a broken setup); the whole batch goes through fbank, the encoder and the argmax on the device in one
call; the batch size each call saw goes to our batch-size metric.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bench.gpu.common import BatchedTritonModel, torch_dtype

SAMPLE_RATE = 16000
FRAME_LENGTH = 400
FRAME_SHIFT = 160
N_FFT = 512
N_MELS = 80
LFR_M, LFR_N = 7, 6
PCM_SCALE = 32768.0
PROMPTS = 4  # language, event, emotion, textnorm queries in front of the speech frames
VOCAB_SIZE = 25055
BLANK = 0
TEXTNORM_WITH_ITN = 14


# -- front end -------------------------------------------------------------------------------------


def _mel(f):
    return 1127.0 * torch.log(1.0 + f / 700.0)


def mel_matrix(device, dtype=torch.float32) -> torch.Tensor:
    """Kaldi's triangular mel filters ``[N_FFT // 2 + 1, N_MELS]`` (20 Hz .. Nyquist, Nyquist bin 0)."""
    bins = N_FFT // 2
    freqs = torch.arange(bins, dtype=torch.float64) * (SAMPLE_RATE / N_FFT)
    mel = _mel(freqs)
    lo, hi = (
        _mel(torch.tensor(20.0, dtype=torch.float64)),
        _mel(torch.tensor(SAMPLE_RATE / 2, dtype=torch.float64)),
    )
    delta = (hi - lo) / (N_MELS + 1)
    w = torch.zeros(bins + 1, N_MELS, dtype=torch.float64)
    for b in range(N_MELS):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (mel - left) / (center - left)
        down = (right - mel) / (right - center)
        tri = torch.where(mel <= center, up, down)
        w[:bins, b] = torch.where((mel > left) & (mel < right), tri, torch.zeros_like(tri))
    return w.to(device=device, dtype=dtype)


def hamming_window(device=None) -> torch.Tensor:
    """Kaldi's (symmetric) Hamming window of one 25 ms frame."""
    n = torch.arange(FRAME_LENGTH, dtype=torch.float64)
    return (0.54 - 0.46 * torch.cos(2 * math.pi * n / (FRAME_LENGTH - 1))).float().to(device)


def kaldi_log_mel(x: torch.Tensor, window: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Kaldi fbank of waveforms ``[B, N]`` in [-1, 1] (scaled to 16-bit range, snip_edges, DC removal,
    pre-emphasis 0.97, ``window``, 512-point power spectrum, log ``mel`` with FLT_EPSILON floor) ->
    ``[B, F, 80]``, F = (N - 400) // 160 + 1. Shared by SenseVoice and WeSpeaker (pyannote_torch)."""
    frames = (x * PCM_SCALE).unfold(1, FRAME_LENGTH, FRAME_SHIFT)  # [B, F, 400]
    frames = frames - frames.mean(-1, keepdim=True)
    prev = torch.cat([frames[..., :1], frames[..., :-1]], -1)
    frames = (frames - 0.97 * prev) * window
    spec = torch.fft.rfft(frames, n=N_FFT).abs().pow(2)  # [B, F, 257]
    return torch.log(torch.clamp(spec @ mel, min=torch.finfo(torch.float32).eps))


class Frontend(nn.Module):
    """Batched kaldi fbank (snip_edges, DC removal, pre-emphasis 0.97, Hamming, 512-point power
    spectrum, log mel with FLT_EPSILON floor) -> LFR 7/6 (FunASR's edge padding) -> CMVN."""

    def __init__(self, cmvn: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        self.register_buffer("window", hamming_window())
        self.register_buffer("mel", mel_matrix("cpu"))
        shift, scale = cmvn if cmvn is not None else (np.zeros(N_MELS * LFR_M), np.ones(N_MELS * LFR_M))
        self.register_buffer("shift", torch.as_tensor(np.asarray(shift), dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))

    @torch.no_grad()
    def forward(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """1-D waveforms in [-1, 1] (on the module's device) -> features ``[B, T, 560]`` and lengths."""
        dev = self.window.device
        n_frames = [max(0, (int(w.numel()) - FRAME_LENGTH) // FRAME_SHIFT + 1) for w in waves]
        if min(n_frames) < 1:
            raise ValueError("every waveform needs at least 400 samples (one 25 ms frame)")
        longest = max(int(w.numel()) for w in waves)
        x = torch.zeros(len(waves), longest, device=dev)
        for i, w in enumerate(waves):
            x[i, : w.numel()] = w
        fb = kaldi_log_mel(x, self.window, self.mel)  # [B, F, 80]
        lengths = torch.tensor([math.ceil(n / LFR_N) for n in n_frames], device=dev)
        t_lfr = int(lengths.max())
        half = (LFR_M - 1) // 2
        idx = torch.arange(t_lfr, device=dev)[:, None] * LFR_N + torch.arange(LFR_M, device=dev) - half
        last = torch.tensor(n_frames, device=dev)[:, None, None] - 1
        idx = torch.minimum(idx.clamp(min=0)[None], last)  # [B, T, 7], per utterance
        rows = torch.gather(fb, 1, idx.reshape(len(waves), -1, 1).expand(-1, -1, N_MELS))
        rows = rows.reshape(len(waves), t_lfr, LFR_M * N_MELS)
        rows = (rows + self.shift) * self.scale
        mask = torch.arange(t_lfr, device=dev)[None] < lengths[:, None]
        return rows * mask[..., None], lengths


# -- network ---------------------------------------------------------------------------------------


class LayerNorm(nn.LayerNorm):
    def __init__(self, size: int):
        super().__init__(size, eps=1e-12)


class SanmAttention(nn.Module):
    """Multi-head self-attention plus a depthwise FSMN memory (kernel 11, centred) over the values."""

    def __init__(self, heads: int, in_size: int, size: int, kernel: int = 11):
        super().__init__()
        self.heads, self.d_k = heads, size // heads
        self.linear_q_k_v = nn.Linear(in_size, 3 * size)
        self.linear_out = nn.Linear(size, size)
        self.fsmn_block = nn.Conv1d(size, size, kernel, groups=size, bias=False)
        self.pad = ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.linear_q_k_v(x).chunk(3, dim=-1)
        keep = mask[:, :, None].to(x.dtype)  # [B, T, 1]
        vm = v * keep
        mem = self.fsmn_block(nn.functional.pad(vm.transpose(1, 2), self.pad)).transpose(1, 2)
        mem = (mem + vm) * keep
        q, k, v = (z.view(b, t, self.heads, self.d_k).transpose(1, 2) for z in (q, k, v))
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        # rows of padded queries see only valid keys; their outputs are masked later
        return self.linear_out(att.transpose(1, 2).reshape(b, t, -1)) + mem


class FeedForward(nn.Module):
    def __init__(self, size: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(size, hidden)
        self.w_2 = nn.Linear(hidden, size)

    def forward(self, x):
        return self.w_2(torch.relu(self.w_1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, in_size: int, size: int, heads: int, hidden: int):
        super().__init__()
        self.in_size, self.size = in_size, size
        self.self_attn = SanmAttention(heads, in_size, size)
        self.feed_forward = FeedForward(size, hidden)
        self.norm1, self.norm2 = LayerNorm(in_size), LayerNorm(size)

    def forward(self, x, mask):
        y = self.self_attn(self.norm1(x), mask)
        x = x + y if self.in_size == self.size else y
        return x + self.feed_forward(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, input_size, output_size, attention_heads, linear_units, num_blocks, tp_blocks, **_):
        super().__init__()
        self.output_size = output_size
        self.encoders0 = nn.ModuleList([EncoderLayer(input_size, output_size, attention_heads, linear_units)])
        self.encoders = nn.ModuleList(
            EncoderLayer(output_size, output_size, attention_heads, linear_units)
            for _ in range(num_blocks - 1)
        )
        self.after_norm = LayerNorm(output_size)
        self.tp_encoders = nn.ModuleList(
            EncoderLayer(output_size, output_size, attention_heads, linear_units) for _ in range(tp_blocks)
        )
        self.tp_norm = LayerNorm(output_size)

    @staticmethod
    def positions(t: int, depth: int, device, dtype) -> torch.Tensor:
        pos = torch.arange(1, t + 1, device=device, dtype=torch.float32)
        inc = math.log(10000.0) / (depth / 2 - 1)
        inv = torch.exp(torch.arange(depth // 2, device=device, dtype=torch.float32) * -inc)
        scaled = pos[:, None] * inv[None]
        return torch.cat([torch.sin(scaled), torch.cos(scaled)], -1).to(dtype)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
        x = x * self.output_size**0.5
        x = x + self.positions(x.shape[1], x.shape[2], x.device, x.dtype)[None]
        for layer in self.encoders0:
            x = layer(x, mask)
        for layer in self.encoders:
            x = layer(x, mask)
        x = self.after_norm(x)
        for layer in self.tp_encoders:
            x = layer(x, mask)
        return self.tp_norm(x), lengths


class Ctc(nn.Module):
    def __init__(self, size: int, vocab: int):
        super().__init__()
        self.ctc_lo = nn.Linear(size, vocab)


class SenseVoice(nn.Module):
    """features ``[B, T, 560]``, lengths, language / textnorm prompt indices -> logits ``[B, 4 + T, V]``."""

    def __init__(self, encoder_conf: dict, vocab_size: int = VOCAB_SIZE, input_size: int = N_MELS * LFR_M):
        super().__init__()
        self.embed = nn.Embedding(16, input_size)  # 7 + 7 languages + 2 textnorms, as in FunASR
        self.encoder = Encoder(input_size, **encoder_conf)
        self.ctc = Ctc(encoder_conf["output_size"], vocab_size)

    def forward(self, feats, lengths, language, textnorm):
        b = feats.shape[0]
        lang = self.embed(language)[:, None]
        tn = self.embed(textnorm)[:, None]
        ee = self.embed(torch.tensor([[1, 2]], device=feats.device)).expand(b, -1, -1)
        x = torch.cat([lang, ee, tn, feats.to(lang.dtype)], 1)
        out, lens = self.encoder(x, lengths + PROMPTS)
        return self.ctc.ctc_lo(out), lens


def build(encoder_conf: dict, seed: int, blank_bias: float, device: str, dtype=torch.float32) -> SenseVoice:
    """The architecture with random weights drawn on ``device`` from ``seed`` (PyTorch's default
    initialisers), the CTC blank bias raised as the dev models do."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = SenseVoice(encoder_conf)
    with torch.no_grad():
        model.ctc.ctc_lo.bias[BLANK] = blank_bias
    return model.to(dtype).eval()


def greedy(logits: torch.Tensor, lens: torch.Tensor) -> list[np.ndarray]:
    """Greedy CTC on the device; collapse and blank removal per utterance on the host."""
    best = logits.argmax(-1).cpu().numpy()
    out = []
    for row, n in zip(best, lens.cpu().numpy(), strict=True):
        seq = row[: int(n)]
        seq = seq[np.concatenate(([True], seq[1:] != seq[:-1]))]
        out.append(seq[seq != BLANK].astype(np.int32))
    return out


class Recognizer:
    """Front end + network + greedy CTC on one device; ``__call__`` takes float32 numpy waveforms."""

    def __init__(
        self, encoder_conf: dict, seed: int, blank_bias: float, device: str, precision: str = "fp32"
    ):
        self.device = device
        dtype = torch_dtype(precision)
        self.frontend = Frontend().to(device)
        self.model = build(encoder_conf, seed, blank_bias, device, dtype)
        self.params = sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray], with_frames: bool = False):
        tensors = [
            torch.from_numpy(np.ascontiguousarray(w, np.float32)).to(self.device, non_blocking=True)
            for w in waves
        ]
        feats, lens = self.frontend(tensors)
        n = len(waves)
        language = torch.zeros(n, dtype=torch.long, device=self.device)  # auto
        textnorm = torch.full((n,), TEXTNORM_WITH_ITN, dtype=torch.long, device=self.device)
        logits, out_lens = self.model(feats, lens, language, textnorm)
        ids = greedy(logits, out_lens)
        return (ids, out_lens.cpu().numpy()) if with_frames else ids


# -- Triton Python backend ---------------------------------------------------------------------------


class TritonPythonModel(BatchedTritonModel):
    """``asr_gpu``: parameters ``device`` (cuda|cpu), ``variant`` (full|tiny), ``seed``, ``precision``."""

    def build(self, variant, seed, device, precision):
        from export_scripts.sensevoice_dev import BLANK_BIAS, ENCODERS

        self.recognizer = Recognizer(ENCODERS[variant], seed, BLANK_BIAS, device, precision)
        rng = np.random.default_rng(0)
        for n in (1, 8):  # warm-up: kernels, allocator
            self.recognizer([rng.normal(0, 0.1, SAMPLE_RATE * 5).astype(np.float32) for _ in range(n)])

    def parse(self, request):
        data = self.pb.get_input_tensor_by_name(request, "WAVEFORM").as_numpy().reshape(-1)
        if data.size < FRAME_LENGTH:
            raise self.io.RequestError("WAVEFORM needs at least 400 samples")
        return data

    def run(self, waves):
        results, frames = self.recognizer(waves, with_frames=True)
        return [
            {
                "TOKEN_IDS": ids,
                "NUM_TOKENS": np.array([ids.size], np.int32),
                "NUM_FRAMES": np.array([nf], np.int32),
            }
            for ids, nf in zip(results, frames, strict=True)
        ]
