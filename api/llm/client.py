"""One LiteLLM ``Router`` over the configured models, and what summaries need of it: a chat call
that returns text with its tokens and cost (LiteLLM's own accounting), the prompt budget, a token
counter that works offline, and one error for "no model answered" (:class:`LLMUnavailable`)."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import api.llm  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before litellm is imported)
from api.llm import metrics as llm_metrics
from api.llm.config import LLMConfig, ModelEntry, load_config
from api.llm.prompts import summary_json_schema

log = logging.getLogger("api.llm")


@functools.cache
def litellm_module() -> Any:
    """litellm, imported on first use (it takes seconds: the api and worker start without it),
    with its offline settings: bundled price list, bundled tokenizers, no telemetry."""
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")  # bundled catalogs/tokenizers, never fetched
    import litellm

    litellm.disable_hf_tokenizer_download = True  # token counts from the bundled tiktoken encoding
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


HINT = (
    "enable a model in the LLM configuration (LLM_CONFIG, default config/llm.yaml) and set its API "
    "key's environment variable, or start the local model (make run)"
)


class LLMUnavailable(Exception):
    """No configured model answered (after retries and fallbacks). ``tried``: the models tried, in
    order; ``hint``: what the operator can do."""

    def __init__(self, error: str, tried: list[str], hint: str = HINT):
        super().__init__(error)
        self.error = error
        self.tried = tried
        self.hint = hint

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "tried": self.tried, "hint": self.hint}


@dataclass
class Usage:
    """Tokens and cost (USD) of one or more calls, as LiteLLM accounted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    models: list[str] = field(default_factory=list)

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.calls += other.calls
        self.models += [m for m in other.models if m not in self.models]

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "calls": self.calls,
            "cost_usd": self.cost_usd,
        }


@dataclass
class Reply:
    text: str
    model: str  # the configured name of the model that answered
    provider: str
    usage: Usage


def _deployment(m: ModelEntry, default_timeout: float, max_output_tokens: int) -> dict[str, Any]:
    params: dict[str, Any] = {"model": m.model, "timeout": m.timeout or default_timeout}
    if m.api_base:
        params["api_base"] = m.api_base
    key = m.api_key()
    # OpenAI-compatible servers without auth still need some key for the client
    params["api_key"] = key if key else ("none" if m.api_base else None)
    if params["api_key"] is None:
        del params["api_key"]
    if m.input_cost_per_token is not None:
        params["input_cost_per_token"] = m.input_cost_per_token
    if m.output_cost_per_token is not None:
        params["output_cost_per_token"] = m.output_cost_per_token
    if m.json_schema:  # every call to it is structured unless the call asks for text
        params["response_format"] = {"type": "json_object", "schema": summary_json_schema(max_output_tokens)}
    return {
        "model_name": m.name,
        "litellm_params": params,
        "model_info": {"id": m.name, "max_input_tokens": m.max_input_tokens},
    }


class LLM:
    """The configured models behind one Router: ``complete`` tries them in priority order."""

    def __init__(self, config: LLMConfig):
        self.config = config
        self.models, self.skipped = config.usable()
        self.router: Any = None
        if self.models:
            r = config.router
            names = [m.name for m in self.models]
            self.router = litellm_module().Router(
                model_list=[_deployment(m, r.timeout, r.max_output_tokens) for m in self.models],
                fallbacks=[{names[0]: names[1:]}] if len(names) > 1 else [],
                num_retries=r.num_retries,
                retry_after=r.retry_after,
                timeout=r.timeout,
            )

    @property
    def available(self) -> bool:
        return bool(self.models)

    @property
    def max_output_tokens(self) -> int:
        return self.config.router.max_output_tokens

    @property
    def prompt_budget(self) -> int:
        """Tokens a prompt may have so that every enabled model takes it with room for the answer."""
        smallest = min(m.max_input_tokens for m in self.models)
        return max(128, smallest - self.max_output_tokens)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (LiteLLM's counter with the bundled encoding: no download)."""
        model = self.models[0].model if self.models else "gpt-4o"
        return litellm_module().token_counter(model=model, text=text)

    def _hint(self, failed: list[ModelEntry] | None = None) -> str:
        """What to do: the general hint, then per failed model where it runs (``api_base``) and its
        own ``hint`` from the configuration, then the enabled models left out and why."""
        notes = [
            f"{m.name} at {m.api_base or m.model}" + (f": {m.hint}" if m.hint else "")
            for m in failed or []
            if m.api_base or m.hint
        ]
        return (
            HINT
            + (f" (no answer from {'; '.join(notes)})" if notes else "")
            + (f" (left out: {'; '.join(self.skipped)})" if self.skipped else "")
        )

    def require(self) -> None:
        """Raises :class:`LLMUnavailable` when no model is usable (none enabled, or keys unset)."""
        if not self.models:
            raise LLMUnavailable("no LLM model is enabled", [], self._hint())

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, structured: bool = False
    ) -> Reply:
        """One chat completion through the router (retries, then the next model). ``structured``:
        the answer is the summary JSON (models with ``json_schema`` constrain it; the other calls
        ask them for text). Raises :class:`LLMUnavailable` when no model answers."""
        self.require()
        assert self.router is not None
        first = self.models[0].name
        extra: dict[str, Any] = {}
        if not structured and any(m.json_schema for m in self.models):
            extra["response_format"] = {"type": "text"}
        started = time.monotonic()
        try:
            resp = self.router.completion(
                model=first, messages=messages, max_tokens=max_tokens or self.max_output_tokens, **extra
            )
        except Exception as e:  # every provider failed: LiteLLM raises the last error
            llm_metrics.record(first, "error", time.monotonic() - started)
            tried = [m.name for m in self.models]
            log.warning("no LLM answered (tried %s): %s: %s", tried, type(e).__name__, e)
            raise LLMUnavailable(
                f"no LLM model answered (last error: {type(e).__name__})", tried, self._hint(self.models)
            ) from e
        hidden = getattr(resp, "_hidden_params", {}) or {}
        info = hidden.get("model_id") or ""
        answered = next((m for m in self.models if m.name == info), None)
        if answered is None:
            answered = next((m for m in self.models if m.model.endswith(str(resp.model))), self.models[0])
        usage = getattr(resp, "usage", None)
        cost = hidden.get("response_cost")
        if cost is None:
            cost = litellm_module().completion_cost(completion_response=resp)
        text = resp.choices[0].message.content or ""
        spent = Usage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=float(cost or 0.0),
            calls=1,
            models=[answered.name],
        )
        llm_metrics.record(
            answered.name,
            "ok",
            time.monotonic() - started,
            spent.prompt_tokens,
            spent.completion_tokens,
            spent.cost_usd,
        )
        return Reply(text=text, model=answered.name, provider=answered.model.split("/", 1)[0], usage=spent)


_cache: dict[tuple[str, int], LLM] = {}
_lock = threading.Lock()


def get_llm(config_path: Path | str | None) -> LLM:
    """The process's LLM for this file, rebuilt when the file changes."""
    from api.llm.config import DEFAULT_CONFIG

    path = Path(config_path) if config_path else DEFAULT_CONFIG
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    with _lock:
        llm = _cache.get(key)
        if llm is None:
            llm = LLM(load_config(path))
            _cache[key] = llm
        return llm


def monotonic_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
