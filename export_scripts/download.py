"""Download the real models from ModelScope (fallback: Hugging Face) into ``models/``.

    python -m export_scripts.download --all | --fsmn-vad [...] [--force] [--dest DIR] [--timeout S]

Runs in the export environment (``make download-models``), which has ``modelscope`` and
``huggingface_hub``. Each model is fetched into a temporary folder and moved to ``models/<folder>/``
only once its required files are there; an already complete folder is kept unless ``--force``.

Offline, it fails fast: each hub's host is probed first (DNS + TCP, ``--timeout`` seconds, default
5) and an unreachable hub is skipped without entering the hub library's retry loops. When no hub
delivers a model, it prints what it tried and how to place the files by hand, and exits 2.

The ``MODELS`` table is the one place to add a model: one ``HubModel`` per entry gives its CLI flag,
its folder under ``models/``, its hub ids and the files an exporter needs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from export_scripts.common import (
    FSMN_VAD_MODEL_ID,
    FSMN_VAD_OPTIONAL_FILES,
    FSMN_VAD_REQUIRED_FILES,
    REPO_ROOT,
    eprint,
    missing_files,
    replace_dir,
)

EXIT_UNAVAILABLE = 2


@dataclass(frozen=True)
class HubModel:
    key: str  # CLI flag --<key>
    folder: str  # models/<folder>/
    modelscope_id: str | None  # ModelScope model id (tried first)
    huggingface_id: str | None  # Hugging Face repo id (fallback)
    required: tuple[str, ...]  # must exist after download
    optional: tuple[str, ...] = ()  # fetched when the hub has them
    token_env: str | None = None  # environment variable holding a token (gated Hugging Face repos)
    description: str = ""

    @property
    def patterns(self) -> list[str]:
        return list(self.required + self.optional)


MODELS: tuple[HubModel, ...] = (
    HubModel(
        key="fsmn-vad",
        folder="fsmn-vad",
        modelscope_id=FSMN_VAD_MODEL_ID,
        huggingface_id="funasr/fsmn-vad",
        required=FSMN_VAD_REQUIRED_FILES,
        optional=FSMN_VAD_OPTIONAL_FILES,
        description="FunASR fsmn-VAD (vad, vad_stream)",
    ),
    HubModel(
        key="sensevoice-small",
        folder="SenseVoiceSmall",
        modelscope_id="iic/SenseVoiceSmall",
        huggingface_id="FunAudioLLM/SenseVoiceSmall",
        required=("model.pt", "config.yaml", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model"),
        optional=("configuration.json",),
        description="FunASR SenseVoiceSmall (asr)",
    ),
    # Later issues add e.g.:
    HubModel(
        key="pyannote",
        folder="speaker-diarization-community-1",
        modelscope_id=None,
        huggingface_id="pyannote/speaker-diarization-community-1",
        required=(
            "config.yaml",
            "segmentation/pytorch_model.bin",
            "embedding/pytorch_model.bin",
            "plda/xvec_transform.npz",
            "plda/plda.npz",
        ),
        token_env="HF_TOKEN",  # gated: accept the conditions on Hugging Face, then export HF_TOKEN
        description="pyannote community-1 (segmentation, speaker_embedding)",
    ),
)


# -- reachability -------------------------------------------------------------------------------


def _proxy_for(url: str) -> str | None:
    scheme = urlparse(url).scheme or "https"
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def probe(url: str, timeout: float) -> str | None:
    """None if a TCP connection to ``url``'s host (or its proxy) opens within ``timeout``, else why not."""
    target = _proxy_for(url) or url
    parsed = urlparse(target if "://" in target else f"http://{target}")
    host = parsed.hostname
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return f"cannot parse host from {target!r}"
    result: list[str | None] = []

    def attempt() -> None:  # getaddrinfo has no timeout of its own: run it in a thread
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as e:
            result.append(f"{host}:{port} unreachable ({e.__class__.__name__}: {e})")

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if not result:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return result[0]


def modelscope_endpoint() -> str:
    domain = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    return domain if "://" in domain else f"https://{domain}"


def huggingface_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


# -- hubs ---------------------------------------------------------------------------------------


def _from_modelscope(m: HubModel, dest: Path, timeout: float) -> None:
    try:
        from modelscope import snapshot_download
    except ImportError as e:
        raise RuntimeError(
            f"modelscope is not installed in this Python ({e}); use the export environment"
        ) from e
    snapshot_download(m.modelscope_id, local_dir=str(dest), allow_patterns=m.patterns)


def _from_huggingface(m: HubModel, dest: Path, timeout: float) -> None:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(max(timeout, 1))))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise RuntimeError(
            f"huggingface_hub is not installed in this Python ({e}); use the export environment"
        ) from e
    token = os.environ.get(m.token_env) if m.token_env else None
    snapshot_download(
        m.huggingface_id, local_dir=str(dest), allow_patterns=m.patterns, token=token, etag_timeout=timeout
    )


def hubs_for(m: HubModel) -> list[tuple[str, str, str, object]]:
    """(hub name, model id, endpoint, fetch function), in the order they are tried."""
    hubs = []
    if m.modelscope_id:
        hubs.append(("ModelScope", m.modelscope_id, modelscope_endpoint(), _from_modelscope))
    if m.huggingface_id:
        hubs.append(("Hugging Face", m.huggingface_id, huggingface_endpoint(), _from_huggingface))
    return hubs


def manual_instructions(m: HubModel, final: Path) -> str:
    urls = []
    if m.modelscope_id:
        urls.append(f"{modelscope_endpoint()}/models/{m.modelscope_id}/files")
    if m.huggingface_id:
        urls.append(f"{huggingface_endpoint()}/{m.huggingface_id}/tree/main")
    files = ", ".join(m.required) + (f" (and, if present, {', '.join(m.optional)})" if m.optional else "")
    return (
        f"To install it by hand, copy {files} from a machine with access to\n    "
        + "\n    ".join(urls)
        + f"\ninto {final}/ (the hub's layout, flat), then run `make export-real`."
    )


def download(m: HubModel, dest_root: Path, timeout: float, force: bool) -> tuple[bool, str]:
    final = dest_root / m.folder
    if not force and final.is_dir() and not missing_files(final, m.required):
        return True, f"{m.key}: already present in {final}"
    tried: list[str] = []
    for hub, model_id, endpoint, fetch in hubs_for(m):
        why = probe(endpoint, timeout)
        if why:
            tried.append(f"{hub} {model_id} via {endpoint}: {why}")
            continue
        dest_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{m.folder}.tmp-", dir=dest_root))
        try:
            t0 = time.monotonic()
            fetch(m, tmp, timeout)
            missing = missing_files(tmp, m.required)
            if missing:
                tried.append(f"{hub} {model_id}: downloaded, but {', '.join(missing)} missing")
                continue
            for junk in (".cache", ".msc", ".mv", "._____temp"):  # hub bookkeeping, not model files
                path = tmp / junk
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
            os.chmod(tmp, 0o755)
            replace_dir(tmp, final)
            return True, f"{m.key}: {hub} {model_id} -> {final} ({time.monotonic() - t0:.1f} s)"
        except Exception as e:  # noqa: BLE001 - a hub library may raise anything; report and fall back
            tried.append(f"{hub} {model_id}: {e.__class__.__name__}: {str(e).strip()[:300]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"{m.key}: could not download {m.description or m.key}. Tried:"]
    lines += [f"  - {t}" for t in tried] or ["  - (no hub configured)"]
    lines.append(manual_instructions(m, final))
    return False, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export_scripts.download", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--all", action="store_true", help="every model in the table")
    for m in MODELS:
        p.add_argument(f"--{m.key}", action="store_true", dest=f"m_{m.key}", help=m.description)
    p.add_argument(
        "--dest", type=Path, default=REPO_ROOT / "models", help="default: models/ in the repository"
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for each hub's reachability probe")
    p.add_argument("--force", action="store_true", help="download even if the folder is complete")
    args = p.parse_args(argv)
    chosen = [m for m in MODELS if args.all or getattr(args, f"m_{m.key}")]
    if not chosen:
        p.error("name a model (" + ", ".join(f"--{m.key}" for m in MODELS) + ") or --all")
    status = 0
    for m in chosen:
        ok, message = download(m, args.dest.expanduser().resolve(), args.timeout, args.force)
        if ok:
            print(message, flush=True)
        else:
            eprint(message)
            status = EXIT_UNAVAILABLE
    return status


if __name__ == "__main__":
    sys.exit(main())
