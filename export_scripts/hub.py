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
