"""The one client that talks to Triton: model and tensor names from ``speechlib.interfaces``, a request
window that keeps Triton's batches full, retries for transient failures, typed results.

    from inference_client import TritonClient, VADClient

    async with TritonClient("127.0.0.1:8101") as client:
        segments = await VADClient(client).segments(waveform)   # 16 kHz mono float32

See docs/interfaces.md for every model's tensors.

Names are imported lazily (PEP 562), so ``inference_client.audio`` loads without tritonclient — the
export environment decodes its reference audio through it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "inference_client.asr": ("ASRClient", "Token", "TranscribedSegment", "Transcript"),
    "inference_client.audio": ("AudioDecodeError", "decode_audio"),
    "inference_client.transcription": ("Transcriber", "TranscriptionOptions", "TranscriptionResult"),
    "inference_client.client": ("DEFAULT_URL", "ClientStats", "RetryPolicy", "TritonClient"),
    "inference_client.errors": (
        "InferenceError",
        "InvalidRequestError",
        "ModelExecutionError",
        "ModelNotFoundError",
        "TritonUnavailableError",
    ),
    "inference_client.vad": (
        "SpeechEvent",
        "SpeechSegment",
        "VADClient",
        "VADStreamSession",
        "validate_waveform",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:  # pragma: no cover
    from inference_client.asr import ASRClient, Token, TranscribedSegment, Transcript  # noqa: F401
    from inference_client.audio import AudioDecodeError, decode_audio  # noqa: F401
    from inference_client.client import DEFAULT_URL, ClientStats, RetryPolicy, TritonClient  # noqa: F401
    from inference_client.errors import (  # noqa: F401
        InferenceError,
        InvalidRequestError,
        ModelExecutionError,
        ModelNotFoundError,
        TritonUnavailableError,
    )
    from inference_client.transcription import (  # noqa: F401
        Transcriber,
        TranscriptionOptions,
        TranscriptionResult,
    )
    from inference_client.vad import (  # noqa: F401
        SpeechEvent,
        SpeechSegment,
        VADClient,
        VADStreamSession,
        validate_waveform,
    )


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'inference_client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
