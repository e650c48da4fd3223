"""HTTP side of the CLI: where the credentials live, one httpx client with them, api errors as
readable messages (``CLIError``), and a job followed through its Server-Sent Events stream."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("completed", "failed", "cancelled")


class CLIError(Exception):
    """A failure to report as one line (no traceback), with the process's exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "intrascribe"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def load_credentials() -> dict[str, Any]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot read {path}: {e}; delete it and run `intrascribe login` again") from None
    return data if isinstance(data, dict) else {}


def save_credentials(data: dict[str, Any]) -> Path:
    """Written owner-only (0600) from the start: the file holds a bearer token or an API key."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def detail_of(response: httpx.Response) -> str:
    """The api's error text: ``detail`` as a string, or the validation errors joined."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}"
            for e in detail
            if isinstance(e, dict)
        ) or str(detail)
    return str(detail)


@dataclass
class Api:
    """The api at ``url`` with a bearer credential (a login token or an API key), or none."""

    url: str
    credential: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        headers = {"authorization": f"Bearer {self.credential}"} if self.credential else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kw: Any
    ) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise CLIError(
                f"cannot reach the Intrascribe server at {self.url}: is it running (`make run`)? "
                "Set another address with --url or INTRASCRIBE_URL.",
                code=3,
            ) from None
        except httpx.TimeoutException:
            raise CLIError(
                f"the server at {self.url} did not answer in time ({method} {path})", code=3
            ) from None
        except httpx.HTTPError as e:
            raise CLIError(f"{method} {path} failed: {e}", code=3) from None
        if r.status_code in expect:
            return r
        raise self.error(r)

    def error(self, r: httpx.Response) -> CLIError:
        detail = detail_of(r)
        if r.status_code == 401:
            how = (
                "check the API key"
                if self.credential and self.credential.startswith("isk_")
                else ("run `intrascribe login`")
            )
            return CLIError(f"not authorised ({detail}): {how}")
        return CLIError(f"the server answered {r.status_code}: {detail}")

    # ------------------------------------------------------------------ jobs
    def events(
        self, job_id: str, last_id: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any], str | None]]:
        """(event, data, id) of the job's SSE stream until the server ends it."""
        headers = {"accept": "text/event-stream"}
        if last_id is not None:
            headers["last-event-id"] = last_id
        timeout = httpx.Timeout(self.timeout, read=60.0)  # keep-alive comments come every 15 s
        with self.http.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                r.read()
                raise self.error(r)
            yield from parse_sse(r.iter_lines())

    def follow(self, job_id: str, on_update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Follow a job to its end through its event stream, calling ``on_update`` with
        ``{status, done, total, stage}`` on every event; reconnects with Last-Event-ID when the
        stream drops, falls back to polling when streams are refused. Returns the final job."""
        last_id: str | None = None
        failures = 0
        while True:
            try:
                for event, data, event_id in self.events(job_id, last_id):
                    last_id = event_id or last_id
                    failures = 0
                    if event == "snapshot":
                        progress = data.get("progress") or {}
                        on_update({"status": data.get("status"), **progress})
                        if data.get("status") in TERMINAL:
                            return self.job(job_id)
                    elif event == "progress":
                        on_update(data)
                    elif event == "status":
                        on_update({"status": data.get("status")})
                        if data.get("status") in TERMINAL:
                            return self.job(job_id)
            except CLIError:
                job = self.job(job_id)  # 429 (too many streams) and the like: poll instead
                on_update({"status": job["status"], **(job.get("progress") or {})})
                if job["status"] in TERMINAL:
                    return job
                time.sleep(1.0)
                continue
            except httpx.HTTPError:
                failures += 1
                if failures > 5:
                    raise CLIError(
                        f"lost the connection to {self.url} while following job {job_id}", 3
                    ) from None
                time.sleep(min(2.0 * failures, 10.0))
                continue
            job = self.job(job_id)  # the stream ended (SSE_MAX_STREAM_SECONDS): go on if unfinished
            if job["status"] in TERMINAL:
                return job

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/jobs/{job_id}").json()


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """Server-Sent Events (WHATWG): ``event``/``data``/``id`` fields, a blank line ends an event,
    ``:`` lines are comments. Our data is one JSON object per event."""
    event, data, event_id = "message", [], None
    for line in lines:
        if not line:
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"raw": "\n".join(data)}
                yield event, payload if isinstance(payload, dict) else {"value": payload}, event_id
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
