"""AI summaries and titles: the original's ``POST /api/v1/summarize`` and
``POST /api/v1/generate-title`` (synchronous, from text), and a session's summaries: a summary job
(``POST /api/v1/sessions/{id}/summary``), its versions, and edits (each a new version).

No reachable model: 503 ``{error, tried, hint}``. A model answer that is not the required JSON after
one repair retry: 502. docs/summaries.md has the prompts and failure behaviours."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from api.core.security import Principal, Scope
from api.crud.transcriptions import current_transcription
from api.deps import DB, Ctx, SessionReader, require_scopes
from api.jobs.service import submit_job
from api.jobs.store import active_job_of_session
from api.llm.client import LLMUnavailable, get_llm
from api.llm.summarize import MalformedOutput, Summarizer, text_lines
from api.models import AISummary
from api.routes.sessions import _owned
from api.schemas import (
    LLMUnavailableOut,
    SummarizeIn,
    SummarizeOut,
    SummaryEdit,
    SummaryJobIn,
    SummaryJobOut,
    SummaryOut,
    TitleIn,
    TitleOut,
)
from api.summaries import (
    KIND,
    latest_summary,
    list_summaries,
    llm_language,
    resolve_template,
    template_text,
    usage_record,
    visible_template,
)

router = APIRouter(prefix="/api/v1", tags=["summaries"])
Summarizing = Annotated[Principal, require_scopes(Scope.SUMMARIZE)]
Reader = SessionReader

_LLM_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: {"description": "the model's answer was not the required JSON, also after one repair retry"},
    503: {"description": "no configured LLM model answered", "model": LLMUnavailableOut},
}


def _unavailable(e: LLMUnavailable) -> JSONResponse:
    return JSONResponse(
        e.body(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "30"}
    )


def _template(db, principal: Principal, template_id: uuid.UUID | None):
    if template_id is not None and visible_template(db, principal.user_id, template_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "template not found")
    return resolve_template(db, principal.user_id, None, template_id)


@router.post("/summarize", response_model=SummarizeOut, responses=_LLM_RESPONSES)
def summarize(body: SummarizeIn, db: DB, ctx: Ctx, principal: Summarizing) -> Any:
    """Summarise a transcript given as text (one utterance per line, e.g. ``[mm:ss] Alice: ...``),
    with a template (``template_id``, else the caller's default, else the system default)."""
    template = _template(db, principal, body.template_id)
    outline, template_id = template_text(template), (template.id if template else None)
    db.rollback()  # no transaction held open during the model calls
    language = llm_language(body.language)
    started = time.monotonic()
    summarizer = Summarizer(get_llm(ctx.settings.llm_config))
    try:
        result = summarizer.summarize(
            text_lines(body.transcription_text), language=language, template=outline
        )
    except LLMUnavailable as e:
        return _unavailable(e)
    except MalformedOutput as e:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(e)) from None
    elapsed = int((time.monotonic() - started) * 1000)
    return SummarizeOut(
        **result.as_dict(),
        language=language,
        template_id=template_id,
        metadata=usage_record(summarizer, elapsed),
    )


@router.post("/generate-title", response_model=TitleOut, responses=_LLM_RESPONSES)
def generate_title(body: TitleIn, ctx: Ctx, principal: Summarizing) -> Any:
    """A short title from a transcript (and its summary when given)."""
    started = time.monotonic()
    summarizer = Summarizer(get_llm(ctx.settings.llm_config))
    try:
        title = summarizer.title(
            text_lines(body.transcription_text),
            language=llm_language(body.language),
            summary=body.summary_text,
        )
    except LLMUnavailable as e:
        return _unavailable(e)
    return TitleOut(title=title, metadata=usage_record(summarizer, int((time.monotonic() - started) * 1000)))


@router.post(
    "/sessions/{session_id}/summary",
    response_model=SummaryJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "no transcript yet, or a summary job of this session is already active"}},
)
def summarize_session(
    session_id: uuid.UUID, db: DB, ctx: Ctx, principal: Summarizing, body: SummaryJobIn | None = None
) -> SummaryJobOut:
    """Queue a summary of the session's current transcript; the job stores a new summary version
    (previous ones stay). Follow it at ``/api/v1/jobs/{job_id}``; its result names the summary."""
    body = body or SummaryJobIn()
    session = _owned(db, principal, session_id)
    if body.template_id is not None and visible_template(db, principal.user_id, body.template_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "template not found")
    row = current_transcription(db, session.id)
    if row is None or not row.segments:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this session has no transcript yet: transcribe it first"
        )
    active = active_job_of_session(db, session.id, KIND)
    if active is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a summary of this session is already queued or running (job {active})"
        )
    params = {
        "template_id": str(body.template_id) if body.template_id else None,
        "language": body.language,
    }
    job = submit_job(ctx, db, KIND, params, user_id=principal.user_id, session_id=session.id)
    return SummaryJobOut(job_id=job.id, session_id=session.id, status=job.status)


@router.get("/sessions/{session_id}/summaries", response_model=list[SummaryOut])
def get_summaries(session_id: uuid.UUID, db: DB, principal: Reader) -> list[AISummary]:
    """Every summary version of the session, newest first."""
    return list_summaries(db, _owned(db, principal, session_id).id)


@router.get("/sessions/{session_id}/summary", response_model=SummaryOut)
def get_latest_summary(session_id: uuid.UUID, db: DB, principal: Reader) -> AISummary:
    summary = latest_summary(db, _owned(db, principal, session_id).id)
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this session has no summary yet")
    return summary


@router.post(
    "/sessions/{session_id}/summaries",
    response_model=SummaryOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "the session has no summary to edit yet"}},
)
def edit_summary(session_id: uuid.UUID, body: SummaryEdit, db: DB, principal: Summarizing) -> AISummary:
    """An edit, stored as a new version made from ``base_id`` (default: the latest); lists left out
    are taken from the base."""
    session = _owned(db, principal, session_id)
    if body.base_id is not None:
        base = db.get(AISummary, body.base_id)
        if base is None or base.session_id != session.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "summary not found in this session")
    else:
        base = latest_summary(db, session.id)
        if base is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "this session has no summary to edit yet")
    given = body.model_dump(exclude_unset=True)
    edited = AISummary(
        session_id=session.id,
        transcription_id=base.transcription_id,
        summary=body.summary,
        key_points=given.get("key_points", base.key_points),
        action_items=given.get("action_items", base.action_items),
        decisions=given.get("decisions", base.decisions),
        participants=base.participants,
        ai_model=base.ai_model,
        ai_provider=base.ai_provider,
        token_usage={},
        template_id=base.template_id,
        language=base.language,
        source="edit",
        parent_id=base.id,
    )
    db.add(edited)
    db.commit()
    return edited
