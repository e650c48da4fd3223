"""Session summaries: which template a summary uses, the ``summarize`` job kind, and how summaries
are stored (every generation or edit is a new ``ai_summaries`` row; none is overwritten).

Template order: the one asked for, else the session's, else the user's default (preferences
``default_template_id``), else the system template marked default."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import event, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.core.config import Settings
from api.crud.transcriptions import current_transcription, transcript_of
from api.jobs.kinds import JobError, job_kind
from api.jobs.store import JobStore, active_job_of_session
from api.llm.client import LLMUnavailable, get_llm
from api.llm.summarize import MalformedOutput, Summarizer, transcript_lines
from api.models import AISummary, RecordingSession, SummaryTemplate, User

log = logging.getLogger("api.summaries")

KIND = "summarize"
FALLBACK_TEMPLATE = "## Summary\n\n## Key points\n\n## Decisions\n\n## Action items (owner / due date)\n"


def visible_template(s: Session, user_id: uuid.UUID, template_id: uuid.UUID) -> SummaryTemplate | None:
    """The user's own template or a system one (active or not: a template asked for by id is used)."""
    return s.scalar(
        select(SummaryTemplate).where(
            SummaryTemplate.id == template_id,
            or_(SummaryTemplate.user_id == user_id, SummaryTemplate.is_system_template.is_(True)),
        )
    )


def resolve_template(
    s: Session, user_id: uuid.UUID, session: RecordingSession | None, template_id: uuid.UUID | None
) -> SummaryTemplate | None:
    """The template a summary uses (see the module's docstring). ``template_id`` must be visible
    (the caller checked); a session's or preference's template that was deleted is skipped."""
    candidates: list[Any] = [template_id]
    if session is not None:
        candidates.append(session.template_id)
    user = s.get(User, user_id)
    prefs = (user.preferences if user is not None else None) or {}
    candidates.append(prefs.get("default_template_id"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            tid = uuid.UUID(str(candidate))
        except ValueError:
            continue
        template = visible_template(s, user_id, tid)
        if template is not None:
            return template
    return s.scalar(
        select(SummaryTemplate)
        .where(SummaryTemplate.is_system_template.is_(True), SummaryTemplate.is_default.is_(True))
        .order_by(SummaryTemplate.created_at, SummaryTemplate.id)
        .limit(1)
    )


def template_text(template: SummaryTemplate | None) -> str:
    return template.template_content if template is not None else FALLBACK_TEMPLATE


def usage_record(summarizer: Summarizer, elapsed_ms: int) -> dict[str, Any]:
    """What a request's calls used (the ``metadata`` of an answer, ``token_usage`` of a summary)."""
    return {
        "model": summarizer.last_model,
        "provider": summarizer.last_provider,
        **summarizer.usage.as_dict(),
        "processing_time_ms": elapsed_ms,
        "map_calls": summarizer.map_calls,
    }


def latest_summary(s: Session, session_id: uuid.UUID) -> AISummary | None:
    return s.scalar(
        select(AISummary)
        .where(AISummary.session_id == session_id)
        .order_by(AISummary.created_at.desc(), AISummary.id.desc())
        .limit(1)
    )


def list_summaries(s: Session, session_id: uuid.UUID) -> list[AISummary]:
    """Every version, newest first."""
    return list(
        s.scalars(
            select(AISummary)
            .where(AISummary.session_id == session_id)
            .order_by(AISummary.created_at.desc(), AISummary.id.desc())
        )
    )


def _by_job(s: Session, job_id: uuid.UUID) -> AISummary | None:
    return s.scalar(select(AISummary).where(AISummary.job_id == job_id))


@job_kind(KIND)
def summarize_session(ctx) -> dict[str, Any]:
    """Summarise the session's current transcript with its template; store a new summary version."""
    services = ctx.services
    if services is None:
        raise RuntimeError("the summarize job needs the worker's services")
    with services.db.session() as s:
        done = _by_job(s, ctx.job_id)
        if done is not None:  # a retried completion: stored already
            return {"summary_id": str(done.id)}
        session = s.get(RecordingSession, ctx.session_id)
        if session is None:
            raise JobError("session_not_found", "the session was deleted")
        row = current_transcription(s, session.id)
        if row is None or not row.segments:
            raise JobError("no_transcript", "the session has no transcript yet: transcribe it first")
        transcript = transcript_of(row)
        template_id = ctx.params.get("template_id")
        template = resolve_template(
            s, session.user_id, session, uuid.UUID(template_id) if template_id else None
        )
        outline, used_template = template_text(template), (template.id if template else None)
        language = ctx.params.get("language") or (row.language if row.language != "auto" else None)
        transcription_id = row.id
    lines = transcript_lines(transcript.segments)
    if not lines:
        raise JobError("no_transcript", "the session's transcript has no text to summarise")
    started = time.monotonic()
    summarizer = Summarizer(get_llm(services.settings.llm_config), check=ctx.check)
    ctx.report(0, None, "summarizing")
    try:
        result = summarizer.summarize(lines, language=llm_language(language), template=outline)
    except LLMUnavailable as e:
        raise JobError(
            "llm_unavailable", f"{e.error}; tried: {', '.join(e.tried) or 'none'}. {e.hint}", retryable=True
        ) from None
    except MalformedOutput as e:
        raise JobError("llm_malformed_output", str(e)) from None
    elapsed = int((time.monotonic() - started) * 1000)
    with services.db.session() as s:
        summary = AISummary(
            session_id=ctx.session_id,
            transcription_id=transcription_id,
            summary=result.summary,
            key_points=result.key_points,
            action_items=result.action_items,
            decisions=result.decisions,
            participants=transcript.speakers,
            ai_model=result.model,
            ai_provider=result.provider,
            processing_time_ms=elapsed,
            token_usage=usage_record(summarizer, elapsed),
            cost_cents=result.usage.cost_usd * 100,
            template_id=used_template,
            language=language,
            source="generated",
            job_id=ctx.job_id,
        )
        s.add(summary)
        if used_template is not None:
            t = s.get(SummaryTemplate, used_template)
            if t is not None:
                t.usage_count = (t.usage_count or 0) + 1
        try:
            s.flush()
        except IntegrityError:  # the same job completed concurrently (a lease taken over)
            s.rollback()
            existing = _by_job(s, ctx.job_id)
            if existing is None:
                raise
            return {"summary_id": str(existing.id)}
        summary_id = summary.id
    return {"summary_id": str(summary_id)}


def llm_language(code: str | None) -> str | None:
    """A session/transcript language code as the prompts know it (zh, en, yue, ja, ko), else None."""
    from speechlib.languages import normalize_language

    try:
        code = normalize_language(code)
    except ValueError:
        return None
    return None if code == "auto" else code


def auto_summary_wanted(user: User | None, default: bool) -> bool:
    """The user's ``auto_summary`` preference; a user who has not set it (or whose stored value is
    not a boolean) gets ``default`` (the ``AUTO_SUMMARY_DEFAULT`` setting)."""
    value = ((user.preferences if user is not None else None) or {}).get("auto_summary")
    return value if isinstance(value, bool) else default


_queues: dict[int, Any] = {}


def _dispatch(settings: Settings, job_id: uuid.UUID) -> None:
    """Wake a worker for the job (the job queue of these settings, made once per process). A lost
    wake-up is not fatal: the job row is ``queued`` and the reaper re-sends it."""
    from api.jobs.queue import JobQueue

    try:
        entry = _queues.get(id(settings))
        if entry is None or entry[0] is not settings:
            entry = _queues[id(settings)] = (settings, JobQueue(settings))
        entry[1].dispatch(job_id)
    except Exception:
        log.warning("auto-summary job %s: no wake-up sent; the reaper will send it", job_id, exc_info=True)


def maybe_enqueue_auto_summary(s: Session, session: RecordingSession, settings: Settings) -> uuid.UUID | None:
    """After a transcription of ``session`` was stored in ``s`` (batch, re-transcription, live
    finalize): queue a summary job when the owner wants one (:func:`auto_summary_wanted`) and no
    summary job of the session is queued or running already. The job row is added to ``s``, so it
    commits (or rolls back) with the transcription; the worker's wake-up is sent after the commit.
    Returns the new job's id, or None when none was queued."""
    if not auto_summary_wanted(s.get(User, session.user_id), settings.auto_summary_default):
        return None
    if active_job_of_session(s, session.id, KIND) is not None:
        return None
    job = JobStore.create(
        s,
        KIND,
        {"template_id": None, "language": None, "auto": True},
        user_id=session.user_id,
        session_id=session.id,
        max_attempts=settings.job_max_attempts,
    )
    job_id = job.id
    event.listen(s, "after_commit", lambda _s: _dispatch(settings, job_id), once=True)
    log.info("session %s: auto-summary job %s queued", session.id, job_id)
    return job_id
