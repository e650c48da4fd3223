"""fsmn-VAD on onnxruntime, batched across requests and streams; shared by ``vad`` and ``vad_stream``.

The network (exported by ``export_scripts/fsmn_vad.py`` with a dynamic batch axis) maps LFR
features ``speech [B, T, 400]`` plus four FSMN caches ``[B, 128, 19, 1]`` to posteriors
``logits [B, T, 248]`` and the next caches. It is causal (``rorder: 0``), so each stream can be fed
in pieces with its caches carried over, and equal-length pieces of different streams batch exactly.
Everything around the network (front end, end-pointing) is ``speechlib.vad``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from serving.onnx_session import create_session
from speechlib.features import FrontendConfig, load_cmvn
from speechlib.interfaces import SAMPLE_RATE
from speechlib.vad import SpeechEvent, VadConfig, VadStream, events_to_segments

ONNX_FILE = "fsmn_vad.onnx"
MAX_SINGLE_SEGMENT_MS = 30000  # our ASR takes utterances of at most 30 s
NETWORK_CHUNK_SECONDS = 60  # audio fed per stream per network call in offline mode (bounds memory)

Caches = list[np.ndarray]  # one stream's FSMN caches, each [128, 19, 1]


class FsmnVadNetwork:
    """The FSMN network plus the settings of its model directory (config.yaml, am.mvn)."""

    def __init__(
        self,
        model_dir: str | Path,
        intra_op_threads: int = 1,
        device: str = "cpu",
        device_id: int = 0,
        on_batch: Callable[[int], None] | None = None,
    ):
        model_dir = Path(model_dir)
        conf = yaml.safe_load((model_dir / "config.yaml").read_text())
        self.frontend = FrontendConfig.from_dict(conf["frontend_conf"])
        self.cmvn = load_cmvn(model_dir / "am.mvn")
        self.vad_config = VadConfig.from_dict(
            conf["model_conf"], max_single_segment_time=MAX_SINGLE_SEGMENT_MS
        )
        enc = conf["encoder_conf"]
        self.cache_shape = (int(enc["proj_dim"]), int(enc["lorder"]) - 1, 1)
        self.num_caches = int(enc["fsmn_layers"])
        self.session = create_session(model_dir / ONNX_FILE, intra_op_threads, device, device_id)
        names = [i.name for i in self.session.get_inputs()]
        if names != ["speech"] + [f"in_cache{i}" for i in range(self.num_caches)]:
            raise RuntimeError(f"{model_dir / ONNX_FILE}: unexpected inputs {names}; re-export it")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.on_batch = on_batch

    def zero_caches(self) -> Caches:
        return [np.zeros(self.cache_shape, dtype=np.float32) for _ in range(self.num_caches)]

    def new_stream(self, max_end_silence_ms: int | None = None) -> VadStream:
        return VadStream(self.frontend, self.cmvn, self.vad_config, max_end_silence_ms)

    def score(
        self, feats: Sequence[np.ndarray], caches: Sequence[Caches], finals: Sequence[bool] | None = None
    ) -> tuple[list[np.ndarray], list[Caches]]:
        """Posteriors ``[T_i, 248]`` for each piece ``feats[i] [T_i, 400]`` and each stream's next caches.

        Pieces of equal length run as one batch. A stream's last piece (``finals[i]``) may be padded
        at the end to join others: the network is causal, so padding changes no real frame's output,
        and only that stream's (discarded) caches see it. No other cache ever sees padding. An empty
        piece returns no scores and its caches unchanged.
        """
        finals = list(finals) if finals is not None else [False] * len(feats)
        scores: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(feats)
        new_caches: list[Caches] = list(caches)
        groups: dict[int, list[int]] = defaultdict(list)
        last_pieces = []
        for i, f in enumerate(feats):
            if not len(f):
                continue
            (last_pieces if finals[i] else groups[len(f)]).append(i)
        batches = list(groups.values())
        if last_pieces:
            batches.append(last_pieces)
        for members in batches:
            width = max(len(feats[i]) for i in members)
            speech = np.zeros((len(members), width, feats[members[0]].shape[1]), dtype=np.float32)
            for j, i in enumerate(members):
                speech[j, : len(feats[i])] = feats[i]
            inputs = {"speech": speech}
            for k in range(self.num_caches):
                inputs[f"in_cache{k}"] = np.stack([caches[i][k] for i in members])
            outputs = self.session.run(self.output_names, inputs)
            if self.on_batch is not None:
                self.on_batch(len(members))
            logits, out_caches = outputs[0], outputs[1:]
            for j, i in enumerate(members):
                scores[i] = logits[j, : len(feats[i])]
                new_caches[i] = [c[j] for c in out_caches]
        return scores, new_caches


def step_streams(
    network: FsmnVadNetwork,
    streams: Sequence[VadStream],
    caches: Sequence[Caches],
    chunks: Sequence[np.ndarray],
    finals: Sequence[bool],
) -> tuple[list[list[SpeechEvent]], list[Caches]]:
    """One step of several streams at once: stream ``i`` takes its next ``chunks[i]`` of samples
    (``finals[i]``: its last), the network runs once over all of them (:meth:`FsmnVadNetwork.score`),
    and each stream's end-pointer decides its events. Returns the events and next caches per stream.
    The one step behind both ``vad`` (offline, :func:`detect_segments`) and ``vad_stream`` (live)."""
    feats, dbs = [], []
    for stream, samples, final in zip(streams, chunks, finals, strict=True):
        f, d = stream.accept_audio(samples, final)
        feats.append(f)
        dbs.append(d)
    scores, next_caches = network.score(feats, caches, finals)
    events = []
    for j, stream in enumerate(streams):
        s = scores[j] if len(feats[j]) else np.zeros((0, 1), np.float32)
        events.append(stream.accept_scores(s, dbs[j], finals[j]))
    return events, next_caches


def detect_segments(
    network: FsmnVadNetwork,
    waveforms: Sequence[np.ndarray],
    max_end_silence_ms: Sequence[int | None] | None = None,
    chunk_seconds: float = NETWORK_CHUNK_SECONDS,
) -> list[list[tuple[int, int]]]:
    """Speech segments ``(start_ms, end_ms)`` of each whole waveform, batching the network across them.

    Each waveform goes through the same incremental path a stream takes (``chunk_seconds`` at a
    time, :func:`step_streams`), so memory is bounded by the chunk, not the audio, and results equal
    ``vad_stream``'s.
    """
    n = len(waveforms)
    silences = list(max_end_silence_ms) if max_end_silence_ms is not None else [None] * n
    streams = [network.new_stream(silences[i]) for i in range(n)]
    caches = [network.zero_caches() for _ in range(n)]
    events: list[list[SpeechEvent]] = [[] for _ in range(n)]
    chunk = max(1, int(chunk_seconds * SAMPLE_RATE))
    offsets = [0] * n
    active = list(range(n))
    while active:
        pieces, finals = [], []
        for i in active:
            piece = waveforms[i][offsets[i] : offsets[i] + chunk]
            offsets[i] += len(piece)
            pieces.append(piece)
            finals.append(offsets[i] >= len(waveforms[i]))
        new_events, next_caches = step_streams(
            network, [streams[i] for i in active], [caches[i] for i in active], pieces, finals
        )
        for j, i in enumerate(active):
            caches[i] = next_caches[j]
            events[i].extend(new_events[j])
        active = [i for j, i in enumerate(active) if not finals[j]]
    return [events_to_segments(e) for e in events]
