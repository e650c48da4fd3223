"""Operations: /health (public), /health/live (public), /info and /metrics (operators)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.context import AppContext, _version
from api.core.auth import PUBLIC_PATHS
from api.core.security import AuthError
from api.deps import Ctx

router = APIRouter(tags=["operations"])

OK, DOWN, NOT_CONFIGURED = "ok", "down", "not_configured"


def _check(status: str, started: float, **extra: Any) -> dict[str, Any]:
    return {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 1), **extra}


async def _database(ctx: AppContext) -> dict[str, Any]:
    started = time.perf_counter()

    def probe() -> str | None:
        with ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            try:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:
                return None

    try:
        revision = await anyio.to_thread.run_sync(probe)
    except Exception as e:
        return _check(DOWN, started, error=type(e).__name__)
    from api.db.migrate import head_revision

    head = head_revision()
    if revision != head:
        return _check(
            DOWN, started, error=f"schema at {revision}, expected {head}: run migrations", revision=revision
        )
    return _check(OK, started, dialect=ctx.db.dialect, revision=revision)


async def _redis(ctx: AppContext) -> dict[str, Any]:
    started = time.perf_counter()
    if ctx.redis is None:
        return _check(NOT_CONFIGURED, started)
    try:
        await anyio.to_thread.run_sync(ctx.redis.ping)
        return _check(OK, started)
    except Exception as e:
        return _check(DOWN, started, error=type(e).__name__)


async def _triton_models(client: httpx.AsyncClient, base: str, configured: list[str]) -> list[dict[str, Any]]:
    if configured:
        return [{"name": n} for n in configured]
    r = await client.post(f"{base}/v2/repository/index", json={})
    r.raise_for_status()
    return [m for m in r.json() if m.get("name")]


async def _triton(ctx: AppContext, client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    started = time.perf_counter()
    base = ctx.settings.triton_http_url.rstrip("/")
    if not base:
        return {"triton": _check(NOT_CONFIGURED, started)}
    try:
        ready = (await client.get(f"{base}/v2/health/ready")).status_code == 200
        models = await _triton_models(client, base, ctx.settings.triton_models)
    except Exception as e:
        return {"triton": _check(DOWN, started, error=type(e).__name__, url=base)}
    out = {"triton": _check(OK if ready else DOWN, started, url=base)}

    async def model_ready(name: str) -> tuple[str, dict[str, Any]]:
        t0 = time.perf_counter()
        try:
            r = await client.get(f"{base}/v2/models/{name}/ready")
            return name, _check(OK if r.status_code == 200 else DOWN, t0)
        except Exception as e:
            return name, _check(DOWN, t0, error=type(e).__name__)

    for name, result in await asyncio.gather(*(model_ready(m["name"]) for m in models)):
        out[f"triton:{name}"] = result
    return out


async def _llm(ctx: AppContext, client: httpx.AsyncClient) -> dict[str, Any]:
    """The LLM configuration's enabled models (LLM_CONFIG), probed cheaply in parallel: a model with
    an ``api_base`` answers ``GET {api_base}/models`` (Ollama: ``/api/tags``); ``LLM_HEALTH_URL``,
    when set, is probed too. ``ok``: a probe answered, or a hosted model (no api_base: not probed,
    /health spends nothing at a provider) has its key; else ``degraded`` with what was tried (``down``
    where HEALTH_OPTIONAL leaves out ``llm``, so it fails /health); ``not_configured``: nothing
    enabled and no LLM_HEALTH_URL."""
    from api.llm.config import load_config

    started = time.perf_counter()
    failed = "degraded" if "llm" in ctx.settings.health_optional else DOWN
    try:
        config = load_config(ctx.settings.llm_config)
    except Exception as e:  # a broken file: summaries fail the same way
        return _check(failed, started, error=f"LLM configuration: {type(e).__name__}")
    usable, skipped = config.usable()
    health_url = ctx.settings.llm_health_url
    if not usable and not skipped and not health_url:
        return _check(NOT_CONFIGURED, started)

    async def probe(name: str, url: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            r = await client.get(url)
        except Exception as e:
            return {"name": name, **_check(DOWN, t0, url=url, error=type(e).__name__)}
        return {
            "name": name,
            **_check(OK if r.status_code < 400 else DOWN, t0, url=url, http_status=r.status_code),
        }

    targets = [
        (m.name, m.api_base.rstrip("/") + ("/api/tags" if m.model.startswith("ollama") else "/models"))
        for m in usable
        if m.api_base
    ] + ([("LLM_HEALTH_URL", health_url)] if health_url else [])
    models = list(await asyncio.gather(*(probe(n, u) for n, u in targets)))
    models += [
        {"name": m.name, "status": "not_probed", "provider": m.model.split("/", 1)[0]}
        for m in usable
        if not m.api_base
    ]
    answering = any(m["status"] in (OK, "not_probed") for m in models)
    extra: dict[str, Any] = {"models": models, "tried": [name for name, _ in targets]}
    if skipped:
        extra["left_out"] = skipped
    return _check(OK if answering else failed, started, **extra)


def _is_operator(request: Request, ctx: AppContext) -> bool:
    if ctx.settings.operator_endpoints_public:
        return True
    try:
        ctx.auth.check_operator(request.headers.get("authorization"))
    except AuthError:
        return False
    return True


_HEALTH_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "failing": {"type": "array", "items": {"type": "string"}},
                "version": {"type": "string"},
                "checks": {"type": "object"},
            },
        }
    }
}


@router.get(
    "/health",
    responses={
        200: {"description": "every required dependency is healthy", "content": _HEALTH_BODY},
        503: {"description": "a required dependency is down", "content": _HEALTH_BODY},
    },
)
async def health(request: Request, ctx: Ctx) -> JSONResponse:
    """200 when every required dependency is healthy, else 503. Anyone gets ``{"status"}``; with
    the operator token (``Authorization: Bearer $OPERATOR_TOKEN``) the body also names the failing
    dependencies, the version and one entry per dependency (URLs, revision, error classes)."""
    timeout = ctx.settings.health_timeout_seconds
    async with httpx.AsyncClient(timeout=timeout) as client:

        async def bounded(coro, name: str) -> dict[str, dict[str, Any]]:
            try:
                result = await asyncio.wait_for(coro, timeout + 1)
            except asyncio.TimeoutError:
                return {name: {"status": DOWN, "error": "timeout"}}
            return result if name == "triton" else {name: result}

        parts = await asyncio.gather(
            bounded(_database(ctx), "database"),
            bounded(_redis(ctx), "redis"),
            bounded(_triton(ctx, client), "triton"),
            bounded(_llm(ctx, client), "llm"),
        )
    checks = {name: c for part in parts for name, c in part.items()}
    optional = set(ctx.settings.health_optional)
    failing = [
        name
        for name, c in checks.items()
        if c["status"] == DOWN and name not in optional and name.split(":")[0] not in optional
    ]
    for name, c in checks.items():
        if c["status"] != NOT_CONFIGURED:
            ctx.metrics.dependency_up.labels(name).set(1 if c["status"] == OK else 0)
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable"}
    if _is_operator(request, ctx):
        body.update(failing=failing, version=_version(), checks=checks)
    return JSONResponse(body, status_code=200 if not failing else 503)


@router.get("/health/live")
def live() -> dict[str, str]:
    """The process is up (no dependency checked)."""
    return {"status": "ok"}


def _batching(config: dict[str, Any]) -> dict[str, Any]:
    dyn = config.get("dynamic_batching")
    seq = config.get("sequence_batching")
    return {
        "max_batch_size": config.get("max_batch_size", 0),
        "dynamic_batching": None
        if dyn is None
        else {
            "preferred_batch_size": dyn.get("preferred_batch_size", []),
            "max_queue_delay_microseconds": int(dyn.get("max_queue_delay_microseconds", 0) or 0),
        },
        "sequence_batching": None
        if seq is None
        else {
            "strategy": "oldest" if "oldest" in seq else "direct",
            "max_sequence_idle_microseconds": seq.get("max_sequence_idle_microseconds"),
        },
        "ragged_inputs": [i["name"] for i in config.get("input", []) if i.get("allow_ragged_batch")],
        "instance_group": [
            {"kind": g.get("kind"), "count": g.get("count")} for g in config.get("instance_group", [])
        ],
    }


async def _model_info(ctx: AppContext) -> dict[str, Any]:
    base = ctx.settings.triton_http_url.rstrip("/")
    if not base:
        return {"url": None, "status": NOT_CONFIGURED, "models": []}
    try:
        async with httpx.AsyncClient(timeout=ctx.settings.health_timeout_seconds) as client:
            index = await _triton_models(client, base, ctx.settings.triton_models)

            async def one(entry: dict[str, Any]) -> dict[str, Any]:
                name = entry["name"]
                info: dict[str, Any] = {
                    "name": name,
                    "version": entry.get("version"),
                    "state": entry.get("state"),
                }
                try:
                    r = await client.get(f"{base}/v2/models/{name}/config")
                    r.raise_for_status()
                    config = r.json()
                    info["backend"] = config.get("backend") or config.get("platform")
                    info["batching"] = _batching(config)
                    if info["version"] is None:
                        m = await client.get(f"{base}/v2/models/{name}")
                        versions = m.json().get("versions") if m.status_code == 200 else None
                        info["version"] = versions[-1] if versions else None
                except Exception as e:
                    info["error"] = type(e).__name__
                return info

            models = await asyncio.gather(*(one(e) for e in index))
    except Exception as e:
        return {"url": base, "status": DOWN, "error": type(e).__name__, "models": []}
    return {"url": base, "status": OK, "models": list(models)}


@router.get("/info")
async def info(request: Request, ctx: Ctx) -> dict[str, Any]:
    """Endpoints of this api and the models Triton serves (name, version, batching)."""
    endpoints = [
        {"path": path, "methods": methods, "public": path in PUBLIC_PATHS}
        for path, methods in app_routes(request.app)
    ]
    s = ctx.settings
    return {
        "service": "intrascribe-api",
        "version": _version(),
        "auth_mode": s.auth_mode.value,
        "database": ctx.db.dialect,
        "queue": s.resolved_queue_backend.value,
        "blob_backend": s.blob_backend.value,
        "endpoints": endpoints,
        "triton": await _model_info(ctx),
    }


def app_routes(app) -> list[tuple[str, list[str]]]:
    """(path template, methods) of every HTTP route, included routers flattened."""
    import fastapi.routing

    iterate = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.16x: lazy includes
    routes = iterate(app.routes) if iterate else app.routes
    out = []
    for route in routes:
        methods = sorted(m for m in (getattr(route, "methods", None) or ()) if m != "HEAD")
        path = getattr(route, "path", None)
        if path and methods:
            out.append((path, methods))
    return out


@router.get("/metrics", include_in_schema=False)
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
