"""Pure-numpy speaker diarization math (pyannote.audio 4.0.7 ``speaker-diarization-community-1``):
powerset decoding, sliding windows, embedding masks, PLDA + VBx / agglomerative clustering,
reconstruction into speaker turns, word/segment → speaker alignment.

Typical flow (the client orchestrates the neural models on Triton):

    plan = plan_windows(len(audio))                          # 10 s windows, 1 s step
    seg = powerset_to_multilabel(scores)                      # (W, 589, 7) → (W, 589, 3)
    masks = embedding_masks(seg)                              # (W, 3, 589) pooling masks
    skip = inactive_speakers(seg)                             # (W, 3): no embedding (NaN)
    settings = PipelineSettings.from_dir(export_dir)          # params.json + PLDA of the export
    result = assemble_diarization(seg, embeddings, settings, duration_s, num_speakers=...)
    speakers = assign_speakers(asr_segments, result.exclusive_turns)

The numpy-only parts are imported here; those that need scipy / scikit-learn (clustering, PLDA, VBx,
the pipeline) load on first use (PEP 562), so speaker assignment (``turns``: the transcript record,
the live agent) does not pull them in. (``vbx``, the function, is not re-exported: its module has the
same name and would shadow it once loaded; use ``cluster_vbx`` or ``speechlib.diarization.vbx.vbx``.)
"""

from __future__ import annotations

import importlib
from typing import Any

from speechlib.diarization.aggregate import aggregate, global_frames, num_global_frames, speaker_count
from speechlib.diarization.masks import embedding_masks, inactive_speakers, min_num_frames
from speechlib.diarization.powerset import powerset_mapping, powerset_to_multilabel
from speechlib.diarization.reconstruct import Diarization, reconstruct
from speechlib.diarization.turns import SpeakerTurn, assign_speakers
from speechlib.diarization.windows import (
    FRAMES_PER_WINDOW,
    FrameGrid,
    WindowPlan,
    num_frames_per_window,
    plan_windows,
    segmentation_frames,
)

_LAZY = {  # submodule -> the names it exports here, imported on first use
    "clustering": (
        "DEFAULT_MAX_EMBEDDINGS",
        "ClusteringResult",
        "agglomerative_clustering",
        "assign_to_centroids",
        "filter_embeddings",
        "set_num_speakers",
        "stratified_subsample",
        "vbx_clustering",
    ),
    "pipeline": ("DiarizationResult", "PipelineSettings", "assemble_diarization"),
    "plda": ("PLDA",),
    "vbx": ("cluster_vbx",),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}
__all__ = [  # noqa: RUF022 - the numpy-only names, then the lazy ones (_LAZY)
    "ClusteringResult",
    "DEFAULT_MAX_EMBEDDINGS",
    "Diarization",
    "DiarizationResult",
    "FRAMES_PER_WINDOW",
    "FrameGrid",
    "PLDA",
    "PipelineSettings",
    "SpeakerTurn",
    "WindowPlan",
    "agglomerative_clustering",
    "aggregate",
    "assemble_diarization",
    "assign_speakers",
    "assign_to_centroids",
    "cluster_vbx",
    "embedding_masks",
    "filter_embeddings",
    "global_frames",
    "inactive_speakers",
    "min_num_frames",
    "num_frames_per_window",
    "num_global_frames",
    "plan_windows",
    "powerset_mapping",
    "powerset_to_multilabel",
    "reconstruct",
    "segmentation_frames",
    "set_num_speakers",
    "speaker_count",
    "stratified_subsample",
    "vbx_clustering",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
