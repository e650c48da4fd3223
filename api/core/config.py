"""Settings of the api and its job worker, read from the environment (and ``.env``).

Every setting, its default and its meaning is listed in ``.env.example``; names here are the
environment variable names lower-cased. The defaults are the embedded mode: SQLite and a local blob
directory under ``DATA_DIR``, the SQLite-backed job queue, in-process live data, embedded auth.
"""

from __future__ import annotations

import os
import secrets
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT

API_PORT = 8000


class AuthMode(str, Enum):
    embedded = "embedded"  # register/login here; we issue Supabase-shaped HS256 tokens
    supabase = "supabase"  # verify a Supabase project's access tokens (HS256 secret and/or JWKS)


class BlobBackend(str, Enum):
    local = "local"
    supabase = "supabase"


class QueueBackend(str, Enum):
    auto = "auto"  # redis when REDIS_URL is set, else sqlite
    sqlite = "sqlite"
    redis = "redis"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage of everything local (embedded mode)
    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: sqlite:///<DATA_DIR>/intrascribe.db
    database_echo: bool = False

    # --- Redis (optional): job queue broker and live data; empty = embedded stand-ins
    redis_url: str = ""
    redis_prefix: str = "intrascribe:"

    # --- job queue
    queue_backend: QueueBackend = QueueBackend.auto
    queue_name: str = "intrascribe"
    queue_sqlite_path: Path | None = None  # default <DATA_DIR>/queue.db
    job_lease_seconds: float = 30.0
    job_heartbeat_seconds: float = 10.0
    job_reaper_interval_seconds: float = 5.0
    job_max_attempts: int = 3
    job_retry_delay_seconds: float = 5.0
    job_requeue_stale_seconds: float = 60.0
    worker_concurrency: int = 2
    extra_job_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)  # beyond JOB_MODULES
    worker_metrics_port: int = 0  # 0: the worker exposes no metrics endpoint
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container that Prometheus scrapes

    # --- auth
    auth_mode: AuthMode = AuthMode.embedded
    jwt_secret: SecretStr = SecretStr("")  # embedded: signing key (generated into DATA_DIR if empty)
    jwt_audience: str = "authenticated"
    jwt_issuer: str = ""  # verified when set; embedded tokens carry it (default "intrascribe")
    access_token_expire_seconds: int = 3600
    # embedded tokens whose exp - iat exceeds this are refused, whatever they say
    max_token_lifetime_seconds: int = 24 * 3600
    allow_registration: bool = True
    password_min_score: int = Field(3, ge=0, le=4)  # zxcvbn's 0-4 strength estimate, offline

    # --- brute-force limits (limits' string syntax, ";" between tiers; counts in Redis when set)
    # failed logins per (client address, account): each tier is a longer back-off
    login_failure_limits: str = "10/minute;20/hour;50/day"
    # every login / registration attempt per client address
    login_attempt_limits: str = "60/minute;600/hour"
    register_limits: str = "5/minute;20/hour"
    password_hash_concurrency: int = Field(1, ge=1)  # argon2 hashes at once (~64 MiB each; .env.example)
    password_hash_wait_seconds: float = 10.0  # then 503 + Retry-After
    supabase_url: str = ""
    supabase_jwks_url: str = ""  # default <SUPABASE_URL>/auth/v1/.well-known/jwks.json
    supabase_service_role_key: SecretStr = SecretStr("")

    # --- audio blobs
    blob_backend: BlobBackend = BlobBackend.local
    blob_dir: Path | None = None  # default <DATA_DIR>/blobs
    storage_bucket: str = "audio-recordings"
    storage_url: str = ""  # default <SUPABASE_URL>/storage/v1
    signed_url_expire_seconds: int = 3600
    max_upload_bytes: int = 4 * 1024**3
    max_body_bytes: int = 1024 * 1024  # every request body except uploads

    # --- Server-Sent Events (job progress)
    sse_max_streams_per_user: int = Field(8, ge=1)
    sse_max_stream_seconds: float = 3600.0  # a client reconnects with Last-Event-ID

    # --- HTTP surface
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    operator_token: SecretStr = SecretStr("")
    operator_endpoints_public: bool = False

    # --- inference (Triton) and transcription
    triton_grpc_url: str = f"127.0.0.1:{TRITON_GRPC_PORT}"  # host:port; the worker and the sync calls
    triton_max_in_flight: int = Field(32, ge=1)  # gRPC requests on the wire per process
    # params.json + plda.npz + xvec_transform.npz of the diarization pipeline (a worker without a
    # model_repository/ checkout mounts this folder); empty: model_repository/speaker_embedding/1
    diarization_params_dir: Path | None = None
    vad_chunk_seconds: float = Field(600.0, gt=0, le=3600)  # seconds of audio per VAD request
    sync_max_audio_seconds: float = Field(300.0, gt=0)  # /v1/audio/transcriptions, /transcribe, /diarize-file
    sync_max_concurrent: int = Field(4, ge=1)  # synchronous calls in progress per api process; more: 429
    # PyAV work of the api (upload probes, chunk checks, the synchronous calls' decoding, live mixes)
    # runs in this many child processes, each replaced after MEDIA_MAX_TASKS_PER_PROCESS calls
    # (api.media); 0: in the api's own process (FFmpeg's ~110 MiB then stays in it)
    media_processes: int = Field(1, ge=0, le=64)
    media_max_tasks_per_process: int = Field(200, ge=1)
    max_active_jobs_per_user: int = Field(4, ge=1)  # queued + running transcriptions; more: 429
    max_stored_bytes_per_user: int = Field(20 * 1024**3, ge=0)  # audio bytes a user may keep; more: 413

    # --- dependencies checked by /health
    triton_http_url: str = f"http://127.0.0.1:{TRITON_HTTP_PORT}"  # empty: no Triton check
    triton_models: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty: Triton's index
    llm_health_url: str = ""  # probed by /health besides LLM_CONFIG's enabled models (empty: not)
    health_optional: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["llm"])
    health_timeout_seconds: float = 2.0

    log_level: str = "INFO"

    # --- LLM summaries and titles (docs/summaries.md): the LiteLLM router's YAML file
    llm_config: Path | None = None  # empty: config/llm.yaml of this checkout
    auto_summary_default: bool = False  # a user without the preference: summarise after transcription?

    # --- live sessions (LiveKit; docs/interfaces.md "Live sessions")
    livekit_url: str = ""  # the SFU's URL as browsers reach it (ws:// or wss://); empty: live disabled (503)
    livekit_api_url: str = ""  # its server API (http[s]://) for room status/end; empty: from LIVEKIT_URL
    livekit_api_key: str = ""
    # >= 32 bytes; signs participant tokens, verifies the agent's job tokens and LiveKit's webhooks
    livekit_api_secret: SecretStr = SecretStr("")
    livekit_agent_name: str = "intrascribe-agent"  # dispatched into every session's room
    livekit_token_ttl_seconds: int = Field(6 * 3600, ge=60)  # participant tokens
    agent_token_ttl_seconds: int = Field(900, ge=60)  # session-scoped api tokens the agent renews
    live_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)  # live segments/status after last activity
    live_max_segments: int = Field(20000, ge=1)  # per session; more: 413
    recording_chunk_seconds: float = Field(10.0, gt=0, le=60)  # Ogg/Opus chunk length the agent uploads
    recording_max_chunk_bytes: int = Field(2 * 1024 * 1024, ge=1024)

    _split = field_validator(
        "cors_origins", "triton_models", "health_optional", "extra_job_modules", mode="before"
    )(_split_csv)

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_with_credentials(cls, v: list[str]) -> list[str]:
        # CORS responses here allow credentials; with "*" Starlette reflects any origin, which would
        # let every website call the api with a visitor's cookies or stored token.
        if "*" in v:
            raise ValueError("CORS_ORIGINS=* is refused (credentials are allowed): list the origins")
        return v

    @field_validator("login_failure_limits", "login_attempt_limits", "register_limits")
    @classmethod
    def _rate_limits(cls, v: str) -> str:
        from limits import parse_many

        parse_many(v)  # raises ValueError on a typo, at start-up
        return v

    _empty_is_default = field_validator(
        "queue_sqlite_path", "blob_dir", "diarization_params_dir", "llm_config", mode="before"
    )(lambda v: None if v == "" else v)

    # ---------------------------------------------------------------- derived values
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'intrascribe.db').as_posix()}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def resolved_queue_backend(self) -> QueueBackend:
        if self.queue_backend is QueueBackend.auto:
            return QueueBackend.redis if self.redis_url else QueueBackend.sqlite
        return self.queue_backend

    @property
    def resolved_queue_sqlite_path(self) -> Path:
        return self.queue_sqlite_path or self.data_dir / "queue.db"

    @property
    def resolved_diarization_params_dir(self) -> Path:
        from speechlib.interfaces import SpeakerEmbedding

        if self.diarization_params_dir:
            return self.diarization_params_dir
        return Path(__file__).resolve().parents[2] / "model_repository" / SpeakerEmbedding.NAME / "1"

    @property
    def resolved_jwks_url(self) -> str:
        if self.supabase_jwks_url:
            return self.supabase_jwks_url
        if self.supabase_url:
            return self.supabase_url.rstrip("/") + "/auth/v1/.well-known/jwks.json"
        return ""

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url.rstrip("/") + "/"
        return self.supabase_url.rstrip("/") + "/storage/v1/"

    @property
    def token_issuer(self) -> str:
        return self.jwt_issuer or "intrascribe"

    @cached_property
    def signing_secret(self) -> str:
        """The HS256 key: JWT_SECRET, or in embedded mode one generated once into DATA_DIR."""
        secret = self.jwt_secret.get_secret_value()
        if secret or self.auth_mode is AuthMode.supabase:
            return secret
        path = self.data_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        ensure_private_dir(path.parent)
        # api and worker may start together: write a private temp file (created 0600, never
        # readable by others for an instant), then link it into place, which fails if the other
        # process won; both then read the one file that exists.
        tmp = path.with_name(f".jwt_secret.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text().strip()


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only (database, blobs, secrets live there)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def get_settings() -> Settings:
    return Settings()
