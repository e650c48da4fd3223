"""The global part of diarization — speaker count, clustering, reconstruction into speaker turns —
as pyannote 4.0.7's ``SpeakerDiarization.apply`` does it after its two neural networks. One pipeline:
``inference_client.diarization`` runs the networks on Triton and calls :func:`assemble_diarization`;
the parity tests against pyannote check this same function stage by stage.

One parameters record, :class:`PipelineSettings`, read from the ``params.json`` the model export
writes (``export_scripts/pyannote_export.py``; community-1's values as defaults) plus its PLDA.
Units: seconds for times and durations, frames of the segmentation model (≈ 17 ms) inside windows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechlib.diarization.aggregate import speaker_count
from speechlib.diarization.clustering import (
    AHC_METHOD,
    AHC_MIN_CLUSTER_SIZE,
    AHC_THRESHOLD,
    DEFAULT_MAX_EMBEDDINGS,
    VBX_FA,
    VBX_FB,
    VBX_THRESHOLD,
    agglomerative_clustering,
    set_num_speakers,
    vbx_clustering,
)
from speechlib.diarization.options import check_speaker_counts
from speechlib.diarization.plda import PLDA
from speechlib.diarization.reconstruct import Diarization, reconstruct
from speechlib.diarization.turns import SpeakerTurn
from speechlib.diarization.windows import FrameGrid, segmentation_frames
from speechlib.interfaces import SAMPLE_RATE, Segmentation

CLUSTERING_METHODS = ("vbx", "agglomerative")


@dataclass(frozen=True)
class PipelineSettings:
    """The pipeline's hyper-parameters (community-1's values as defaults) plus the PLDA for VBx.

    ``step_s``/``window_s``: sliding windows in seconds; ``min_duration_off``: gaps shorter than this
    (seconds) inside one speaker's turns are filled; ``exclude_overlap``: embedding masks leave out
    overlapped frames (unless too short, ``min_num_samples``); ``clustering``: ``"vbx"`` or
    ``"agglomerative"``, ``threshold`` of that method (None: its default, VBx 0.6, agglomerative
    0.7046); ``Fa``/``Fb``: VBx; ``ahc_method`` (scipy linkage) and ``min_cluster_size``: agglomerative.
    """

    step_s: float = 1.0
    window_s: float = 10.0
    num_frames: int = Segmentation.NUM_FRAMES
    num_classes: int = Segmentation.NUM_CLASSES
    local_speakers: int = 3
    max_speakers_per_frame: int = 2
    min_duration_off: float = 0.0
    exclude_overlap: bool = True
    min_num_samples: int = 400
    embedding_dimension: int = 256
    clustering: str = "vbx"
    threshold: float | None = None
    Fa: float = VBX_FA
    Fb: float = VBX_FB
    ahc_method: str = AHC_METHOD
    min_cluster_size: int = AHC_MIN_CLUSTER_SIZE
    lda_dimension: int = 128
    plda: PLDA | None = None

    @classmethod
    def from_dir(cls, directory: str | Path) -> PipelineSettings:
        """Read ``params.json`` (and ``plda.npz`` + ``xvec_transform.npz`` when present) from
        ``directory`` (an export folder, or the installed ``model_repository/speaker_embedding/1``)."""
        directory = Path(directory)
        path = directory / "params.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the diarization pipeline's parameters are installed by the model build "
                "(`make models`), or pass PipelineSettings(...) yourself"
            )
        p = json.loads(path.read_text())
        seg, emb, clu = p.get("segmentation", {}), p.get("embedding", {}), p.get("clustering", {})
        method = str(clu.get("method", "VBxClustering"))
        threshold = clu.get("threshold")
        lda = int(clu.get("plda_lda_dimension", 128))
        plda = None
        if (directory / "plda.npz").is_file() and (directory / "xvec_transform.npz").is_file():
            plda = PLDA.from_dir(directory, lda_dimension=lda)
        return cls(
            step_s=float(seg.get("step", 1.0)),
            window_s=float(seg.get("duration", 10.0)),
            num_frames=int(seg.get("num_frames", Segmentation.NUM_FRAMES)),
            num_classes=int(seg.get("num_classes", Segmentation.NUM_CLASSES)),
            local_speakers=int(seg.get("local_speakers", 3)),
            max_speakers_per_frame=int(seg.get("max_speakers_per_frame", 2)),
            min_duration_off=float(seg.get("min_duration_off", 0.0)),
            exclude_overlap=bool(emb.get("exclude_overlap", True)),
            min_num_samples=int(emb.get("min_num_samples", 400)),
            embedding_dimension=int(emb.get("dimension", 256)),
            clustering="agglomerative" if method.startswith("Agglomerative") else "vbx",
            threshold=None if threshold is None else float(threshold),
            Fa=float(clu.get("Fa", VBX_FA)),
            Fb=float(clu.get("Fb", VBX_FB)),
            ahc_method=str(clu.get("linkage_method", AHC_METHOD)),
            min_cluster_size=int(clu.get("min_cluster_size", AHC_MIN_CLUSTER_SIZE)),
            lda_dimension=lda,
            plda=plda,
        )

    @property
    def chunks(self) -> FrameGrid:
        """The window grid in seconds (start 0, ``step_s``, ``window_s``)."""
        return FrameGrid(start_s=0.0, step_s=self.step_s, duration_s=self.window_s)


@dataclass
class DiarizationResult(Diarization):
    """Who spoke when (:class:`Diarization`: ``turns`` with overlapping speech kept,
    ``exclusive_turns`` with one speaker at a time for aligning words, ``speakers``, ``centroids``;
    turns are :class:`SpeakerTurn` in seconds), plus how it was made."""

    duration_s: float = 0.0  # seconds of audio
    num_windows: int = 0
    num_embeddings: int = 0  # (window, local speaker) embeddings the models computed
    subsampled: bool = False  # clustering ran on a time-stratified subsample (above the cap)
    # (windows, local speakers) global cluster of each window's local speaker (-2: none), for diagnostics
    hard_clusters: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: inference, clustering


def assemble_diarization(
    binary: np.ndarray,
    embeddings: np.ndarray,
    settings: PipelineSettings,
    duration_s: float,
    *,
    method: str | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    max_embeddings: int | None = DEFAULT_MAX_EMBEDDINGS,
    clip_to_audio: bool = True,
) -> DiarizationResult:
    """Global part of the pipeline: speaker count, clustering, reconstruction into speaker turns.

    ``binary``: (windows, frames, local speakers) 0/1 hard segmentation (``powerset_to_multilabel``
    of each window's scores, windows laid out by ``windows.plan_windows``); ``embeddings``: (windows,
    local speakers, D) with NaN rows where skipped (``masks.inactive_speakers``); ``duration_s``:
    length of the audio in seconds. ``method``: ``"vbx"`` / ``"agglomerative"`` (default: the
    settings'). Above ``max_embeddings`` training embeddings the agglomerative step runs on a
    time-stratified subsample (None: always exact). ``clip_to_audio``: cut turns at the end of the
    audio (pyannote does not: its turns may run into the zero padding of the last window).
    """
    check_speaker_counts(num_speakers, min_speakers, max_speakers)
    method = clustering_method(method, settings)
    binary = np.asarray(binary)
    num_windows, dim = binary.shape[0], embeddings.shape[-1]
    chunks = settings.chunks
    frames = segmentation_frames(SAMPLE_RATE)
    computed = int((~np.isnan(embeddings).any(axis=2)).sum())
    info = {"duration_s": duration_s, "num_windows": num_windows, "num_embeddings": computed}
    count = speaker_count(binary, chunks, frames) if num_windows else np.zeros(0, np.uint8)
    if int(count.max(initial=0)) == 0:  # nobody ever speaks
        return DiarizationResult(centroids=np.zeros((0, dim)), **info)
    kw = dict(
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        max_embeddings=max_embeddings,
    )
    # params.json's threshold is its own method's; the other method (chosen per call) uses its default
    threshold = settings.threshold if method == settings.clustering else None
    if method == "vbx":
        clusters = vbx_clustering(
            embeddings,
            binary,
            settings.plda,
            threshold=VBX_THRESHOLD if threshold is None else threshold,
            Fa=settings.Fa,
            Fb=settings.Fb,
            **kw,
        )
    else:
        clusters = agglomerative_clustering(
            embeddings,
            binary,
            threshold=AHC_THRESHOLD if threshold is None else threshold,
            method=settings.ahc_method,
            min_cluster_size=settings.min_cluster_size,
            **kw,
        )
    _, _, high = set_num_speakers(num_speakers, min_speakers, max_speakers)
    out = reconstruct(
        binary,
        clusters.hard_clusters,
        count,
        chunks,
        frames,
        max_speakers=high,
        min_duration_off=settings.min_duration_off,
        centroids=clusters.centroids,
    )
    turns, exclusive = out.turns, out.exclusive_turns
    if clip_to_audio:
        turns, exclusive = clip_turns(turns, duration_s), clip_turns(exclusive, duration_s)
    return DiarizationResult(
        turns=turns,
        exclusive_turns=exclusive,
        speakers=out.speakers,
        clusters=out.clusters,
        centroids=out.centroids,
        subsampled=clusters.subsampled,
        hard_clusters=clusters.hard_clusters,
        **info,
    )


def clustering_method(clustering: str | None, settings: PipelineSettings) -> str:
    """The clustering method to use (``clustering`` or the settings' default), checked."""
    method = clustering or settings.clustering
    if method not in CLUSTERING_METHODS:
        raise ValueError(f"clustering must be one of {CLUSTERING_METHODS}, got {method!r}")
    if method == "vbx" and settings.plda is None:
        raise ValueError(
            "VBx clustering needs the PLDA (plda.npz + xvec_transform.npz); use clustering='agglomerative'"
        )
    return method


def clip_turns(turns: list[SpeakerTurn], end_s: float) -> list[SpeakerTurn]:
    """``turns`` cut at ``end_s`` seconds (those starting after it dropped)."""
    return [SpeakerTurn(t.start_s, min(t.end_s, end_s), t.speaker) for t in turns if t.start_s < end_s]
