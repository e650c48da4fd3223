"""Loopback HTTP servers that speak just enough of a real service's API for the api's clients:
a JWKS endpoint (Supabase Auth), Supabase Storage's REST API (for storage3), Triton's HTTP API."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    app: Any = None

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                if not line:  # the client gave up mid-body (as an over-cap upload does): no request
                    raise ConnectionAbortedError("chunked body cut short")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # the empty line after the last chunk
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self, method: str) -> None:
        try:
            request_body = self._body()
        except ConnectionAbortedError:
            self.close_connection = True
            return
        status, headers, body = self.app.handle(method, self.path, self.headers, request_body)
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **headers}
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")


@contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app.handle(method, path, headers, body) -> (status, headers, body)`` on 127.0.0.1."""
    handler = type("H", (_Handler,), {"app": app})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------ JWKS
class FakeJWKS:
    def __init__(self, jwks: dict):
        self.jwks = jwks
        self.requests = 0

    def handle(self, method, path, headers, body):
        if method == "GET" and path == "/auth/v1/.well-known/jwks.json":
            self.requests += 1
            return 200, {}, self.jwks
        return 404, {}, {"error": "not found"}


# ------------------------------------------------------------------------------ Supabase Storage
def _err(status: int, error: str, message: str):
    return status, {}, {"statusCode": str(status), "error": error, "message": message}


class FakeStorage:
    """Supabase Storage's REST API under /storage/v1: buckets, objects (multipart upload, download,
    info, remove), signed URLs. Checks the service key on every call but the signed download."""

    def __init__(self, service_key: str):
        self.service_key = service_key
        self.buckets: dict[str, dict] = {}
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.tokens: dict[str, tuple[str, str]] = {}

    def _authorized(self, headers) -> bool:
        return (
            headers.get("Authorization") == f"Bearer {self.service_key}"
            and headers.get("apikey") == self.service_key
        )

    def handle(self, method, raw_path, headers, body):
        url = urlsplit(raw_path)
        path = unquote(url.path)
        if not path.startswith("/storage/v1/"):
            return _err(404, "not_found", "no such route")
        path = path[len("/storage/v1/") :]
        m = re.match(r"^object/sign/([^/]+)/(.+)$", path)
        if method == "GET" and m:  # signed download: the token is the credential
            token = parse_qs(url.query).get("token", [""])[0]
            if self.tokens.get(token) != (m.group(1), m.group(2)):
                return _err(400, "InvalidSignature", "invalid signature")
            data, ctype = self.objects[(m.group(1), m.group(2))]
            return 200, {"Content-Type": ctype}, data
        if not self._authorized(headers):
            return _err(403, "Unauthorized", "invalid JWT")
        if path == "bucket" and method == "POST":
            req = json.loads(body)
            if req["id"] in self.buckets:
                return _err(409, "Duplicate", "The resource already exists")
            self.buckets[req["id"]] = {
                "id": req["id"],
                "name": req.get("name", req["id"]),
                "owner": "",
                "public": bool(req.get("public", False)),
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
            }
            return 200, {}, {"name": req["id"]}
        m = re.match(r"^bucket/([^/]+)$", path)
        if m and method == "GET":
            if m.group(1) not in self.buckets:
                return _err(404, "not_found", "Bucket not found")
            return 200, {}, self.buckets[m.group(1)]
        m = re.match(r"^object/info/([^/]+)/(.+)$", path)
        if m and method == "GET":
            key = (m.group(1), m.group(2))
            if key not in self.objects:
                return _err(404, "not_found", "Object not found")
            return 200, {}, {"name": key[1], "size": len(self.objects[key][0])}
        m = re.match(r"^object/sign/([^/]+)/(.+)$", path)
        if m and method == "POST":
            key = (m.group(1), m.group(2))
            if key not in self.objects:
                return _err(404, "not_found", "Object not found")
            token = secrets.token_hex(8)
            self.tokens[token] = key
            return 200, {}, {"signedURL": f"/object/sign/{key[0]}/{key[1]}?token={token}"}
        m = re.match(r"^object/([^/]+)$", path)
        if m and method == "DELETE":
            bucket = m.group(1)
            removed = []
            for name in json.loads(body)["prefixes"]:
                if self.objects.pop((bucket, name), None) is not None:
                    removed.append({"name": name, "bucket_id": bucket})
            return 200, {}, removed
        m = re.match(r"^object/([^/]+)/(.+)$", path)
        if m and method in ("POST", "PUT"):
            bucket, name = m.group(1), m.group(2)
            if bucket not in self.buckets:
                return _err(404, "not_found", "Bucket not found")
            if method == "POST" and (bucket, name) in self.objects and headers.get("x-upsert") != "true":
                return _err(409, "Duplicate", "The resource already exists")
            ctype = headers.get("Content-Type", "application/octet-stream")
            # Storage takes a multipart form (storage3) or the raw bytes with their content type
            data, ctype = _multipart_file(ctype, body) if ctype.startswith("multipart/") else (body, ctype)
            self.objects[(bucket, name)] = (data, ctype)
            return 200, {}, {"Key": f"{bucket}/{name}", "Id": secrets.token_hex(8)}
        if m and method == "GET":
            key = (m.group(1), m.group(2))
            if key not in self.objects:
                return _err(404, "not_found", "Object not found")
            data, ctype = self.objects[key]
            return 200, {"Content-Type": ctype}, data
        return _err(404, "not_found", f"no route {method} {path}")


def _multipart_file(content_type: str, body: bytes) -> tuple[bytes, str]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True), part.get_content_type()
    raise ValueError("no file part")


# ------------------------------------------------------------------------------------------ Triton
class FakeTriton:
    """Triton's HTTP/REST health, repository index, model readiness and config."""

    def __init__(self, models: dict[str, dict], ready: bool = True):
        self.models = models  # name -> config JSON (as Triton returns it)
        self.ready = ready
        self.not_ready: set[str] = set()

    def handle(self, method, path, headers, body):
        if path == "/v2/health/ready":
            return (200 if self.ready else 400), {}, b""
        if path == "/v2/repository/index" and method == "POST":
            return 200, {}, [{"name": n, "version": "1", "state": "READY"} for n in sorted(self.models)]
        m = re.match(r"^/v2/models/([^/]+)(/ready|/config)?$", path)
        if m and m.group(1) in self.models:
            name, what = m.group(1), m.group(2)
            if what == "/ready":
                return (400 if name in self.not_ready else 200), {}, b""
            if what == "/config":
                return 200, {}, self.models[name]
            return 200, {}, {"name": name, "versions": ["1"], "platform": "python"}
        return 400, {}, {"error": "unknown model"}
