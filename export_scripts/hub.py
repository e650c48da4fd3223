"""Helpers shared by the exporters and reference scripts (export environment): read a model folder
in its hub's layout, read test audio. Imports numpy/yaml/soundfile lazily, inside the functions."""

from __future__ import annotations

import json
from pathlib import Path


def load_config(model_dir: Path) -> dict:
    """The folder's ``config.yaml``."""
    import yaml

    return yaml.safe_load((Path(model_dir) / "config.yaml").read_text(encoding="utf-8"))


def source_model_id(model_dir: Path, default: str) -> str:
    """The ModelScope id recorded in the folder's ``configuration.json``, else ``default``."""
    conf = Path(model_dir) / "configuration.json"
    if conf.is_file():
        try:
            meta = json.loads(conf.read_text(encoding="utf-8"))
            return meta.get("model_name_in_hub", {}).get("ms") or default
        except (ValueError, AttributeError):
            pass
    return default


def load_wav(path: Path):
    """A 16 kHz mono WAV as float32 samples in [-1, 1]; anything else is refused with the fix."""
    import numpy as np
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != 16000:
        raise SystemExit(f"{path}: sample rate {sr}, expected 16000 (resample first, e.g. with sox)")
    if audio.shape[1] != 1:
        raise SystemExit(f"{path}: {audio.shape[1]} channels, expected mono")
    return np.ascontiguousarray(audio[:, 0])
