"""Settings: .env.example documents every setting and loads; scripts/run_api.sh starts api + worker."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from api.core.config import Settings

REPO = Path(__file__).resolve().parents[2]
# read by python -m api (uvicorn), not by Settings
SERVER_ONLY = {"API_HOST", "API_PORT"}


def test_env_example_lists_every_setting():
    text = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.M))
    assert documented - SERVER_ONLY == {name.upper() for name in Settings.model_fields}


def test_env_example_loads_as_the_defaults(tmp_path, monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    from_file = Settings(_env_file=REPO / ".env.example")
    defaults = Settings(_env_file=None)
    assert from_file.model_dump() == defaults.model_dump()
    assert from_file.resolved_database_url.endswith("data/intrascribe.db")
    assert from_file.resolved_queue_backend.value == "sqlite"


def test_settings_parse_lists_from_env(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TRITON_MODELS", "vad,asr")
    s = Settings(_env_file=None)
    assert s.cors_origins == ["https://a.example", "https://b.example"] and s.triton_models == ["vad", "asr"]


@pytest.mark.slow
def test_run_api_script_starts_and_stops(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "API_PORT": str(port),
        "RUN_API_CHECK": "1",
        "TRITON_HTTP_URL": "",
    }
    r = subprocess.run(
        [str(REPO / "scripts" / "run_api.sh")], env=env, capture_output=True, text=True, timeout=90
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"api ready at http://127.0.0.1:{port}" in r.stdout
    assert (tmp_path / "data" / "intrascribe.db").exists() and (tmp_path / "data" / "queue.db").exists()
