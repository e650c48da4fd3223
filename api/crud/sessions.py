from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, any_, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session

from api.blobstore import BlobStore
from api.crud.audio import chunk_paths_of_session
from api.db.types import utcnow
from api.jobs.store import JobStore
from api.live import LiveStore
from api.models import AudioFile, Job, JobStatus, RecordingSession, SummaryTemplate, User

log = logging.getLogger("api.sessions")


def get_owned(s: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> RecordingSession | None:
    return s.scalar(
        select(RecordingSession).where(RecordingSession.id == session_id, RecordingSession.user_id == user_id)
    )


def template_visible(s: Session, user_id: uuid.UUID, template_id: uuid.UUID) -> bool:
    return (
        s.scalar(
            select(func.count())
            .select_from(SummaryTemplate)
            .where(
                SummaryTemplate.id == template_id,
                or_(SummaryTemplate.user_id == user_id, SummaryTemplate.is_system_template.is_(True)),
            )
        )
        > 0
    )


def default_language(s: Session, user_id: uuid.UUID) -> str | None:
    prefs = s.scalar(select(User.preferences).where(User.id == user_id)) or {}
    return prefs.get("default_language")


def list_query(
    user_id: uuid.UUID,
    *,
    statuses: list[str] | None = None,
    language: str | None = None,
    q: str | None = None,
    tag: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[Select, str | None]:
    query = select(RecordingSession).where(RecordingSession.user_id == user_id)
    if statuses:
        query = query.where(RecordingSession.status.in_(statuses))
    if language:
        query = query.where(RecordingSession.language == language)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(
            or_(
                RecordingSession.title.ilike(f"%{escaped}%", escape="\\"),
                RecordingSession.description.ilike(f"%{escaped}%", escape="\\"),
            )
        )
    if created_after:
        query = query.where(RecordingSession.created_at >= created_after)
    if created_before:
        query = query.where(RecordingSession.created_at < created_before)
    return query, tag


def _has_tag(dialect: str, tag: str):
    """tags are text[] on Postgres (``tag = ANY(tags)``) and a JSON list on SQLite (json_each)."""
    if dialect == "postgresql":
        return literal(tag, Text()) == any_(RecordingSession.tags)
    each = func.json_each(RecordingSession.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == tag))


def list_sessions(s: Session, user_id: uuid.UUID, *, limit: int, offset: int, **filters: Any):
    query, tag = list_query(user_id, **filters)
    if tag is not None:
        query = query.where(_has_tag(s.get_bind().dialect.name, tag))
    total = s.scalar(select(func.count()).select_from(query.subquery()))
    rows = s.scalars(
        query.order_by(RecordingSession.created_at.desc(), RecordingSession.id).limit(limit).offset(offset)
    ).all()
    return rows, total


def cancel_session_jobs(s: Session, session_id: uuid.UUID) -> list[uuid.UUID]:
    """Cancel every unfinished job of the session (queued ones end now, running ones at their next
    chunk). Caller commits."""
    ids = s.scalars(
        select(Job.id).where(
            Job.session_id == session_id, Job.status.in_([JobStatus.queued.value, JobStatus.running.value])
        )
    ).all()
    for job_id in ids:
        JobStore.request_cancel(s, job_id)
    return list(ids)


def delete_session(
    s: Session, session: RecordingSession, blobs: BlobStore, live: LiveStore
) -> dict[str, Any]:
    """Delete a session and everything of it: its jobs are cancelled (their rows stay, detached, so
    a client watching one sees ``cancelled``), its rows go (audio files, transcriptions and
    summaries by cascade), then its blobs and its live data."""
    session_id = session.id
    cancelled = cancel_session_jobs(s, session_id)
    paths = s.scalars(select(AudioFile.storage_path).where(AudioFile.session_id == session_id)).all()
    paths = [*paths, *chunk_paths_of_session(s, session_id)]  # a live session's recording chunks
    s.execute(update(Job).where(Job.session_id == session_id).values(session_id=None, updated_at=utcnow()))
    s.delete(session)
    s.commit()
    # After the commit: a failure here leaves an orphan blob (logged), never a row without its blob.
    try:
        blobs.delete(list(paths))
    except Exception:
        log.exception("session %s deleted but removing its %d blob(s) failed", session_id, len(paths))
    try:
        live.delete_session(session_id)
    except Exception:
        log.exception("session %s deleted but removing its live data failed", session_id)
    return {"cancelled_jobs": len(cancelled), "deleted_blobs": len(paths)}
