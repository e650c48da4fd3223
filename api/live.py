"""Live (realtime) session data: segments and status posted while a meeting runs.

Redis when ``REDIS_URL`` is set (shared by every api process), otherwise an in-process store (the
embedded default: one api process). Keys: ``<REDIS_PREFIX>live:<session_id>:segments`` (list of
JSON) and ``...:status`` (JSON). The realtime feature builds on this; the platform needs
``delete_session`` so that deleting a session removes its live data too.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Protocol

LIVE_TTL_SECONDS = 7 * 24 * 3600


class LiveStore(Protocol):
    def append_segment(self, session_id: uuid.UUID, segment: dict[str, Any]) -> None: ...
    def segments(self, session_id: uuid.UUID) -> list[dict[str, Any]]: ...
    def set_status(self, session_id: uuid.UUID, status: dict[str, Any]) -> None: ...
    def status(self, session_id: uuid.UUID) -> dict[str, Any] | None: ...
    def delete_session(self, session_id: uuid.UUID) -> None: ...
    def ping(self) -> bool: ...


class MemoryLiveStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: dict[uuid.UUID, list[dict[str, Any]]] = {}
        self._status: dict[uuid.UUID, dict[str, Any]] = {}

    def append_segment(self, session_id, segment):
        with self._lock:
            self._segments.setdefault(session_id, []).append(dict(segment))

    def segments(self, session_id):
        with self._lock:
            return [dict(s) for s in self._segments.get(session_id, [])]

    def set_status(self, session_id, status):
        with self._lock:
            self._status[session_id] = dict(status)

    def status(self, session_id):
        with self._lock:
            s = self._status.get(session_id)
            return dict(s) if s is not None else None

    def delete_session(self, session_id):
        with self._lock:
            self._segments.pop(session_id, None)
            self._status.pop(session_id, None)

    def ping(self) -> bool:
        return True


class RedisLiveStore:
    def __init__(self, client, prefix: str):
        self.r = client
        self.prefix = prefix

    def _key(self, session_id: uuid.UUID, what: str) -> str:
        return f"{self.prefix}live:{session_id}:{what}"

    def append_segment(self, session_id, segment):
        key = self._key(session_id, "segments")
        pipe = self.r.pipeline()
        pipe.rpush(key, json.dumps(segment, ensure_ascii=False))
        pipe.expire(key, LIVE_TTL_SECONDS)
        pipe.execute()

    def segments(self, session_id):
        return [json.loads(x) for x in self.r.lrange(self._key(session_id, "segments"), 0, -1)]

    def set_status(self, session_id, status):
        self.r.set(
            self._key(session_id, "status"), json.dumps(status, ensure_ascii=False), ex=LIVE_TTL_SECONDS
        )

    def status(self, session_id):
        raw = self.r.get(self._key(session_id, "status"))
        return json.loads(raw) if raw else None

    def delete_session(self, session_id):
        keys = list(self.r.scan_iter(match=f"{self.prefix}live:{session_id}:*", count=100))
        if keys:
            self.r.delete(*keys)

    def ping(self) -> bool:
        return bool(self.r.ping())
