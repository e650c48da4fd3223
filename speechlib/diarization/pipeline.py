"""Global diarization from window segmentations and embeddings (the math of pyannote 4.0.7's
``SpeakerDiarization.apply`` after the two neural networks)."""

from __future__ import annotations

from dataclasses import dataclass
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
    ClusteringResult,
    agglomerative_clustering,
    set_num_speakers,
    vbx_clustering,
)
from speechlib.diarization.plda import PLDA
from speechlib.diarization.reconstruct import Diarization, reconstruct
from speechlib.diarization.windows import (
    SEGMENTATION_STEP_RATIO,
    WINDOW_DURATION_S,
    FrameGrid,
    segmentation_frames,
)


@dataclass(frozen=True)
class DiarizationParams:
    """Pipeline hyper-parameters (community-1's defaults). ``clustering``: "vbx" or "agglomerative";
    ``threshold`` None = the method's default; ``min_duration_off`` in seconds;
    ``max_embeddings``: cap for exact clustering (None = always exact)."""

    clustering: str = "vbx"
    threshold: float | None = None
    Fa: float = VBX_FA
    Fb: float = VBX_FB
    ahc_method: str = AHC_METHOD
    min_cluster_size: int = AHC_MIN_CLUSTER_SIZE
    min_duration_off: float = 0.0
    exclude_overlap: bool = True
    max_embeddings: int | None = DEFAULT_MAX_EMBEDDINGS
    segmentation_step: float = SEGMENTATION_STEP_RATIO

    @classmethod
    def from_pyannote_config(cls, config: dict | str | Path, **overrides) -> DiarizationParams:
        """Parameters from a pyannote pipeline ``config.yaml`` (a path or its parsed dict):
        ``pipeline.params.{clustering, embedding_exclude_overlap, segmentation_step}`` and
        ``params.{clustering.{threshold, Fa, Fb, method, min_cluster_size}, segmentation.min_duration_off}``."""
        if not isinstance(config, dict):
            import yaml

            config = yaml.safe_load(Path(config).read_text())
        pipe = (config.get("pipeline") or {}).get("params") or {}
        tuned = config.get("params") or {}
        clus = tuned.get("clustering") or {}
        kw: dict = {}
        name = pipe.get("clustering", "VBxClustering")
        if name not in ("VBxClustering", "AgglomerativeClustering"):
            raise ValueError(f"unsupported clustering {name!r}")
        kw["clustering"] = "vbx" if name == "VBxClustering" else "agglomerative"
        if "threshold" in clus:
            kw["threshold"] = float(clus["threshold"])
        for key in ("Fa", "Fb"):
            if key in clus:
                kw[key] = float(clus[key])
        if "method" in clus:
            kw["ahc_method"] = str(clus["method"])
        if "min_cluster_size" in clus:
            kw["min_cluster_size"] = int(clus["min_cluster_size"])
        seg = tuned.get("segmentation") or {}
        if "min_duration_off" in seg:
            kw["min_duration_off"] = float(seg["min_duration_off"])
        if "embedding_exclude_overlap" in pipe:
            kw["exclude_overlap"] = bool(pipe["embedding_exclude_overlap"])
        if "segmentation_step" in pipe:
            kw["segmentation_step"] = float(pipe["segmentation_step"])
        kw.update(overrides)
        return cls(**kw)


def default_chunks(step_ratio: float = SEGMENTATION_STEP_RATIO) -> FrameGrid:
    """Window grid in seconds: start 0, step ``step_ratio`` × 10 s (1 s), duration 10 s."""
    return FrameGrid(0.0, step_ratio * WINDOW_DURATION_S, WINDOW_DURATION_S)


def cluster(
    binary_segmentations: np.ndarray,
    embeddings: np.ndarray,
    plda: PLDA | None = None,
    params: DiarizationParams | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> ClusteringResult:
    """Run the configured clustering (see clustering.py for shapes)."""
    params = params or DiarizationParams()
    if params.clustering == "vbx":
        if plda is None:
            raise ValueError("VBx clustering needs a PLDA")
        return vbx_clustering(
            embeddings,
            binary_segmentations,
            plda,
            threshold=VBX_THRESHOLD if params.threshold is None else params.threshold,
            Fa=params.Fa,
            Fb=params.Fb,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            max_embeddings=params.max_embeddings,
        )
    if params.clustering == "agglomerative":
        return agglomerative_clustering(
            embeddings,
            binary_segmentations,
            threshold=AHC_THRESHOLD if params.threshold is None else params.threshold,
            method=params.ahc_method,
            min_cluster_size=params.min_cluster_size,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            max_embeddings=params.max_embeddings,
        )
    raise ValueError(f"unknown clustering {params.clustering!r} (vbx or agglomerative)")


def diarize(
    binary_segmentations: np.ndarray,
    embeddings: np.ndarray,
    plda: PLDA | None = None,
    params: DiarizationParams | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    chunks: FrameGrid | None = None,
    frames: FrameGrid | None = None,
) -> Diarization:
    """Speaker turns of a whole file.

    binary_segmentations: (num_windows, 589, 3) 0/1 — ``powerset_to_multilabel`` of each window's
    scores, windows laid out by ``windows.plan_windows``; embeddings: (num_windows, 3, dim), NaN for
    inactive speakers (``masks.inactive_speakers``). ``chunks``/``frames`` default to community-1's
    grids (seconds). Returns :class:`Diarization` (turns in seconds).
    """
    params = params or DiarizationParams()
    chunks = chunks or default_chunks(params.segmentation_step)
    frames = frames or segmentation_frames()
    num_speakers, min_speakers, max_speakers = set_num_speakers(num_speakers, min_speakers, max_speakers)
    seg = np.asarray(binary_segmentations)
    if seg.shape[0] == 0:
        return Diarization()
    count = speaker_count(seg, chunks, frames)
    if np.max(count) == 0:
        return Diarization(centroids=np.zeros((0, embeddings.shape[-1])))
    result = cluster(
        seg,
        embeddings,
        plda,
        params,
        num_speakers,
        min_speakers,
        None if np.isinf(max_speakers) else int(max_speakers),
    )
    return reconstruct(
        seg,
        result.hard_clusters,
        count,
        chunks,
        frames,
        max_speakers=max_speakers,
        min_duration_off=params.min_duration_off,
        centroids=result.centroids,
    )
