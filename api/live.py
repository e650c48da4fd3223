"""Live (realtime) session data: the segments and the status written while a meeting runs.

Stored where every process of the deployment sees it (docs/interfaces.md "Live sessions"):

- Redis when ``REDIS_URL`` is set: per session a hash of segments (``<REDIS_PREFIX>live:<id>:segments``,
  segment id -> JSON), a sorted set of their revisions (``...:revs``) and a status hash (``...:status``:
  ``revision`` counter, ``last_activity``, ``recording``, ``participants``). An upsert is one Lua script.
- otherwise the database (``live_sessions``, ``live_segments``; migration 0006): the api and the worker
  that finalizes share it.

Both expire a session's live data ``LIVE_TTL_SECONDS`` after its last write and hold at most
``LIVE_MAX_SEGMENTS`` distinct segment ids (:class:`LiveStoreFull` beyond). Revisions increase with
every accepted write within a session; the SSE stream resumes from one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from api.db.types import JSONType, UTCDateTime, utcnow
from api.models import Base

log = logging.getLogger("api.live")

ROOM_PREFIX = "intrascribe-"
LIVE_TTL_SECONDS = 7 * 24 * 3600  # default of the LIVE_TTL_SECONDS setting
LIVE_MAX_SEGMENTS = 20000  # default of the LIVE_MAX_SEGMENTS setting
PURGE_INTERVAL_SECONDS = 60.0


def room_name(session_id: uuid.UUID) -> str:
    """The LiveKit room of a session."""
    return f"{ROOM_PREFIX}{session_id}"


def session_id_of_room(room: str) -> uuid.UUID | None:
    """Inverse of :func:`room_name`; None for any other room name."""
    if not room.startswith(ROOM_PREFIX):
        return None
    rest = room[len(ROOM_PREFIX) :]
    try:
        sid = uuid.UUID(rest)
    except ValueError:
        return None
    return sid if str(sid) == rest else None


class LiveStoreFull(Exception):
    """The write would hold more than ``max_segments`` distinct segment ids."""

    def __init__(self, max_segments: int):
        super().__init__(f"a live session holds at most {max_segments} segments (LIVE_MAX_SEGMENTS)")
        self.max_segments = max_segments


class LiveSessionGone(LookupError):
    """The recording session does not exist (any more)."""


@dataclass(frozen=True)
class UpsertResult:
    accepted: int
    ignored: int  # interims that arrived after their final
    segment_count: int
    revision: int


class LiveStore(Protocol):
    def upsert_segments(self, session_id: uuid.UUID, segments: list[dict[str, Any]]) -> UpsertResult: ...
    def segments(self, session_id: uuid.UUID) -> list[dict[str, Any]]: ...
    def changes_after(self, session_id: uuid.UUID, after: int) -> list[dict[str, Any]]: ...
    def update_status(self, session_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]: ...
    def status(self, session_id: uuid.UUID) -> dict[str, Any] | None: ...
    def delete_session(self, session_id: uuid.UUID) -> None: ...
    def ping(self) -> bool: ...


STATUS_FIELDS = ("recording", "participants")


def _sort_key(segment: dict[str, Any]):
    return (float(segment.get("start_time") or 0.0), str(segment.get("segment_id")))


def _status_doc(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "recording": bool(raw.get("recording", False)),
        "participants": list(raw.get("participants") or []),
        "last_activity": raw.get("last_activity"),
        "segment_count": int(raw.get("segment_count") or 0),
        "revision": int(raw.get("revision") or 0),
    }


# ------------------------------------------------------------------------------------ database
class LiveSessionRow(Base):
    """A session's live status, revision counter and expiry (its segments hang off it)."""

    __tablename__ = "live_sessions"
    __table_args__ = (Index(None, "expires_at"),)

    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recording_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    segment_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_activity: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class LiveSegmentRow(Base):
    __tablename__ = "live_segments"
    __table_args__ = (Index(None, "session_id", "revision"),)

    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("live_sessions.session_id", ondelete="CASCADE"), primary_key=True
    )
    segment_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    start_time: Mapped[float] = mapped_column(Float, nullable=False)
    is_final: Mapped[bool] = mapped_column(Boolean, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)


class SqlLiveStore:
    """The embedded default: tables in the api's database, seen by the api and the worker alike."""

    def __init__(self, db, ttl_seconds: int = LIVE_TTL_SECONDS, max_segments: int = LIVE_MAX_SEGMENTS):
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self.max_segments = max_segments
        self._purged_at = float("-inf")

    def _touch(self, s, session_id: uuid.UUID) -> LiveSessionRow:
        """The session's row, locked for this transaction, activity and expiry renewed; data that
        had expired (and was not purged yet) dropped first. Revisions keep increasing."""
        now = utcnow()
        if s.get(LiveSessionRow, session_id) is None:
            try:
                with s.begin_nested():
                    s.add(LiveSessionRow(session_id=session_id, status={}, expires_at=now + self.ttl))
            except IntegrityError:
                pass  # created meanwhile by another writer, or the recording session is gone
        # the UPDATE takes the row's write lock first (PostgreSQL) / the database's (SQLite)
        s.execute(
            update(LiveSessionRow).where(LiveSessionRow.session_id == session_id).values(last_activity=now)
        )
        row = s.execute(
            select(LiveSessionRow).where(LiveSessionRow.session_id == session_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:  # the recording session was deleted meanwhile (foreign key)
            raise LiveSessionGone(session_id)
        s.refresh(row)
        if row.expires_at <= now:
            s.execute(delete(LiveSegmentRow).where(LiveSegmentRow.session_id == session_id))
            row.status = {}
            row.segment_count = 0
        row.expires_at = now + self.ttl
        return row

    def _maybe_purge(self) -> None:
        """Deletes expired sessions' live data (their segments by cascade), at most once a minute
        per process; reads never show expired data whether or not this ran."""
        now = time.monotonic()
        if now - self._purged_at < PURGE_INTERVAL_SECONDS:
            return
        self._purged_at = now
        try:
            with self.db.session() as s:
                s.execute(delete(LiveSessionRow).where(LiveSessionRow.expires_at <= utcnow()))
        except SQLAlchemyError:
            log.warning("purging expired live data failed (retried later)", exc_info=True)

    def _live_row(self, s, session_id: uuid.UUID) -> LiveSessionRow | None:
        row = s.get(LiveSessionRow, session_id)
        if row is None or row.expires_at <= utcnow():
            return None
        return row

    def upsert_segments(self, session_id, segments):
        self._maybe_purge()
        with self.db.session() as s:
            row = self._touch(s, session_id)
            ids = list(dict.fromkeys(str(seg["segment_id"]) for seg in segments))
            existing = {
                r.segment_id: r
                for r in s.scalars(
                    select(LiveSegmentRow).where(
                        LiveSegmentRow.session_id == session_id, LiveSegmentRow.segment_id.in_(ids)
                    )
                )
            }
            new_ids = [i for i in ids if i not in existing]
            if row.segment_count + len(new_ids) > self.max_segments:
                raise LiveStoreFull(self.max_segments)
            accepted = ignored = 0
            revision = row.revision
            now = utcnow().isoformat()
            for seg in segments:
                sid = str(seg["segment_id"])
                final = bool(seg.get("is_final"))
                old = existing.get(sid)
                if old is not None and old.is_final and not final:
                    ignored += 1
                    continue
                revision += 1
                data = {**seg, "segment_id": sid, "updated_at": now}
                if old is None:
                    old = LiveSegmentRow(session_id=session_id, segment_id=sid)
                    s.add(old)
                    existing[sid] = old
                old.revision = revision
                old.start_time = float(seg.get("start_time") or 0.0)
                old.is_final = final
                old.data = data
                accepted += 1
            row.revision = revision
            row.segment_count = row.segment_count + len(new_ids)
            s.flush()
            return UpsertResult(accepted, ignored, row.segment_count, revision)

    @staticmethod
    def _out(r: LiveSegmentRow) -> dict[str, Any]:
        return {**r.data, "revision": int(r.revision)}

    def segments(self, session_id):
        with self.db.session() as s:
            if self._live_row(s, session_id) is None:
                return []
            rows = s.scalars(select(LiveSegmentRow).where(LiveSegmentRow.session_id == session_id))
            return sorted((self._out(r) for r in rows), key=_sort_key)

    def changes_after(self, session_id, after):
        with self.db.session() as s:
            if self._live_row(s, session_id) is None:
                return []
            rows = s.scalars(
                select(LiveSegmentRow)
                .where(LiveSegmentRow.session_id == session_id, LiveSegmentRow.revision > after)
                .order_by(LiveSegmentRow.revision)
            )
            return [self._out(r) for r in rows]

    def update_status(self, session_id, changes):
        self._maybe_purge()
        with self.db.session() as s:
            row = self._touch(s, session_id)
            row.status = {**(row.status or {}), **{k: changes[k] for k in STATUS_FIELDS if k in changes}}
            s.flush()
            return self._doc(row)

    @staticmethod
    def _doc(row: LiveSessionRow) -> dict[str, Any]:
        return _status_doc(
            {
                **(row.status or {}),
                "last_activity": row.last_activity.isoformat() if row.last_activity else None,
                "segment_count": row.segment_count,
                "revision": row.revision,
            }
        )

    def status(self, session_id):
        with self.db.session() as s:
            row = self._live_row(s, session_id)
            return None if row is None else self._doc(row)

    def delete_session(self, session_id):
        with self.db.session() as s:
            s.execute(delete(LiveSegmentRow).where(LiveSegmentRow.session_id == session_id))
            s.execute(delete(LiveSessionRow).where(LiveSessionRow.session_id == session_id))

    def ping(self) -> bool:
        return True


# --------------------------------------------------------------------------------------- Redis
# KEYS: segments hash, revisions zset, status hash. ARGV: max segments, ttl seconds, now (ISO),
# then (segment id, JSON without revision, is_final 0/1) per segment.
# Returns {accepted, ignored, segment_count, revision} or {-1} when full (nothing written).
_UPSERT_LUA = """
local max, ttl, now = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local count = redis.call('HLEN', KEYS[1])
local seen, new = {}, 0
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  if not seen[id] then
    seen[id] = true
    if redis.call('HEXISTS', KEYS[1], id) == 0 then new = new + 1 end
  end
end
if count + new > max then return {-1} end
local accepted, ignored = 0, 0
local rev = tonumber(redis.call('HGET', KEYS[3], 'revision') or '0')
for i = 4, #ARGV, 3 do
  local id, data, final = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[1], id)
  if old and final == '0' and cjson.decode(old)['is_final'] == true then
    ignored = ignored + 1
  else
    rev = rev + 1
    redis.call('HSET', KEYS[1], id, data)
    redis.call('ZADD', KEYS[2], rev, id)
    accepted = accepted + 1
  end
end
redis.call('HSET', KEYS[3], 'revision', rev, 'last_activity', now)
for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
return {accepted, ignored, redis.call('HLEN', KEYS[1]), rev}
"""


class RedisLiveStore:
    def __init__(
        self, client, prefix: str, ttl_seconds: int = LIVE_TTL_SECONDS, max_segments: int = LIVE_MAX_SEGMENTS
    ):
        self.r = client
        self.prefix = prefix
        self.ttl = ttl_seconds
        self.max_segments = max_segments
        self._upsert = client.register_script(_UPSERT_LUA)

    def _key(self, session_id: uuid.UUID, what: str) -> str:
        return f"{self.prefix}live:{session_id}:{what}"

    def _keys(self, session_id):
        return [
            self._key(session_id, "segments"),
            self._key(session_id, "revs"),
            self._key(session_id, "status"),
        ]

    def upsert_segments(self, session_id, segments):
        now = utcnow().isoformat()
        args: list[Any] = [self.max_segments, self.ttl, now]
        for seg in segments:
            sid = str(seg["segment_id"])
            data = {**seg, "segment_id": sid, "updated_at": now}
            args += [sid, json.dumps(data, ensure_ascii=False), "1" if seg.get("is_final") else "0"]
        result = [int(x) for x in self._upsert(keys=self._keys(session_id), args=args)]
        if result[0] == -1:
            raise LiveStoreFull(self.max_segments)
        return UpsertResult(*result)

    def _with_revisions(self, session_id, pairs) -> list[dict[str, Any]]:
        if not pairs:
            return []
        ids = [p[0] for p in pairs]
        raws = self.r.hmget(self._key(session_id, "segments"), ids)
        out = []
        for (_, rev), raw in zip(pairs, raws, strict=False):
            if raw is not None:
                out.append({**json.loads(raw), "revision": int(rev)})
        return out

    def segments(self, session_id):
        pairs = self.r.zrange(self._key(session_id, "revs"), 0, -1, withscores=True)
        return sorted(self._with_revisions(session_id, pairs), key=_sort_key)

    def changes_after(self, session_id, after):
        pairs = self.r.zrangebyscore(self._key(session_id, "revs"), f"({int(after)}", "+inf", withscores=True)
        return self._with_revisions(session_id, pairs)

    def update_status(self, session_id, changes):
        key = self._key(session_id, "status")
        mapping = {k: json.dumps(changes[k], ensure_ascii=False) for k in STATUS_FIELDS if k in changes}
        mapping["last_activity"] = utcnow().isoformat()
        pipe = self.r.pipeline()
        pipe.hset(key, mapping=mapping)
        for k in self._keys(session_id):
            pipe.expire(k, self.ttl)
        pipe.execute()
        return self.status(session_id)

    def status(self, session_id):
        raw = self.r.hgetall(self._key(session_id, "status"))
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        doc: dict[str, Any] = {
            "revision": fields.get("revision", "0"),
            "last_activity": fields.get("last_activity"),
            "segment_count": self.r.hlen(self._key(session_id, "segments")),
        }
        for k in STATUS_FIELDS:
            if k in fields:
                doc[k] = json.loads(fields[k])
        return _status_doc(doc)

    def delete_session(self, session_id):
        keys = list(self.r.scan_iter(match=f"{self.prefix}live:{session_id}:*", count=100))
        if keys:
            self.r.delete(*keys)

    def ping(self) -> bool:
        return bool(self.r.ping())
