"""Settings: .env.example documents every setting and loads; scripts/run_api.sh starts api + worker."""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from api.core.config import Settings
from tests.env_example import SERVER_ONLY, SETTINGS_CLASSES, sections, settings_env_names

REPO = Path(__file__).resolve().parents[2]


def test_env_example_settings_section_equals_the_settings_classes():
    settings_section, compose_section = sections()
    documented = set(settings_section) - SERVER_ONLY
    assert not documented - settings_env_names(), "in .env.example but read by no setting"
    assert not settings_env_names() - documented, "a setting missing from .env.example"
    assert not set(compose_section) & (settings_env_names() | SERVER_ONLY), (
        "a setting in the compose-only section"
    )
    # the lines must be NAME=value (a stray "export" or a duplicate would slip past the parser)
    text = (REPO / ".env.example").read_text()
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.M)
    assert len(names) == len(set(names)) == len(settings_section) + len(compose_section)


def test_server_only_names_are_read_by_python_m_api():
    source = (REPO / "api" / "__main__.py").read_text()
    for name in SERVER_ONLY:
        assert f'os.environ.get("{name}"' in source, name


def test_every_settings_class_is_compared():
    """Every ``class X(BaseSettings)`` in the project's packages is in SETTINGS_CLASSES."""
    found = set()
    for package in sorted(p.parent for p in REPO.glob("*/__init__.py")):
        for path in package.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    (b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")) == "BaseSettings"
                    for b in node.bases
                ):
                    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
                    found.add(f"{module}:{node.name}")
    assert found == set(SETTINGS_CLASSES)


def test_env_example_values_are_the_defaults(monkeypatch):
    """Each value in the settings section is its setting's default, read as the setting reads it."""
    settings_section, _ = sections()
    for cls in SETTINGS_CLASSES.values():
        for name in cls.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
        defaults = cls(_env_file=None).model_dump()
        for name in cls.model_fields:
            from_file = cls(_env_file=None, **{name: settings_section[name.upper()]}).model_dump()[name]
            assert from_file == defaults[name], (name, settings_section[name.upper()], defaults[name])


def test_llm_provider_keys_are_compose_only():
    """LiteLLM reads the keys config/llm.yaml names (api_key_env); compose passes them from .env."""
    import yaml

    _, compose_section = sections()
    config = yaml.safe_load((REPO / "config" / "llm.yaml").read_text())
    keys = {m["api_key_env"] for m in config["models"] if m.get("api_key_env")}
    assert keys and keys <= set(compose_section)


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
