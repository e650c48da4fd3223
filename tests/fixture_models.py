"""A Triton model repository that serves the trained fixtures: every model of ``model_repository/``
(vad, vad_stream, the trained ASR fixture as ``make models`` installs it, transcribe) linked as it
is, with segmentation and speaker_embedding from the trained diarization fixture (the cached
``pyannote_fixture`` export) instead of the random small models ``make models`` installs.
``model_repository/`` itself is not changed (tests rely on what it holds).

    python -m tests.fixture_models DEST     # assemble into DEST (replaced), print DEST

The diarization pipeline's parameters (``params.json``, ``plda.npz``, ``xvec_transform.npz``) are
in ``DEST/speaker_embedding/1`` (the api's ``DIARIZATION_PARAMS_DIR``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from speechlib.interfaces import SpeakerEmbedding
from tests.diarization_helpers import DIARIZATION_MODELS, MODEL_REPOSITORY, diarization_repository


def diarization_fixture_artifacts() -> Path:
    """The cached export of the trained diarization fixture; ``SourceMissing`` says how to build it."""
    from export_scripts.build import artifact_dir

    return artifact_dir("pyannote_fixture", cache_only=True)


def fixture_repository(dest: Path, artifacts: Path | None = None) -> Path:
    """Assemble the repository into the new folder ``dest``: diarization models copied from
    ``artifacts`` (default: the cached fixture export), every other model's files linked."""
    artifacts = artifacts if artifacts is not None else diarization_fixture_artifacts()
    diarization_repository(dest, artifacts)
    for src in sorted(p for p in MODEL_REPOSITORY.iterdir() if (p / "config.pbtxt").is_file()):
        if src.name in DIARIZATION_MODELS:
            continue
        (dest / src.name).mkdir()
        for item in src.iterdir():
            if item.name == "__pycache__":
                continue
            if item.name == "1":
                (dest / src.name / "1").mkdir()
                for f in item.iterdir():
                    if f.is_file():
                        (dest / src.name / "1" / f.name).symlink_to(f.resolve())
            else:
                (dest / src.name / item.name).symlink_to(item.resolve())
    return dest


def diarization_params_dir(repository: Path) -> Path:
    return repository / SpeakerEmbedding.NAME / "1"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dest = Path(argv[0]).resolve()
    from export_scripts.build import SourceMissing

    try:
        artifacts = diarization_fixture_artifacts()
    except SourceMissing as e:
        print(f"{e}; build it with `python -m export_scripts.build dev` (make models)", file=sys.stderr)
        return 2
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    print(fixture_repository(dest, artifacts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
