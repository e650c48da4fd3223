"""Global speaker diarization of long audio through Triton (pyannote community-1's pipeline).

Never one Triton request: the client slides 10 s windows over the audio at pyannote's step (1 s),
sends each window to ``segmentation``, turns its powerset scores into local speakers' masks, sends
the window and masks to ``speaker_embedding`` (the ResNet trunk once per window), and keeps only the
per-window results (hard segmentation, embeddings: a few KB per window). At the end the embeddings
are clustered globally (PLDA + VBx, or agglomerative), the windows' local speakers are mapped to
global speakers and the frame-level diarization is reconstructed into speaker turns — all pure numpy
in :mod:`speechlib.diarization` (:func:`speechlib.diarization.pipeline.assemble_diarization`, the
one pipeline, which the parity tests check against pyannote stage by stage).

    async with TritonClient(url) as client:
        diarizer = DiarizationClient(client)           # pipeline files: model_repository/speaker_embedding/1
        result = await diarizer.diarize(waveform)      # 16 kHz mono float32, or an iterator of chunks
        for turn in result.exclusive_turns:            # one speaker at a time; result.turns keeps overlaps
            print(turn.start_s, turn.end_s, turn.speaker)  # seconds, "SPEAKER_00", ...

Memory is bounded by the request window: audio is held only for windows whose requests are in
flight (``max_pending_windows``), plus the last 10 s of the stream. Retries for a briefly
unavailable Triton come from :class:`TritonClient`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference_client.client import TritonClient
from inference_client.vad import validate_waveform
from speechlib.diarization.clustering import DEFAULT_MAX_EMBEDDINGS
from speechlib.diarization.masks import embedding_masks, min_num_frames
from speechlib.diarization.pipeline import (
    DiarizationResult,
    PipelineSettings,
    assemble_diarization,
    check_speaker_counts,
    clustering_method,
)
from speechlib.diarization.powerset import powerset_to_multilabel
from speechlib.diarization.turns import SpeakerTurn
from speechlib.diarization.windows import plan_windows
from speechlib.interfaces import SAMPLE_RATE, Segmentation, SpeakerEmbedding

__all__ = [
    "DEFAULT_PIPELINE_DIR",
    "DiarizationClient",
    "DiarizationProgress",
    "DiarizationResult",
    "PipelineSettings",
    "SpeakerTurn",
    "WindowAnalysis",
    "assemble_diarization",
]

DEFAULT_PIPELINE_DIR = Path(__file__).resolve().parents[1] / "model_repository" / SpeakerEmbedding.NAME / "1"
"""Where ``params.json``, ``plda.npz`` and ``xvec_transform.npz`` are installed by the model build."""

DEFAULT_CHUNK_SECONDS = 30.0  # progress granularity when a whole waveform is given


@dataclass(frozen=True)
class DiarizationProgress:
    """Reported after each chunk of input: how much audio was read and how many windows are done."""

    seconds_read: float
    windows_done: int
    windows_sent: int
    finished_reading: bool = False


ProgressCallback = Callable[[DiarizationProgress], object]
Audio = np.ndarray | Iterable[np.ndarray] | AsyncIterable[np.ndarray]


class _WindowStore:
    """Per-window results, appended in any order, kept compact: hard segmentation as uint8."""

    def __init__(self, num_frames: int, local_speakers: int, dimension: int):
        self.binary: dict[int, np.ndarray] = {}
        self.embeddings: dict[int, np.ndarray] = {}
        self.shape = (num_frames, local_speakers, dimension)

    def arrays(self, num_windows: int) -> tuple[np.ndarray, np.ndarray]:
        f, s, d = self.shape
        binary = np.zeros((num_windows, f, s), dtype=np.uint8)
        emb = np.full((num_windows, s, d), np.nan, dtype=np.float32)
        for k in range(num_windows):
            binary[k] = self.binary.pop(k)
            emb[k] = self.embeddings.pop(k)
        return binary, emb


@dataclass
class WindowAnalysis:
    """What the Triton models said about every window of one recording (:meth:`DiarizationClient.analyze`).

    ``binary``: (windows, frames, local speakers) uint8 hard segmentation; ``embeddings``: (windows,
    local speakers, D) float32, NaN rows where skipped; ``duration_s``: seconds of audio;
    ``seconds``: wall time the analysis took.
    """

    binary: np.ndarray
    embeddings: np.ndarray
    settings: PipelineSettings
    duration_s: float
    seconds: float = 0.0

    def assemble(self, **kwargs) -> DiarizationResult:
        """Cluster and reconstruct: :func:`assemble_diarization` with this analysis (keyword
        arguments as there: ``method``, ``num_speakers``, ``min_speakers``, ``max_speakers``,
        ``max_embeddings``, ``clip_to_audio``)."""
        return assemble_diarization(self.binary, self.embeddings, self.settings, self.duration_s, **kwargs)


class DiarizationClient:
    """Speaker diarization over Triton's ``segmentation`` and ``speaker_embedding`` models.

    Args:
        client: the process's :class:`TritonClient` (its request window and retries are used).
        settings: pipeline hyper-parameters and PLDA; default: read from :data:`DEFAULT_PIPELINE_DIR`.
        max_pending_windows: windows whose requests may be in flight at once (bounds the audio held:
            10 s = 640 KB each). Default: twice the client's window, so Triton's batches stay full.
    """

    def __init__(
        self,
        client: TritonClient,
        settings: PipelineSettings | None = None,
        max_pending_windows: int | None = None,
        segmentation_model: str = Segmentation.NAME,
        embedding_model: str = SpeakerEmbedding.NAME,
    ):
        self.client = client
        self.settings = settings if settings is not None else PipelineSettings.from_dir(DEFAULT_PIPELINE_DIR)
        self.max_pending = max_pending_windows or max(2, 2 * client.max_in_flight)
        self.segmentation_model = segmentation_model
        self.embedding_model = embedding_model
        s = self.settings
        self.window_samples = int(round(s.window_s * SAMPLE_RATE))
        self.step_samples = int(round(s.step_s * SAMPLE_RATE))
        self.min_frames = min_num_frames(
            num_frames=s.num_frames, duration_s=s.window_s, min_num_samples=s.min_num_samples
        )

    # -- one window ------------------------------------------------------------------------------
    async def _window(self, k: int, window: np.ndarray, store: _WindowStore) -> None:
        s = self.settings
        x = window.reshape(1, 1, -1)
        out = await self.client.infer(
            self.segmentation_model, {Segmentation.WAVEFORM: x}, [Segmentation.SCORES]
        )
        scores = out[Segmentation.SCORES].reshape(s.num_frames, s.num_classes)
        binary = powerset_to_multilabel(scores, s.local_speakers, s.max_speakers_per_frame)  # [F, S]
        masks = embedding_masks(binary[None], s.exclude_overlap, self.min_frames)[0]  # [S, F]
        if masks.any():
            out = await self.client.infer(
                self.embedding_model,
                {SpeakerEmbedding.WAVEFORM: x, SpeakerEmbedding.MASKS: masks[None].astype(np.float32)},
                [SpeakerEmbedding.EMBEDDINGS],
            )
            emb = out[SpeakerEmbedding.EMBEDDINGS][0]
            if emb.shape != (s.local_speakers, s.embedding_dimension):
                raise RuntimeError(
                    f"{self.embedding_model} returned embeddings of shape {list(emb.shape)}; the pipeline "
                    f"settings expect [{s.local_speakers}, {s.embedding_dimension}] (params.json out of date?)"
                )
        else:  # nobody speaks in this window: nothing to embed
            emb = np.full((s.local_speakers, s.embedding_dimension), np.nan, dtype=np.float32)
        store.binary[k] = binary.astype(np.uint8)
        store.embeddings[k] = emb.astype(np.float32, copy=False)

    # -- the whole pipeline ----------------------------------------------------------------------
    async def diarize(
        self,
        audio: Audio,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        clustering: str | None = None,
        max_embeddings: int | None = DEFAULT_MAX_EMBEDDINGS,
        progress: ProgressCallback | None = None,
        clip_to_audio: bool = True,
    ) -> DiarizationResult:
        """Diarize 16 kHz mono float32 audio: a whole waveform, or an (async) iterator of chunks of
        any length (e.g. ffmpeg's output read piece by piece; only the last 10 s are kept).

        ``num_speakers`` fixes the number of speakers; otherwise ``min_speakers``/``max_speakers``
        bound it. ``clustering``: ``"vbx"`` (community-1, default) or ``"agglomerative"``.
        Above ``max_embeddings`` (window, speaker) embeddings, clustering runs on a time-stratified
        subsample and every embedding is assigned to its centroids (memory stays bounded).
        ``progress`` is called after each chunk (and once at the end) with a
        :class:`DiarizationProgress`; it may be a coroutine function. ``clip_to_audio=False`` keeps
        turns that run into the last window's zero padding, exactly as pyannote reports them.

        Audio with no speech gives an empty diarization; empty audio raises ``ValueError``.
        Same as :meth:`analyze` followed by :meth:`WindowAnalysis.assemble`.
        """
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        method = clustering_method(clustering, self.settings)  # fail before any Triton work
        analysis = await self.analyze(audio, progress=progress)
        t0 = time.perf_counter()
        result = await asyncio.to_thread(
            analysis.assemble,
            method=method,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            max_embeddings=max_embeddings,
            clip_to_audio=clip_to_audio,
        )
        result.timings = {"inference": analysis.seconds, "clustering": time.perf_counter() - t0}
        return result

    async def analyze(self, audio: Audio, *, progress: ProgressCallback | None = None) -> WindowAnalysis:
        """The Triton part of :meth:`diarize`: every window's hard segmentation and embeddings
        (a few KB per window), ready to be clustered — once, or several times with different
        speaker counts, clustering methods or caps (:meth:`WindowAnalysis.assemble`)."""
        t0 = time.perf_counter()
        store = _WindowStore(
            self.settings.num_frames, self.settings.local_speakers, self.settings.embedding_dimension
        )
        pending: set[asyncio.Task] = set()
        failure: list[BaseException] = []
        done = 0
        sent = 0

        def finished(task: asyncio.Task) -> None:
            nonlocal done
            pending.discard(task)
            if task.cancelled():
                return
            if task.exception() is not None:
                failure.append(task.exception())
            else:
                done += 1

        async def send(k: int, window: np.ndarray) -> None:
            nonlocal sent
            while len(pending) >= self.max_pending and not failure:
                await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)
            if failure:
                raise failure[0]
            task = asyncio.ensure_future(self._window(k, window, store))
            pending.add(task)
            task.add_done_callback(finished)
            sent += 1

        async def report(seconds: float, final: bool = False) -> None:
            if progress is not None:
                r = progress(DiarizationProgress(seconds, done, sent, final))
                if asyncio.iscoroutine(r):
                    await r

        buffer = np.zeros(0, dtype=np.float32)
        buffer_start = 0  # absolute index of buffer[0]
        total = 0
        next_window = 0
        try:
            async for chunk in _chunks(audio):
                x = validate_waveform(chunk, "audio chunk")
                if x.size == 0:
                    continue
                buffer = np.concatenate([buffer, x])
                total += x.size
                # Every window that lies wholly inside the audio read so far.
                while next_window * self.step_samples + self.window_samples <= total:
                    start = next_window * self.step_samples - buffer_start
                    await send(next_window, buffer[start : start + self.window_samples].copy())
                    next_window += 1
                drop = next_window * self.step_samples - buffer_start
                if drop > 0:
                    buffer = buffer[drop:]
                    buffer_start += drop
                await report(total / SAMPLE_RATE)
            if total == 0:
                raise ValueError("no audio: the waveform is empty")
            plan = plan_windows(
                total, SAMPLE_RATE, self.settings.window_s, self.settings.step_s / self.settings.window_s
            )
            if next_window != plan.num_complete:  # pragma: no cover - same arithmetic
                raise AssertionError(f"sent {next_window} windows, plan has {plan.num_complete}")
            if plan.has_padded_last:
                start = next_window * self.step_samples - buffer_start
                last = np.zeros(self.window_samples, dtype=np.float32)
                piece = buffer[start : start + self.window_samples]
                last[: piece.size] = piece
                await send(next_window, last)
            buffer = np.zeros(0, dtype=np.float32)
            while pending:
                await asyncio.wait(set(pending))
            if failure:
                raise failure[0]
        finally:
            for task in list(pending):
                task.cancel()
        await report(total / SAMPLE_RATE, final=True)
        binary, embeddings = store.arrays(plan.num_windows)
        return WindowAnalysis(
            binary, embeddings, self.settings, total / SAMPLE_RATE, time.perf_counter() - t0
        )


async def _chunks(audio: Audio):
    """Yield the audio as 1-D chunks; a whole waveform is cut into pieces so progress is reported."""
    if isinstance(audio, np.ndarray):
        x = validate_waveform(audio)
        step = int(DEFAULT_CHUNK_SECONDS * SAMPLE_RATE)
        for start in range(0, x.size, step):
            yield x[start : start + step]
        return
    if hasattr(audio, "__aiter__"):
        async for chunk in audio:
            yield chunk
        return
    for chunk in audio:
        yield chunk
