"""Helpers shared by the diarization tests and ``bench/diarization_*.py``: a diarization-only model
repository, one diarization call through the client, turns as tuples, and the frame-based DER used to
compare two diarizations.

DER here is :func:`frame_der`: 10 ms frames, optimal one-to-one speaker mapping, no collar,
overlaps scored — (missed + false alarm + confusion) / reference speech, as pyannote.metrics
computes it up to frame rounding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from speechlib.interfaces import SAMPLE_RATE, Segmentation, SpeakerEmbedding

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
DIARIZATION_MODELS = (Segmentation.NAME, SpeakerEmbedding.NAME)

Turn = tuple[float, float, str]  # start_s, end_s, speaker


def frame_der(reference: list[Turn], hypothesis: list[Turn], step: float = 0.01) -> float:
    """Frame-based diarization error rate of ``hypothesis`` against ``reference``, both lists of
    ``(start_s, end_s, speaker)``: (missed + false alarm + confusion) / reference speech, with the
    one-to-one speaker mapping that maximises agreement (Hungarian), no collar, overlaps scored."""
    end = max([e for _, e, _ in reference] + [e for _, e, _ in hypothesis] + [0.0])
    n = int(np.ceil(end / step)) + 1

    def matrix(turns):
        labels = sorted({s for _, _, s in turns})
        m = np.zeros((n, len(labels)), dtype=bool)
        for s, e, spk in turns:
            m[int(round(s / step)) : int(round(e / step)), labels.index(spk)] = True
        return m

    ref, hyp = matrix(reference), matrix(hypothesis)
    total = ref.sum()
    if total == 0:
        return 0.0 if hyp.sum() == 0 else 1.0
    correct = 0
    if ref.shape[1] and hyp.shape[1]:
        overlap = ref.T.astype(np.int64) @ hyp.astype(np.int64)
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        correct = overlap[rows, cols].sum()
    errors = np.maximum(ref.sum(axis=1), hyp.sum(axis=1)).sum() - correct
    return float(errors / total)


def as_tuples(turns) -> list[Turn]:
    """:class:`SpeakerTurn` s as ``(start_s, end_s, speaker)``."""
    return [(t.start_s, t.end_s, t.speaker) for t in turns]


def windows_of(waveform: np.ndarray) -> np.ndarray:
    """pyannote's sliding windows (10 s, 1 s step, last one zero-padded) as [N, 1, 160000]."""
    from speechlib.diarization.windows import plan_windows

    plan = plan_windows(len(waveform), SAMPLE_RATE)
    return np.stack([plan.window(waveform, k) for k in range(plan.num_windows)])[:, None, :]


def trained_fixture_artifacts() -> Path:
    """The built export of the trained diarization fixture (``pyannote_fixture``); the test fails,
    saying how to build it, when the cache does not hold it."""
    import pytest

    from export_scripts.build import SourceMissing, artifact_dir

    try:
        return artifact_dir("pyannote_fixture", cache_only=True)
    except SourceMissing as e:
        pytest.fail(
            f"{e}; build it with `python -m export_scripts.build dev --only pyannote_fixture`", pytrace=False
        )


def diarization_repository(dest: Path, artifacts: Path | None = None) -> Path:
    """A model repository with only our two models: configs and model.py from model_repository/,
    version files from ``artifacts`` (an export folder) or from the installed models."""
    for model in DIARIZATION_MODELS:
        src = MODEL_REPOSITORY / model
        (dest / model / "1").mkdir(parents=True)
        shutil.copy2(src / "config.pbtxt", dest / model / "config.pbtxt")
        shutil.copytree(src / "configs", dest / model / "configs")
        files = artifacts if artifacts is not None else src / "1"
        for f in files.iterdir():
            if f.is_file() and f.name != "model.py":
                shutil.copy2(f, dest / model / "1" / f.name)
        shutil.copy2(src / "1" / "model.py", dest / model / "1" / "model.py")
    return dest


async def diarize_with(url: str, settings, audio, *, max_in_flight: int = 32, **kw):
    """One diarization of ``audio`` through a fresh client of the server at ``url`` (gRPC)."""
    from inference_client import TritonClient
    from inference_client.diarization import DiarizationClient

    async with TritonClient(url, max_in_flight=max_in_flight) as client:
        return await DiarizationClient(client, settings).diarize(audio, **kw)


def meeting_sources() -> list[np.ndarray]:
    """pyannote's sample.wav and synthetic 2/3/4-speaker meetings (the pieces long files are tiled from)."""
    from inference_client.audio import decode_audio
    from tests.audio import pyannote_sample
    from tests.meetings import synthetic_meeting

    meetings = [decode_audio(synthetic_meeting(n, seconds=60.0, seed=200 + n)[0]) for n in (2, 3, 4)]
    return [decode_audio(pyannote_sample()[0]), *meetings]
