"""Fixtures of the agent's tests (tests/agent/): a tritonserver with the real ``vad``, ``vad_stream``
and the trained ASR fixture ``asr``, settings pointing at it, a recorder publisher, and the ASR
fixture's clips that it transcribes exactly (tests/api/sync_helpers.py ``exact_clips``).

Fixture names (stable, other agent tests use them): ``agent_triton``, ``agent_settings``,
``recorder``, ``speech_clips``. Helpers: tests/agent/pipeline_helpers.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.agent.pipeline_helpers import RecordingPublisher, make_agent_settings

AGENT_MODELS = ("vad", "vad_stream", "asr")


@pytest.fixture(scope="session")
def agent_triton(triton_models):
    """A tritonserver (``serving.launcher.TritonServer``) serving ``vad``, ``vad_stream`` and ``asr``
    (the trained ASR fixture) from model_repository/, shared by the session; ``.ports.grpc_url``."""
    return triton_models(*AGENT_MODELS)


@pytest.fixture
def agent_settings(agent_triton):
    """``AgentSettings`` with the defaults (not the developer's ``.env``) and Triton at ``agent_triton``."""
    return make_agent_settings(agent_triton.ports.grpc_url)


@pytest.fixture
def recorder() -> RecordingPublisher:
    """A publisher that records every segment (``.segments``, ``.finals``, ``.interims``)."""
    return RecordingPublisher()


@pytest.fixture(scope="session")
def speech_clips() -> dict[str, np.ndarray]:
    """``{text: 16 kHz float32 clip}`` of two English ASR fixture clips that VAD + ASR (ITN on,
    language auto) transcribe exactly as their labels, in the fixture's order."""
    from tests.api.sync_helpers import exact_clips, fixture_clips

    clips = fixture_clips()
    return {text: clips[text] for text in exact_clips(2)}
