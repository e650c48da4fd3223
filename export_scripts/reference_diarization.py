"""Reference outputs of pyannote.audio's own ``SpeakerDiarization`` for parity tests (export env).

    python -m export_scripts.reference_diarization --model-dir DIR --out result.npz|result.json
        [--num-speakers N] [--min-speakers N] [--max-speakers N] WAV [WAV ...]

``DIR`` is a model folder in the community-1 hub layout (``pyannote_dev`` builds them). The pipeline
runs with in-memory models (``pyannote_export.load_pipeline``: the folder's config.yaml parameters)
on in-memory 16 kHz waveforms. Everything it computes is recorded per file, with no re-computation
of our own: the raw powerset scores are captured from the segmentation model's forward calls, the
rest from the pipeline's hooks and its clustering call. Schema: docs/diarization-export.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ["PYANNOTE_METRICS_ENABLED"] = "false"


def _record_clustering(pipeline, store: dict) -> None:
    """Make ``pipeline.clustering(...)`` also store its inputs' filter and its outputs (into the
    ``store`` of the latest call: a pipeline run several times is wrapped once)."""
    base = type(pipeline.clustering)
    if getattr(base, "recording_into", None) is not None:
        base.recording_into = store
        return

    class Recording(base):
        recording_into: dict = store

        def __call__(self, embeddings, segmentations=None, **kwargs):
            hard, soft, centroids = base.__call__(self, embeddings, segmentations=segmentations, **kwargs)
            _, chunk_idx, speaker_idx = self.filter_embeddings(embeddings, segmentations=segmentations)
            out = type(self).recording_into
            out["hard_clusters"] = hard.copy()
            out["soft_clusters"] = soft.copy()
            out["centroids"] = None if centroids is None else centroids.copy()
            out["train_chunk_idx"] = chunk_idx
            out["train_speaker_idx"] = speaker_idx
            return hard, soft, centroids

    Recording.__name__ = base.__name__
    pipeline.clustering.__class__ = Recording


def record_selection(pipeline, calls: list) -> None:
    """Make ``pipeline.to_diarization`` (called once for the regular and once for the exclusive
    diarization) record, per call, where its choice of speakers was arbitrary: frames whose
    ``count``-th and next most active clusters have equal activation (pyannote picks among them with
    numpy's unstable argsort, an order that depends on the numpy build and the CPU). Decided on
    pyannote's own numbers: the activations its ``Inference.aggregate`` returns inside that call and
    the count it is given, on the frames of its output. Each call appends ``{"tied": bool per output
    frame, "count": int per output frame, "start", "step", "duration"}`` (the output frames' sliding
    window, seconds)."""
    import numpy as np
    from pyannote.audio.core.inference import Inference

    original = pipeline.to_diarization
    aggregate = Inference.__dict__["aggregate"]  # the staticmethod object itself

    def spy(segmentations, count, *args, **kwargs):
        seen: list = []

        def recording(*a, **k):
            out = aggregate.__func__(*a, **k)
            seen.append(out)
            return out

        Inference.aggregate = staticmethod(recording)
        try:
            binary = original(segmentations, count, *args, **kwargs)
        finally:
            Inference.aggregate = aggregate
        if len(seen) != 1:
            raise RuntimeError(
                f"to_diarization aggregated {len(seen)} times; expected once (pyannote changed?)"
            )
        act, out_sw, count_sw = seen[0], binary.sliding_window, count.sliding_window
        n = binary.data.shape[0]

        def rows(sw_start: float) -> np.ndarray:  # indices of the output frames in a window starting there
            return np.round((out_sw.start - sw_start) / out_sw.step).astype(int) + np.arange(n)

        a = np.nan_to_num(np.asarray(act.data, np.float64))[rows(act.sliding_window.start)]
        c = np.asarray(count.data).reshape(-1)[rows(count_sw.start)].astype(np.int64)
        width = max(a.shape[1], int(c.max(initial=0)))  # pyannote pads silent clusters up to the count
        vals = -np.sort(-np.pad(a, ((0, 0), (0, width - a.shape[1]))), axis=1)
        vals = np.pad(vals, ((0, 0), (0, 1)), constant_values=-np.inf)  # no next cluster: no tie
        r = np.arange(n)
        tied = (c > 0) & (vals[r, np.maximum(c - 1, 0)] == vals[r, c])
        calls.append(
            {
                "tied": tied,
                "count": c,
                "start": float(out_sw.start),
                "step": float(out_sw.step),
                "duration": float(out_sw.duration),
            }
        )
        return binary

    pipeline.__dict__["to_diarization"] = spy  # an instance attribute; pyannote's Pipeline hooks bypassed


def diarize_file(pipeline, wav: Path, num_speakers=None, min_speakers=None, max_speakers=None) -> dict:
    import numpy as np
    import torch

    from export_scripts.pyannote_export import read_wav

    audio = read_wav(wav)
    seg_model = pipeline._segmentation.model
    raw: list = []
    handle = seg_model.register_forward_hook(lambda m, i, o: raw.append(o.detach().cpu().numpy()))
    steps: dict = {}

    def hook(name, artefact, file=None, total=None, completed=None):
        if completed is None and artefact is not None:
            steps[name] = artefact

    clus: dict = {}
    _record_clustering(pipeline, clus)
    selections: list = []
    record_selection(pipeline, selections)
    try:
        out = pipeline(
            {"waveform": torch.from_numpy(audio)[None], "sample_rate": 16000, "uri": wav.stem},
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            hook=hook,
        )
    finally:
        handle.remove()
        pipeline.__dict__.pop("to_diarization", None)  # back to the class's method

    def turns(annotation):
        labels = sorted(annotation.labels())
        rows = [(s.start, s.end, labels.index(lab)) for s, _, lab in annotation.itertracks(yield_label=True)]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return arr, labels

    dia, dia_labels = turns(out.speaker_diarization)
    exc, exc_labels = turns(out.exclusive_speaker_diarization)
    seg = steps["segmentation"]
    rec: dict = {
        "wav": str(wav),
        "duration": len(audio) / 16000,
        # (a SlidingWindow iterates forever: index it)
        "window_start": np.array([seg.sliding_window[i].start for i in range(seg.data.shape[0])], np.float64),
        "window_duration": float(seg.sliding_window.duration),
        "window_step": float(seg.sliding_window.step),
        "frames_start": float(pipeline._segmentation.model.receptive_field.start),
        "frames_duration": float(pipeline._segmentation.model.receptive_field.duration),
        "frames_step": float(pipeline._segmentation.model.receptive_field.step),
        "scores": np.concatenate(raw).astype(np.float32) if raw else np.zeros((0, 0, 0), np.float32),
        "segmentations": np.asarray(seg.data, np.float32),
        "labels": dia_labels,
        "diarization": dia,
        "exclusive_diarization": exc,
        "num_speakers": -1 if num_speakers is None else int(num_speakers),
        "min_speakers": -1 if min_speakers is None else int(min_speakers),
        "max_speakers": -1 if max_speakers is None else int(max_speakers),
    }
    if len(selections) == 2:  # regular, then exclusive (count capped at 1)
        for key, sel in zip(("tied", "exclusive_tied"), selections, strict=True):
            rec[key] = sel["tied"]
        rec["tied_start"], rec["tied_step"] = selections[0]["start"], selections[0]["step"]
        rec["tied_duration"] = selections[0]["duration"]
    if exc_labels != dia_labels:
        rec["exclusive_labels"] = exc_labels
    if "speaker_counting" in steps:
        count = steps["speaker_counting"]
        rec["count"] = np.asarray(count.data, np.float32).reshape(-1)
        rec["count_start"] = float(count.sliding_window.start)
        rec["count_step"] = float(count.sliding_window.step)
        rec["count_duration"] = float(count.sliding_window.duration)
    if "embeddings" in steps:
        rec["embeddings"] = np.asarray(steps["embeddings"], np.float32)
    if clus:
        rec["hard_clusters"] = np.asarray(clus["hard_clusters"], np.int64)  # before inactive -> -2
        rec["soft_clusters"] = np.asarray(clus["soft_clusters"], np.float64)
        if clus["centroids"] is not None:
            rec["centroids"] = np.asarray(clus["centroids"], np.float64)
        rec["train_chunk_idx"] = np.asarray(clus["train_chunk_idx"], np.int64)
        rec["train_speaker_idx"] = np.asarray(clus["train_speaker_idx"], np.int64)
    if out.speaker_embeddings is not None:
        rec["speaker_embeddings"] = np.asarray(out.speaker_embeddings, np.float64)
    if "discrete_diarization" in steps:
        rec["discrete_diarization"] = np.asarray(steps["discrete_diarization"].data, np.int8)
    if rec["scores"].shape[:1] != rec["segmentations"].shape[:1]:
        raise RuntimeError(
            f"captured {rec['scores'].shape} scores for {rec['segmentations'].shape} segmentations"
        )
    return rec


def save(records: list[dict], out: Path, meta: dict) -> None:
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":

        def js(v):
            if isinstance(v, np.ndarray):
                if v.dtype.kind == "f":
                    return (
                        [js(x) for x in v] if v.ndim > 1 else [None if np.isnan(x) else float(x) for x in v]
                    )
                return v.tolist()
            return v

        doc = {"meta": meta, "files": [{k: js(v) for k, v in r.items()} for r in records]}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, out)
        return
    arrays = {"meta": np.array(json.dumps(meta)), "num_files": np.array(len(records))}
    for i, r in enumerate(records):
        for k, v in r.items():
            arrays[f"f{i}.{k}"] = np.array(json.dumps(v)) if isinstance(v, list) else np.asarray(v)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)


def load(path: Path) -> list[dict]:
    """Read a reference file back (npz or json) as a list of per-file dicts of numpy arrays."""
    import numpy as np

    path = Path(path)
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        return [
            {
                k: (
                    np.array(v, dtype=float)
                    if isinstance(v, list) and k not in ("labels", "exclusive_labels")
                    else v
                )
                for k, v in f.items()
            }
            for f in doc["files"]
        ]
    data = np.load(path)
    out = []
    for i in range(int(data["num_files"])):
        rec = {}
        for key in data.files:
            if key.startswith(f"f{i}."):
                v = data[key]
                name = key[len(f"f{i}.") :]
                rec[name] = (
                    json.loads(str(v))
                    if name in ("labels", "exclusive_labels")
                    else (v.item() if v.ndim == 0 else v)
                )
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.reference_diarization", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="result.npz or result.json")
    p.add_argument("--num-speakers", type=int, default=None)
    p.add_argument("--min-speakers", type=int, default=None)
    p.add_argument("--max-speakers", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("wavs", nargs="+", type=Path)
    args = p.parse_args(argv)
    if args.out.suffix not in (".npz", ".json"):
        p.error("--out must end in .npz or .json")
    warnings.filterwarnings("ignore")
    import pyannote.audio
    import torch

    from export_scripts.pyannote_export import load_pipeline

    torch.set_num_threads(args.threads)
    pipeline = load_pipeline(args.model_dir)
    records = []
    for wav in args.wavs:
        records.append(diarize_file(pipeline, wav, args.num_speakers, args.min_speakers, args.max_speakers))
        r = records[-1]
        print(
            f"{wav.name}: {len(r['labels'])} speakers, {len(r['diarization'])} turns, "
            f"{r['segmentations'].shape[0]} windows",
            file=sys.stderr,
        )
    meta = {
        "model_dir": str(args.model_dir),
        "pyannote.audio": pyannote.audio.__version__,
        "torch": torch.__version__,
        "pipeline_params": pipeline.parameters(instantiated=True),
    }
    save(records, args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
