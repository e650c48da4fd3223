"""ASGI middleware: request ids and metrics (outermost), authentication (before routing).

Pure ASGI (no BaseHTTPMiddleware) so Server-Sent Events and large uploads stream through untouched.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

import anyio
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.core.auth import Authenticator
from api.core.security import AuthError
from api.metrics import ApiMetrics

log = logging.getLogger("api.http")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _state(scope) -> dict:
    return scope.setdefault("state", {})


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if sane, else a new one), echoes it
    in the response, and records request metrics by route template."""

    def __init__(self, app, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming or "") else uuid.uuid4().hex
        _state(scope)["request_id"] = request_id
        status_holder = {"status": 500}
        started = time.perf_counter()

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers") or [])
                if not any(k.lower() == REQUEST_ID_HEADER.encode() for k, _ in headers):
                    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                self.metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - started)
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], path, str(status_holder["status"])).inc()


class BodyTooLarge(StarletteHTTPException):
    """An HTTP 413, so FastAPI's body parsing re-raises it and the app's handler answers it."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than this route's limit of {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    """Refuses request bodies over a per-route limit: by ``Content-Length`` before reading a byte,
    and by counting bytes as the body streams in (chunked bodies, lying headers). ``limits`` is a
    list of (method, path regex, bytes); other requests get ``default_limit``.

    Past the limit, ``receive`` raises :class:`BodyTooLarge`; a route that reads the body itself
    (uploads) lets it propagate, and it is answered here with 413 if no response has started."""

    def __init__(self, app, default_limit: int, limits: list[tuple[str, re.Pattern[str], int]]):
        self.app = app
        self.default_limit = default_limit
        self.limits = limits

    def limit_for(self, method: str, path: str) -> int:
        for m, pattern, limit in self.limits:
            if m == method and pattern.match(path):
                return limit
        return self.default_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        _state(scope)["body_limit"] = limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await send_json(send, 400, {"detail": "invalid Content-Length"})
                return
            if too_large:
                await _too_large(send, limit, close=True)
                return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as e:
            if started:
                raise
            await _too_large(send, e.limit, close=True)


class ConcurrencyLimitMiddleware:
    """At most ``limit`` requests in progress at once on the matching routes (per api process); one
    more is answered 429 with ``Retry-After`` at once, before its body is read. The synchronous audio
    routes hold their body and the decoded audio while they run (a 300 s JSON body is ~110 MiB):
    without a cap, concurrent calls multiply that. ``setting`` names the limit in the answer."""

    def __init__(self, app, limit: int, paths: list[tuple[str, re.Pattern[str]]], setting: str):
        self.app = app
        self.limit = limit
        self.paths = paths
        self.setting = setting
        self.in_flight = 0  # one event loop: no await between the check and the increment

    def applies(self, method: str, path: str) -> bool:
        return any(m == method and pattern.match(path) for m, pattern in self.paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.applies(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            detail = (
                f"{self.limit} synchronous calls are in progress ({self.setting}); retry shortly, "
                "or use the batch endpoint POST /api/v1/transcriptions/batch"
            )
            await send_json(send, 429, {"detail": detail}, [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _too_large(send, limit: int, close: bool) -> None:
    headers = [(b"connection", b"close")] if close else []
    await send_json(
        send, 413, {"detail": f"request body is larger than this route's limit of {limit} bytes"}, headers
    )


class AuthMiddleware:
    """Authenticates every non-public request before routing, so an unauthenticated caller learns
    nothing about a route (not even that its body is invalid: 401 comes before 422)."""

    def __init__(self, app, authenticator: Authenticator, metrics: ApiMetrics):
        self.app = app
        self.auth = authenticator
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.auth.is_public(path):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        authorization = headers.get("authorization")
        try:
            if self.auth.is_operator_path(path):
                self.auth.check_operator(authorization)
                _state(scope)["operator"] = True
            else:
                principal = await anyio.to_thread.run_sync(
                    self.auth.authenticate, authorization, headers.get("x-api-key"), path
                )
                _state(scope)["principal"] = principal
        except AuthError as e:
            self.metrics.auth_failures.labels(e.reason).inc()
            request_id = _state(scope).get("request_id")
            await send_json(
                send,
                401,
                {"detail": e.message, "request_id": request_id},
                [(b"www-authenticate", b'Bearer realm="intrascribe"')],
            )
            return
        await self.app(scope, receive, send)
