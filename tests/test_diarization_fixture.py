"""The trained tiny diarization fixture (tests/fixtures/diarization/) recovers held-out meetings' turns.

pyannote.audio's OWN ``SpeakerDiarization`` (``export_scripts.reference_diarization``, export
environment) runs on the fixture's dev model (``pyannote_dev --variant fixture``) over held-out
synthetic meetings (tests/meetings.py: held-out sentences, seeds the training never used); DER is
pyannote.metrics' ``DiarizationErrorRate`` (no collar, overlaps scored), computed in the export
environment. Serving environment::

    .envs/serve/bin/python -m pytest tests/test_diarization_fixture.py

Also usable as a report (2/3/4-speaker DERs)::

    .envs/serve/bin/python -m tests.test_diarization_fixture [--model-dir DIR]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from export_scripts.common import EXPORT_PYTHON

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "diarization"
FIXTURE_FILES = ("fixture.npz", "fixture.json")
HELDOUT_SEEDS = (101, 102, 103)  # the training never composes meetings from tests/meetings.py seeds
MAX_DER_2SPK = 0.05


# Runs in the export environment: reference npz (reference_diarization) + reference turns -> DERs.
_DER_SCRIPT = r"""
import json, sys
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate
from export_scripts.reference_diarization import load
records = load(sys.argv[1])
refs = json.loads(open(sys.argv[2]).read())
out = []
for rec, turns in zip(records, refs):
    ref, hyp = Annotation(), Annotation()
    for i, (s, e, spk) in enumerate(turns):
        ref[Segment(s, e), i] = spk
    for i, (s, e, k) in enumerate(rec["diarization"].reshape(-1, 3)):
        hyp[Segment(float(s), float(e)), i] = rec["labels"][int(k)]
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    out.append({"der": float(metric(ref, hyp, uem=Segment(0, rec["duration"]))),
                "speakers": len(rec["labels"])})
print(json.dumps(out))
"""


def pyannote_ders(model_dir: Path, meetings: list[tuple[Path, list]], workdir: Path) -> list[dict]:
    """pyannote's pipeline on ``meetings`` with the models of ``model_dir``; DER of each (pyannote.metrics)."""
    out = workdir / "reference.npz"
    subprocess.run(
        [
            str(EXPORT_PYTHON),
            "-m",
            "export_scripts.reference_diarization",
            "--model-dir",
            str(model_dir),
            "--out",
            str(out),
            *[str(w) for w, _ in meetings],
        ],
        check=True,
        cwd=REPO_ROOT,
    )
    refs = workdir / "turns.json"
    refs.write_text(json.dumps([turns for _, turns in meetings]))
    res = subprocess.run(
        [str(EXPORT_PYTHON), "-c", _DER_SCRIPT, str(out), str(refs)],
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def fixture_source() -> Path:
    """The hub-layout dev model built from the committed fixture (cached by export_scripts.build)."""
    from export_scripts.build import ARTIFACTS, dev_source
    from export_scripts.common import default_cache_root

    art = next(a for a in ARTIFACTS if a.name == "pyannote_fixture")
    return dev_source(art, default_cache_root() / "models")


def test_fixture_files_within_2mb():
    files = [p for p in FIXTURE_DIR.rglob("*") if p.is_file()] if FIXTURE_DIR.is_dir() else []
    assert sum(p.stat().st_size for p in files) <= 2 * 1024 * 1024


@pytest.mark.export
@pytest.mark.slow
def test_fixture_recovers_heldout_two_speaker_meetings(tmp_path):
    from tests.meetings import synthetic_meeting

    meetings = [synthetic_meeting(2, 60.0, seed=s) for s in HELDOUT_SEEDS[:2]]
    results = pyannote_ders(fixture_source(), meetings, tmp_path)
    for (wav, _), r in zip(meetings, results, strict=False):
        assert r["der"] <= MAX_DER_2SPK, f"{wav.name}: DER {r['der']:.3f} > {MAX_DER_2SPK} ({r})"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tests.meetings import synthetic_meeting

    p = argparse.ArgumentParser(description="DER of the fixture on held-out 2/3/4-speaker meetings")
    p.add_argument("--model-dir", type=Path, default=None, help="hub-layout folder (default: the fixture's)")
    p.add_argument("--speakers", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=list(HELDOUT_SEEDS))
    args = p.parse_args(argv)
    model_dir = args.model_dir or fixture_source()
    meetings, names = [], []
    for n in args.speakers:
        for s in args.seeds:
            meetings.append(synthetic_meeting(n, 60.0, seed=s))
            names.append((n, s))
    with tempfile.TemporaryDirectory() as d:
        results = pyannote_ders(model_dir, meetings, Path(d))
    for (n, s), r in zip(names, results, strict=False):
        print(f"{n} speakers seed {s}: DER {100 * r['der']:.1f} % ({r['speakers']} found)")
    for n in args.speakers:
        ders = [r["der"] for (k, _), r in zip(names, results, strict=False) if k == n]
        print(f"{n} speakers: mean DER {100 * sum(ders) / len(ders):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
