"""SenseVoiceSmall, batched: waveforms -> features -> network -> CTC decode + alignment, in one process.

Used by the Triton model ``asr`` (``model_repository/asr/1/model.py``); importable and testable outside
Triton. The model folder holds what the export writes: ``model.onnx`` (inputs ``speech [B, T, 560]``,
``speech_lengths [B]``, ``language [B]``, ``textnorm [B]`` -> raw ``ctc_logits [B, 4 + T', V]``,
``encoder_out_lens [B]``), ``config.yaml`` (its ``frontend_conf``), ``am.mvn`` and ``tokens.json``.

Runtimes (model parameter ``runtime``):

* ``onnxruntime`` -- CPU, or CUDA on GPU instances (cuDNN conv algo search DEFAULT, see
  ``serving.onnx_session``).
* ``torchscript`` -- torch on CUDA in the GPU image. Not available in this build: the serving
  environment has no torch and serving code may not import it (tests/test_boundaries.py); choosing it
  fails at load time with a message saying so.

Logits never leave this process: each utterance's logits are decoded (greedy CTC), its tags parsed
and its text tokens force-aligned right after the network call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from serving.onnx_session import create_session
from speechlib import ctc
from speechlib.features import FrontendConfig, fbank, lfr_cmvn, load_cmvn, num_frames
from speechlib.languages import TEXTNORM_PROMPT, language_prompt
from speechlib.tokens import Vocabulary

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts"  # traced twin of model.onnx for the torchscript runtime
NETWORK_INPUTS = ["speech", "speech_lengths", "language", "textnorm"]
TOKENS_FILE = "tokens.json"
PROMPT_FRAMES = 4  # language, event, emotion, textnorm queries in front of the speech frames
RUNTIMES = ("onnxruntime", "torchscript")
MIN_SAMPLES = 400  # one 25 ms fbank frame


@dataclass(frozen=True)
class Recognition:
    """One utterance's result. ``token_times_ms`` rows are ``(start_ms, end_ms)`` from the utterance start."""

    text: str
    language: str
    emotion: str
    event: str
    token_ids: np.ndarray  # int32 [N], text tokens only (tags removed)
    tokens: list[str]  # their pieces
    token_times_ms: np.ndarray  # int32 [N, 2]
    token_probs: np.ndarray  # float32 [N]: each text token's CTC posterior (ctc.greedy_token_probs)


def decode_utterance(logits: np.ndarray, vocab: Vocabulary, blank: int = ctc.BLANK) -> Recognition:
    """Greedy CTC + tags + token times for one utterance's logits ``[4 + T', V]`` (prompt frames first)."""
    token_ids, _ = ctc.greedy_decode(logits, blank)
    decoded = vocab.decode(token_ids)
    times = ctc.align_token_times(logits[PROMPT_FRAMES:], decoded.text_ids, blank)
    probs = ctc.greedy_token_probs(logits, blank)[np.asarray(decoded.text_positions, dtype=np.int64)]
    return Recognition(
        text=decoded.text,
        language=decoded.language,
        emotion=decoded.emotion,
        event=decoded.event,
        token_ids=np.asarray(decoded.text_ids, dtype=np.int32),
        tokens=decoded.text_pieces,
        token_times_ms=times,
        token_probs=probs.astype(np.float32),
    )


def length_groups(lengths: Sequence[int], max_padding: float) -> list[list[int]]:
    """Split a batch (frame counts) into groups of similar length: sorted by length, a group closes
    when padding everything to its longest member would make more than ``max_padding`` of the
    network's input padding. Padding is pure loss on CPU (measured: 16 streams of mixed lengths ran at
    0.39x funasr-onnx's throughput with whole padded batches); ``max_padding`` 1.0 keeps one batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    total = 0
    for i in order:
        group = groups[-1] if groups else None
        if group is not None:
            padded = (len(group) + 1) * lengths[i]  # i is the new longest (sorted)
            if 1.0 - (total + lengths[i]) / padded <= max_padding:
                group.append(i)
                total += lengths[i]
                continue
        groups.append([i])
        total = lengths[i]
    return groups


class SenseVoice:
    """The network and everything around it for one model folder."""

    def __init__(
        self,
        model_dir: str | Path,
        runtime: str = "onnxruntime",
        intra_op_threads: int = 1,
        device: str = "cpu",
        device_id: int = 0,
        on_batch: Callable[[int], None] | None = None,
        max_padding: float = 0.25,
    ):
        model_dir = Path(model_dir)
        self.max_padding = float(max_padding)
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        network_file = TORCHSCRIPT_FILE if runtime == "torchscript" else ONNX_FILE
        missing = [
            f for f in (network_file, TOKENS_FILE, "config.yaml", "am.mvn") if not (model_dir / f).is_file()
        ]
        if missing:
            raise RuntimeError(
                f"{model_dir}: missing {', '.join(missing)}; run `make models` (export_scripts.build)"
            )
        conf = yaml.safe_load((model_dir / "config.yaml").read_text())
        # dither adds random noise to the features: never at inference (outputs would vary run to run).
        self.frontend = dataclasses.replace(FrontendConfig.from_dict(conf["frontend_conf"]), dither=0.0)
        self.cmvn = load_cmvn(model_dir / "am.mvn")
        self.vocab = Vocabulary.from_json(model_dir / TOKENS_FILE)
        self.runtime = runtime
        if runtime == "torchscript":
            from serving.torch_runtime import TorchScriptModel

            self.network = TorchScriptModel(model_dir / TORCHSCRIPT_FILE, device, device_id, intra_op_threads)
        else:
            session = create_session(model_dir / ONNX_FILE, intra_op_threads, device, device_id)
            names = [i.name for i in session.get_inputs()]
            if names != NETWORK_INPUTS:
                raise RuntimeError(f"{model_dir / ONNX_FILE}: unexpected inputs {names}; re-export it")
            vocab_size = session.get_outputs()[0].shape[-1]
            if isinstance(vocab_size, int) and vocab_size != len(self.vocab):
                raise RuntimeError(
                    f"{model_dir}: the network has {vocab_size} outputs but {TOKENS_FILE} has {len(self.vocab)} pieces"
                )
            self.network = lambda *arrays: session.run(None, dict(zip(NETWORK_INPUTS, arrays, strict=False)))
        self.on_batch = on_batch

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """LFR + CMVN features ``[T, 560]`` of one 16 kHz waveform in [-1, 1] (at least 400 samples)."""
        if num_frames(len(waveform)) == 0:
            raise ValueError(
                f"audio of {len(waveform)} samples is shorter than one 25 ms frame ({MIN_SAMPLES} samples)"
            )
        fb = fbank(waveform, self.frontend)
        return lfr_cmvn(fb, self.frontend.lfr_m, self.frontend.lfr_n, self.cmvn)

    def logits(
        self, feats: Sequence[np.ndarray], languages: Sequence[int], textnorms: Sequence[int]
    ) -> list[np.ndarray]:
        """One network call on a padded batch: each utterance's raw logits ``[4 + T'_i, V]``."""
        width = max(f.shape[0] for f in feats)
        speech = np.zeros((len(feats), width, feats[0].shape[1]), np.float32)
        for i, f in enumerate(feats):
            speech[i, : f.shape[0]] = f
        lengths = np.array([f.shape[0] for f in feats], np.int32)
        out, out_lens = self.network(
            speech, lengths, np.asarray(languages, np.int32), np.asarray(textnorms, np.int32)
        )
        if self.on_batch is not None:
            self.on_batch(len(feats))
        return [out[i, : int(out_lens[i])] for i in range(len(feats))]

    def recognize(
        self,
        waveforms: Sequence[np.ndarray],
        languages: Sequence[str] | None = None,
        use_itn: Sequence[bool] | None = None,
    ) -> list[Recognition]:
        """Recognize each waveform. ``languages``: codes for ``speechlib.languages`` (default auto);
        ``use_itn`` default True. Utterances of similar length share a network call (see
        :func:`length_groups`)."""
        n = len(waveforms)
        if n == 0:
            return []
        langs = [language_prompt(c) for c in (languages or ["auto"] * n)]
        norms = [TEXTNORM_PROMPT[bool(u)] for u in (use_itn or [True] * n)]
        feats = [self.features(w) for w in waveforms]
        logits: list[np.ndarray | None] = [None] * n
        for group in length_groups([f.shape[0] for f in feats], self.max_padding):
            outs = self.logits(
                [feats[i] for i in group], [langs[i] for i in group], [norms[i] for i in group]
            )
            for i, lg in zip(group, outs, strict=False):
                logits[i] = lg
        return [decode_utterance(lg, self.vocab) for lg in logits]
