"""The api application: ``uvicorn api.main:create_app --factory`` (settings from the environment).

Middleware order, outermost first: request id + metrics, body size limit, CORS (only if origins
are configured), authentication. Routes never see an unauthenticated request unless their path is public.
"""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.context import AppContext, _version
from api.core.config import AuthMode, Settings, get_settings
from api.core.middleware import (
    REQUEST_ID_HEADER,
    AuthMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    RequestContextMiddleware,
)
from api.media import media
from api.routes import (
    api_keys,
    auth,
    direct,
    jobs,
    livekit,
    livekit_ops,
    openai_compat,
    ops,
    realtime,
    recording,
    sessions,
    summaries,
    templates,
    transcriptions,
    users,
)
from api.sync_calls import sync_body_limit

log = logging.getLogger("api")


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    """5xx: the body carries the request id (to find the log line), never the exception's text."""
    request_id = _request_id(request)
    log.error(
        "unhandled error [request_id=%s] %s %s", request_id, request.method, request.url.path, exc_info=exc
    )
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    return JSONResponse(
        {"detail": "internal server error", "request_id": request_id}, status_code=500, headers=headers
    )


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 without the submitted values (``input``, ``ctx``): a body may carry a password."""
    errors = [
        {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


# What every authenticated route may answer besides its own codes; stated in the OpenAPI document so
# generated clients (and the fuzzer in tests/api/test_fuzz.py) know them.
_ERROR_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"detail": {}, "request_id": {"type": ["string", "null"]}},
            "required": ["detail"],
        }
    }
}
COMMON_RESPONSES = {
    401: {"description": "missing, invalid or expired credentials", "content": _ERROR_BODY},
    403: {"description": "the API key lacks a scope, or an access token is required", "content": _ERROR_BODY},
    404: {"description": "no such resource owned by the caller", "content": _ERROR_BODY},
    413: {"description": "request body over this route's limit", "content": _ERROR_BODY},
}
AUTH_RESPONSES = {
    401: {"description": "wrong email or password", "content": _ERROR_BODY},
    403: {"description": "registration disabled, or the account is disabled", "content": _ERROR_BODY},
    409: {"description": "an account with this email exists", "content": _ERROR_BODY},
    413: {"description": "request body too large", "content": _ERROR_BODY},
    429: {"description": "too many attempts; see Retry-After", "content": _ERROR_BODY},
    503: {"description": "too many sign-ins being checked at once; see Retry-After", "content": _ERROR_BODY},
}
UPLOAD_PATH = re.compile(r"^/api/v1/(sessions/[^/]+/audio_files|transcriptions/batch)/?$")
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries and part headers around the file


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    body = {"detail": exc.detail}
    if exc.status_code >= 500:
        body = {"detail": "internal server error" if exc.status_code == 500 else exc.detail}
        body["request_id"] = _request_id(request)
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def sync_body_limits(settings: Settings) -> list[tuple[str, re.Pattern[str], int]]:
    """The synchronous audio routes take bodies up to a size derived from SYNC_MAX_AUDIO_SECONDS."""
    limit = sync_body_limit(settings)
    return [(method, pattern, limit) for method, pattern in sync_routes()]


def sync_routes() -> list[tuple[str, re.Pattern[str]]]:
    """(method, path regex) of the synchronous audio routes."""
    paths = (openai_compat.TRANSCRIPTIONS_PATH, direct.TRANSCRIBE_PATH, direct.DIARIZE_PATH)
    return [("POST", re.compile(f"^{re.escape(p)}/?$")) for p in paths]


def create_app(settings: Settings | None = None, ctx: AppContext | None = None) -> FastAPI:
    settings = settings or get_settings()
    ctx = ctx or AppContext.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        media.configure(settings.media_processes, settings.media_max_tasks_per_process)
        yield
        if ctx.inference is not None:
            await ctx.inference.aclose()
        media.shutdown()  # its children end with the app (the next app starts them again on use)
        ctx.close()

    app = FastAPI(
        title="Intrascribe API",
        version=_version(),
        description="Meeting transcription: sessions, audio, durable jobs. Authenticate with "
        "`Authorization: Bearer <access token or API key>`.",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx

    app.add_exception_handler(Exception, _unhandled)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    if settings.auth_mode is AuthMode.embedded:
        app.include_router(auth.router, responses=AUTH_RESPONSES)
    # Documentation only (the lock icons and "Authorize" in /docs): AuthMiddleware does the checking.
    documented_auth = [
        Security(HTTPBearer(auto_error=False, description="access token or API key (isk_...)"))
    ]
    for router in (
        users.router,
        sessions.router,
        sessions.audio_router,
        api_keys.router,
        jobs.router,
        jobs.tasks_router,
        transcriptions.batch_router,
        transcriptions.router,
        direct.router,
        summaries.router,
        templates.router,
        recording.router,
        livekit_ops.router,
        livekit.router,
        livekit.agent_router,
        realtime.router,
    ):
        app.include_router(router, dependencies=documented_auth, responses=COMMON_RESPONSES)
    app.include_router(ops.router)
    app.include_router(livekit_ops.webhook_router)  # public path: verified by LiveKit's signature
    # OpenAI's error shape, not COMMON_RESPONSES (its module documents its responses)
    app.include_router(openai_compat.router, dependencies=documented_auth)

    # add_middleware wraps: the last added is the outermost.
    # inside authentication: only authenticated calls take a slot
    app.add_middleware(
        ConcurrencyLimitMiddleware,
        limit=settings.sync_max_concurrent,
        paths=sync_routes(),
        setting="SYNC_MAX_CONCURRENT",
    )
    app.add_middleware(AuthMiddleware, authenticator=ctx.auth, metrics=ctx.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID", "Last-Event-ID"],
            expose_headers=["X-Request-ID", "X-Total-Count"],
            max_age=600,
        )
    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_body_bytes,
        limits=[
            ("POST", UPLOAD_PATH, upload_limit),
            ("PUT", recording.CHUNK_PATH, settings.recording_max_chunk_bytes),
            *sync_body_limits(settings),
        ],
    )
    app.add_middleware(openai_compat.OpenAIErrorShape)  # /v1/...: outside auth and the body limit
    app.add_middleware(RequestContextMiddleware, metrics=ctx.metrics)
    return app
