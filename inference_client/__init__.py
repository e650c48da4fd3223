"""The one client that talks to Triton: model and tensor names from ``speechlib.interfaces``, a request
window that keeps Triton's batches full, retries for transient failures, typed results.

    from inference_client import TritonClient, VADClient

    async with TritonClient("127.0.0.1:8101") as client:
        segments = await VADClient(client).segments(waveform)   # 16 kHz mono float32

See docs/interfaces.md for every model's tensors.
"""

from inference_client.asr import ASRClient, Token, TranscribedSegment, Transcript
from inference_client.audio import load_wav
from inference_client.client import DEFAULT_URL, ClientStats, RetryPolicy, TritonClient
from inference_client.errors import (
    InferenceError,
    InvalidRequestError,
    ModelExecutionError,
    ModelNotFoundError,
    TritonUnavailableError,
)
from inference_client.vad import SpeechEvent, SpeechSegment, VADClient, VADStreamSession, validate_waveform

__all__ = [
    "ASRClient",
    "Token",
    "Transcript",
    "TranscribedSegment",
    "DEFAULT_URL",
    "ClientStats",
    "InferenceError",
    "InvalidRequestError",
    "ModelExecutionError",
    "ModelNotFoundError",
    "RetryPolicy",
    "SpeechEvent",
    "SpeechSegment",
    "TritonClient",
    "TritonUnavailableError",
    "VADClient",
    "VADStreamSession",
    "load_wav",
    "validate_waveform",
]
