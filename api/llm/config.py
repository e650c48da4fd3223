"""The LLM configuration file (YAML): the router's retry/timeout settings and the models, validated
so a typo is a clear error at start-up, not a silent default."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "llm.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouterSettings(_Strict):
    num_retries: int = Field(2, ge=0, le=10)  # per model, before falling back to the next one
    retry_after: float = Field(1.0, ge=0)  # least wait between retries (LiteLLM: 0.5 s x 2^n + jitter)
    timeout: float = Field(120.0, gt=0)  # per call, seconds, unless the model sets its own
    max_output_tokens: int = Field(1024, ge=16)  # reserved for the answer in every prompt's budget


class ModelEntry(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    enabled: bool = True
    priority: int = 100
    model: str = Field(min_length=1)  # LiteLLM's "provider/model"
    api_base: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key (never the key)
    timeout: float | None = Field(None, gt=0)
    max_input_tokens: int = Field(ge=256)
    input_cost_per_token: float | None = Field(None, ge=0)
    output_cost_per_token: float | None = Field(None, ge=0)
    # constrain summary answers to their JSON schema (llama.cpp servers' response_format extension)
    json_schema: bool = False
    # what the operator can do when this model does not answer (shown in the 503's hint)
    hint: str | None = Field(None, max_length=500)

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class LLMConfig(_Strict):
    router: RouterSettings = Field(default_factory=RouterSettings)
    models: list[ModelEntry] = Field(default_factory=list)

    def usable(self) -> tuple[list[ModelEntry], list[str]]:
        """Enabled models whose key (if one is named) is set, in priority order; and why the other
        enabled ones are left out."""
        usable, skipped = [], []
        for m in sorted(self.models, key=lambda m: m.priority):
            if not m.enabled:
                continue
            if m.api_key_env and not m.api_key():
                skipped.append(f"{m.name}: environment variable {m.api_key_env} is not set")
                continue
            usable.append(m)
        return usable, skipped


def load_config(path: Path | str | None) -> LLMConfig:
    """Read and validate the file (``None``: the repository's config/llm.yaml)."""
    path = Path(path) if path else DEFAULT_CONFIG
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    names = [m.get("name") for m in data.get("models") or [] if isinstance(m, dict)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: model names must be unique, repeated: {', '.join(map(str, duplicates))}")
    return LLMConfig.model_validate(data)
