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
                    self.auth.authenticate, authorization, headers.get("x-api-key")
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
