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
"""

from speechlib.diarization.aggregate import aggregate, global_frames, num_global_frames, speaker_count
from speechlib.diarization.clustering import (
    DEFAULT_MAX_EMBEDDINGS,
    ClusteringResult,
    agglomerative_clustering,
    assign_to_centroids,
    filter_embeddings,
    set_num_speakers,
    stratified_subsample,
    vbx_clustering,
)
from speechlib.diarization.masks import embedding_masks, inactive_speakers, min_num_frames
from speechlib.diarization.pipeline import DiarizationResult, PipelineSettings, assemble_diarization
from speechlib.diarization.plda import PLDA
from speechlib.diarization.powerset import powerset_mapping, powerset_to_multilabel
from speechlib.diarization.reconstruct import Diarization, reconstruct
from speechlib.diarization.turns import SpeakerTurn, assign_speakers
from speechlib.diarization.vbx import cluster_vbx, vbx
from speechlib.diarization.windows import (
    FRAMES_PER_WINDOW,
    FrameGrid,
    WindowPlan,
    num_frames_per_window,
    plan_windows,
    segmentation_frames,
)

__all__ = [
    "DEFAULT_MAX_EMBEDDINGS",
    "FRAMES_PER_WINDOW",
    "PLDA",
    "PipelineSettings",
    "ClusteringResult",
    "Diarization",
    "DiarizationResult",
    "FrameGrid",
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
    "vbx",
    "vbx_clustering",
]
