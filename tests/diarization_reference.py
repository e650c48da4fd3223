"""Reference outputs of pyannote.audio 4.0.7 for tests/test_diarization_math.py (export environment).

    .envs/export/bin/python tests/diarization_reference.py INPUT.npz PLDA_DIR OUTPUT.npz

INPUT.npz holds ``powerset`` (B, F, 7) scores, ``agg_scores`` (C, F, K) window scores (with NaN), and
scenarios ``s{i}_scores`` (C, 589, 7) powerset scores, ``s{i}_emb`` (C, 3, D) float32 embeddings,
``s{i}_cfg`` (JSON: clustering, num/min/max speakers, min_duration_off, threshold, exclude_overlap),
``s{i}_num_samples``. PLDA_DIR holds xvec_transform.npz + plda.npz.

Each scenario runs pyannote's own ``SpeakerDiarization.apply`` with in-memory random-weight models
whose two neural steps are replaced: ``get_segmentations`` returns the hard powerset conversion of
the given scores, and the embedding model returns the given embeddings (recording the masks
pyannote pools them with). Everything after (counting, masks, clustering, reconstruction,
binarisation, labels) is pyannote's code. Where its speaker selection was arbitrary (tied
activations) is recorded from inside that code (``export_scripts.reference_diarization.record_selection``):
``s{i}_tied`` / ``s{i}_xtied`` per output frame, ``s{i}_tied_grid`` = (start, step, duration) s.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from pyannote.audio.core.inference import Inference  # noqa: E402
from pyannote.audio.core.plda import PLDA  # noqa: E402
from pyannote.audio.core.task import Problem, Resolution, Specifications  # noqa: E402
from pyannote.audio.models.embedding import WeSpeakerResNet34  # noqa: E402
from pyannote.audio.models.segmentation import PyanNet  # noqa: E402
from pyannote.audio.pipelines import SpeakerDiarization  # noqa: E402
from pyannote.audio.utils.powerset import Powerset  # noqa: E402
from pyannote.core import SlidingWindow, SlidingWindowFeature  # noqa: E402

from export_scripts.reference_diarization import record_selection  # noqa: E402


class FakeEmbedding:
    """Stands in for PretrainedSpeakerEmbedding: returns precomputed rows in call order."""

    sample_rate = 16000
    min_num_samples = 400
    metric = "cosine"

    def __init__(self, embeddings: np.ndarray):
        self.rows = embeddings.reshape(-1, embeddings.shape[-1])
        self.dimension = embeddings.shape[-1]
        self.i = 0
        self.masks = []

    def __call__(self, waveforms, masks=None):
        n = waveforms.shape[0]
        self.masks.append(masks.numpy().copy())
        out = self.rows[self.i : self.i + n]
        self.i += n
        return out.copy()


def build_pipeline(plda_dir: str, clustering: str) -> SpeakerDiarization:
    seg = PyanNet(sincnet={"stride": 10})
    seg.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        classes=["a", "b", "c"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    seg.build()
    plda = PLDA(f"{plda_dir}/xvec_transform.npz", f"{plda_dir}/plda.npz")
    return SpeakerDiarization(
        segmentation=seg,
        embedding=WeSpeakerResNet34(),
        plda=plda,
        clustering=clustering,
        embedding_batch_size=64,
    )


def turns_array(annotation, names):
    rows = []
    for seg, _, label in annotation.itertracks(yield_label=True):
        rows.append([seg.start, seg.end, names.index(label)])
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def main(inp: str, plda_dir: str, out: str) -> None:
    data = dict(np.load(inp))
    res: dict[str, np.ndarray] = {}
    ps = Powerset(3, 2)
    res["multilabel"] = ps.to_multilabel(torch.from_numpy(data["powerset"])).numpy()

    agg = data["agg_scores"]
    chunks = SlidingWindow(start=0.0, duration=10.0, step=1.0)
    frames = SlidingWindow(start=0.0, duration=0.0619375, step=0.016875)
    for name, kw in {
        "plain": dict(),
        "hamming": dict(hamming=True, missing=0.0),
        "warm": dict(hamming=True, warm_up=(0.5, 1.0)),
        "sum": dict(skip_average=True, missing=0.0),
    }.items():
        res[f"agg_{name}"] = Inference.aggregate(SlidingWindowFeature(agg.copy(), chunks), frames, **kw).data

    plda = PLDA(f"{plda_dir}/xvec_transform.npz", f"{plda_dir}/plda.npz")
    res["plda_fea"] = plda(data["plda_in"])
    res["plda_phi"] = plda.phi

    i = 0
    while f"s{i}_scores" in data:
        cfg = json.loads(str(data[f"s{i}_cfg"]))
        pipe = build_pipeline(plda_dir, cfg["clustering"])
        params = {"segmentation": {"min_duration_off": cfg["min_duration_off"]}}
        if cfg["clustering"] == "VBxClustering":
            params["clustering"] = {"threshold": cfg.get("threshold", 0.6), "Fa": 0.07, "Fb": 0.8}
        else:
            params["clustering"] = {
                "method": "centroid",
                "threshold": cfg.get("threshold", 0.7045654963945799),
                "min_cluster_size": 12,
            }
        pipe.instantiate(params)
        pipe.embedding_exclude_overlap = cfg["exclude_overlap"]
        binary = ps.to_multilabel(torch.from_numpy(data[f"s{i}_scores"])).numpy()
        pipe.get_segmentations = lambda file, hook=None, b=binary: SlidingWindowFeature(
            b.copy(), SlidingWindow(start=0.0, duration=10.0, step=1.0)
        )
        fake = FakeEmbedding(data[f"s{i}_emb"])
        pipe._embedding = fake
        recorded = {}
        original = pipe.clustering.__call__

        def spy(*args, _orig=original, recorded=recorded, **kwargs):
            hard, soft, centroids = _orig(*args, **kwargs)
            recorded["hard"] = np.array(hard, copy=True)
            recorded["centroids"] = np.array(centroids, copy=True)
            return hard, soft, centroids

        count_rec = {}
        orig_count = pipe.speaker_count

        def count_spy(*a, _o=orig_count, count_rec=count_rec, **k):
            c = _o(*a, **k)
            count_rec["count"] = np.array(c.data, copy=True)
            return c

        pipe.speaker_count = count_spy
        selections: list = []
        record_selection(pipe, selections)
        file = {
            "waveform": torch.zeros(1, int(data[f"s{i}_num_samples"])),
            "sample_rate": 16000,
            "uri": f"s{i}",
        }
        # route the pipeline's call through the spy (instances use the class' __call__)
        klass = type(pipe.clustering)
        klass_call = klass.__call__
        klass.__call__ = (
            lambda self, *a, _p=pipe, _c=klass_call, _s=spy, **k: _s(*a, **k)
            if self is _p.clustering
            else _c(self, *a, **k)
        )
        try:
            output = pipe.apply(
                file,
                num_speakers=cfg.get("num_speakers"),
                min_speakers=cfg.get("min_speakers"),
                max_speakers=cfg.get("max_speakers"),
            )
        finally:
            klass.__call__ = klass_call
        names = sorted(output.speaker_diarization.labels())
        res[f"s{i}_names"] = np.array(names)
        res[f"s{i}_turns"] = turns_array(output.speaker_diarization, names)
        res[f"s{i}_xturns"] = turns_array(output.exclusive_speaker_diarization, names)
        res[f"s{i}_count"] = count_rec.get("count", np.zeros((0, 1)))
        if selections:  # regular, then exclusive
            res[f"s{i}_tied"], res[f"s{i}_xtied"] = selections[0]["tied"], selections[1]["tied"]
            res[f"s{i}_tied_grid"] = np.array([selections[0][k] for k in ("start", "step", "duration")])
        if "hard" in recorded:
            res[f"s{i}_hard"] = recorded["hard"]
            res[f"s{i}_centroids"] = recorded["centroids"]
        if fake.masks:
            res[f"s{i}_masks"] = np.concatenate(fake.masks).reshape(binary.shape[0], binary.shape[2], -1)
        res[f"s{i}_embeddings_out"] = np.asarray(output.speaker_embeddings)
        i += 1
    np.savez(out, **res)


if __name__ == "__main__":
    main(*sys.argv[1:4])
