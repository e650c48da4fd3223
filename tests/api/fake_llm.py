"""A loopback HTTP server speaking OpenAI's chat-completions protocol (the network boundary of an
LLM provider), so LiteLLM's real client is exercised. It records every request, enforces a context
length (answering ``context_length_exceeded`` as OpenAI does) and can be told to time out, answer
500, or answer with a given text."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from api.llm.client import litellm_module


def count_tokens(text: str) -> int:
    litellm_module()  # LiteLLM with its offline settings first: then its bundled cl100k_base
    from litellm.litellm_core_utils.default_encoding import encoding

    return len(encoding.encode(text))


class FakeLLM:
    """``reply(messages) -> str`` answers; ``mode``: ok | timeout | error500."""

    def __init__(
        self,
        reply: Callable[[list[dict[str, Any]]], str] | None = None,
        *,
        mode: str = "ok",
        context_tokens: int = 100_000,
        usage: tuple[int, int] | None = None,
        delay: float = 0.0,
        name: str = "fake",
        journal: list[str] | None = None,
    ):
        self.reply = reply or (lambda messages: "ok")
        self.mode = mode
        self.context_tokens = context_tokens
        self.usage = usage  # (prompt, completion) to report instead of the counted ones
        self.delay = delay
        self.name = name
        self.journal = journal if journal is not None else []  # names in arrival order (shared)
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[int] = []  # prompt sizes answered with context_length_exceeded
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:  # noqa: N802
                """``/models``: the model list (what /health probes); 503 while ``mode`` is not ok."""
                if not self.path.rstrip("/").endswith("/models"):
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                elif fake.mode != "ok":
                    self._send(503, {"error": {"message": "unavailable", "type": "server_error"}})
                else:
                    self._send(200, {"object": "list", "data": [{"id": fake.name, "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                fake.requests.append(body)
                fake.journal.append(fake.name)
                if fake.mode == "timeout":
                    time.sleep(30)
                    return
                if fake.mode == "error500":
                    self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                    return
                if fake.delay:
                    time.sleep(fake.delay)
                prompt = sum(count_tokens(m.get("content") or "") for m in body["messages"])
                if prompt > fake.context_tokens:
                    fake.rejected.append(prompt)
                    self._send(
                        400,
                        {
                            "error": {
                                "message": f"This model's maximum context length is {fake.context_tokens} "
                                f"tokens. However, your messages resulted in {prompt} tokens.",
                                "type": "invalid_request_error",
                                "param": "messages",
                                "code": "context_length_exceeded",
                            }
                        },
                    )
                    return
                content = fake.reply(body["messages"])
                p, c = fake.usage or (prompt, count_tokens(content))
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def prompts(self) -> list[list[dict[str, Any]]]:
        return [r["messages"] for r in self.requests]


def model_entry(fake: FakeLLM, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A config/llm.yaml model entry for ``fake`` (an OpenAI-compatible provider)."""
    name = name or fake.name
    return {
        "name": name,
        "priority": extra.pop("priority", 10),
        "model": f"openai/{name}",
        "api_base": fake.url,
        "max_input_tokens": extra.pop("max_input_tokens", fake.context_tokens),
        **extra,
    }


def write_config(path, models: list[dict[str, Any]], **router: Any):
    """Write an LLM config (fast retries and short timeouts unless given) and return its path."""
    import yaml

    settings = {"num_retries": 0, "retry_after": 0.01, "timeout": 5, "max_output_tokens": 200, **router}
    path.write_text(yaml.safe_dump({"router": settings, "models": models}, allow_unicode=True))
    return path
