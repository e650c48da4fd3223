"""Settings of the LiveKit agent (``python -m agent start``), read from the environment (and ``.env``).

Every setting, its default and its meaning is listed in ``.env.example``. ``LIVEKIT_URL``,
``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``, ``LIVEKIT_AGENT_NAME`` and ``TRITON_GRPC_URL`` are the same
variables the api reads (same defaults); livekit-agents itself also reads the three ``LIVEKIT_*``
credentials. The agent reaches data only through the api (``AGENT_API_URL``) and models only through
Triton: no database, Redis or model settings here.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from speechlib.interfaces import TRITON_GRPC_PORT

AGENT_HTTP_PORT = 8081  # livekit-agents' own default health port


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- LiveKit (shared with the api)
    livekit_url: str = ""  # the SFU as the agent reaches it (ws:// or wss://)
    livekit_api_key: str = ""
    livekit_api_secret: SecretStr = SecretStr("")
    livekit_agent_name: str = "intrascribe-agent"  # explicit dispatch name (the api dispatches it)

    # --- where the agent sends things
    triton_grpc_url: str = f"127.0.0.1:{TRITON_GRPC_PORT}"  # host:port of Triton's gRPC
    agent_api_url: str = "http://127.0.0.1:8000"  # the api's base URL as the agent reaches it
    agent_http_port: int = Field(AGENT_HTTP_PORT, ge=0, le=65535)  # health + /metrics; 0: any free port

    # --- transcription
    agent_language: str = "auto"  # SenseVoice language for live ASR (speechlib.languages codes)
    agent_use_itn: bool = True  # punctuation and inverse text normalisation in live text
    agent_vad_chunk_ms: int = Field(100, ge=100, le=200)  # audio per vad_stream request
    agent_max_end_silence_ms: int | None = Field(
        None, ge=0
    )  # silence that ends an utterance; empty: the model's
    agent_interim_min_seconds: float = Field(1.0, gt=0)  # new audio before the next interim of a stream
    agent_max_utterance_seconds: float = Field(
        30.0, gt=1, le=30
    )  # monologues are cut here (asr takes <= 30 s)

    # --- resilience
    agent_buffer_max_seconds: float = Field(
        600.0, gt=0
    )  # audio held per participant while Triton/api are away
    agent_record: bool = True  # upload each participant's audio as Ogg/Opus chunks to the api

    @field_validator("agent_max_end_silence_ms", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v


@lru_cache
def get_settings() -> AgentSettings:
    return AgentSettings()
