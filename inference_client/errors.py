"""Errors raised by the Triton client, one class per thing the caller can do about it."""

from __future__ import annotations

import re

from tritonclient.utils import InferenceServerException

# gRPC codes that mean "try again shortly": the server is down or restarting, the model is still
# loading (Triton answers UNAVAILABLE), its queue is full, or the call ran out of time.
TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})

_REQUEST_ID_PREFIX = re.compile(r"^\[request id: [^\]]*\]\s*")


class InferenceError(Exception):
    """A request to Triton failed. ``model`` is the model it was for (``None`` for server calls),
    ``status`` the gRPC status name (e.g. ``INVALID_ARGUMENT``) and ``message`` Triton's own words."""

    def __init__(self, model: str | None, status: str, message: str, attempts: int = 1):
        self.model = model
        self.status = status
        self.message = message
        self.attempts = attempts
        where = f"model '{model}'" if model else "Triton"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{where}: {message} [{status}{tries}]")


class InvalidRequestError(InferenceError):
    """The request does not fit the model's contract (tensor name, dtype, shape, flags or a value the
    model rejected). Never retried: fix the request (see docs/interfaces.md)."""


class ModelNotFoundError(InferenceError):
    """Triton serves no model of that name: check the name and the server's model repository."""


class ModelExecutionError(InferenceError):
    """The model failed while running this request (Triton status INTERNAL and the like)."""


class TritonUnavailableError(InferenceError):
    """Triton stayed unreachable, not ready or too slow for every attempt the retry policy allowed."""


def status_name(exc: InferenceServerException) -> str:
    """``StatusCode.INVALID_ARGUMENT`` -> ``INVALID_ARGUMENT`` (``UNKNOWN`` when absent)."""
    status = exc.status() or "UNKNOWN"
    return status.rsplit(".", 1)[-1]


# Triton answers NOT_FOUND "Request for unknown model: 'x' has no available versions" for a model of
# its repository that has no ready version: it is loading, or unloading while the server stops or
# restarts. That passes (retried like UNAVAILABLE, and reported as TritonUnavailableError when it
# outlasts the policy); a name Triton does not know ("... is not found") does not.
_NOT_READY = "has no available versions"


def _not_ready(status: str, message: str) -> bool:
    return status == "NOT_FOUND" and _NOT_READY in message


def is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, InferenceServerException):
        return False
    status = status_name(exc)
    return status in TRANSIENT_STATUSES or _not_ready(status, exc.message() or str(exc))


def translate(exc: InferenceServerException, model: str | None, attempts: int = 1) -> InferenceError:
    """Turn tritonclient's exception into the matching :class:`InferenceError` subclass."""
    status = status_name(exc)
    message = _REQUEST_ID_PREFIX.sub("", exc.message() or str(exc))
    cls = {
        "INVALID_ARGUMENT": InvalidRequestError,
        "NOT_FOUND": ModelNotFoundError,
        "UNAVAILABLE": TritonUnavailableError,
        "DEADLINE_EXCEEDED": TritonUnavailableError,
    }.get(status, ModelExecutionError)
    if _not_ready(status, message):
        cls = TritonUnavailableError
    return cls(model, status, message, attempts)
