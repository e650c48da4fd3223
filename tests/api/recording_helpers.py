"""Live recording chunks for the tests: real speech (espeak-ng via tests.audio) cut into fixed-length
pieces and encoded as Ogg/Opus by the agent's encoder (agent.recorder, PyAV's libopus), as it uploads them."""

from __future__ import annotations

import numpy as np

from agent.recorder import encode_ogg_opus
from inference_client.audio import SAMPLE_RATE
from tests.api.live_helpers import LIVE_SETTINGS
from tests.audio import speak

# near-transparent: the tiny trained ASR fixture transcribes its clips exactly through Opus at this
# rate (at 32 kbit/s it drops the first word of one); real models do not need it
BIT_RATE = 96_000
CHUNK_S = 2.0  # RECORDING_CHUNK_SECONDS in these tests (short: fast tests, same code path)


def live_settings(**overrides) -> dict:
    """Settings that turn live sessions on (tests.api.live_helpers: LiveKit key/secret) with short chunks."""
    return {**LIVE_SETTINGS, "recording_chunk_seconds": CHUNK_S, **overrides}


def ogg_opus(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Float32 mono samples -> one Ogg/Opus file's bytes, by the agent's own encoder at BIT_RATE."""
    return encode_ogg_opus(samples, bit_rate=BIT_RATE, rate=rate)


def speech(text: str, seconds: float, voice: str = "en-us") -> np.ndarray:
    """``text`` spoken, padded with silence (or cut) to exactly ``seconds``: silence is recorded too."""
    x = speak(text, voice)
    n = round(seconds * SAMPLE_RATE)
    out = np.zeros(n, np.float32)
    out[: min(n, x.size)] = x[:n]
    return out


def chunked(samples: np.ndarray, chunk_s: float = CHUNK_S) -> list[bytes]:
    """``samples`` cut into ``chunk_s`` pieces (the last one shorter), each its own Ogg/Opus file."""
    step = round(chunk_s * SAMPLE_RATE)
    return [ogg_opus(samples[a : a + step]) for a in range(0, samples.size, step)]


def chunk_url(session_id, participant: str, seq: int) -> str:
    return f"/api/v1/sessions/{session_id}/recording/{participant}/{seq}"
