""".env.example read as the tests need it: its settings section and its compose-only section.

The settings section (everything before the ``# COMPOSE-ONLY:`` marker) lists exactly the settings
classes' fields with their defaults (tests/api/test_settings_and_scripts.py); the compose-only section
holds what only compose.yaml / compose.dev.yaml read (tests/test_compose.py).
"""

from __future__ import annotations

import io
from pathlib import Path

from dotenv import dotenv_values

from agent.config import AgentSettings
from api.core.config import Settings

REPO = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = REPO / ".env.example"
COMPOSE_ONLY_MARKER = "# COMPOSE-ONLY:"
# read by python -m api (uvicorn's host and port, api/__main__.py), not by a settings class
SERVER_ONLY = frozenset({"API_HOST", "API_PORT"})
# Every settings class of the project (api and worker share api.core.config.Settings, the agent has
# agent.config.AgentSettings; the LLM's only
# setting is LLM_CONFIG there, its provider keys are compose-only). A new BaseSettings class in the
# packages must be added here (tests/api/test_settings_and_scripts.py checks).
SETTINGS_CLASSES = {"api.core.config:Settings": Settings, "agent.config:AgentSettings": AgentSettings}


def sections() -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(settings section, compose-only section) as name -> value, parsed by python-dotenv, the
    parser pydantic-settings reads .env files with."""
    text = ENV_EXAMPLE.read_text()
    settings_part, marker, compose_part = text.partition(COMPOSE_ONLY_MARKER)
    assert marker, f".env.example has no {COMPOSE_ONLY_MARKER!r} section"
    compose_part = compose_part.split("\n", 1)[1]  # the marker's own line
    return dotenv_values(stream=io.StringIO(settings_part)), dotenv_values(stream=io.StringIO(compose_part))


def settings_env_names() -> set[str]:
    """The environment variable names the settings classes read."""
    return {name.upper() for cls in SETTINGS_CLASSES.values() for name in cls.model_fields}
