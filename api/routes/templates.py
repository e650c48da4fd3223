"""Summary templates at /api/v1/templates/: the caller's own (CRUD) and the system templates
(read-only, usable by everyone; copy one to change it), and the caller's default template
(preferences ``default_template_id``). A template is a Markdown outline, optionally with
``{placeholders}`` (docs/summaries.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import or_, select

from api.core.security import Principal, Scope
from api.deps import DB, require_scopes
from api.llm.summarize import PLACEHOLDER
from api.models import SummaryTemplate, User
from api.schemas import MAX_OFFSET, TemplateCreate, TemplateOut, TemplateUpdate
from api.summaries import visible_template

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])
Reader = Annotated[Principal, require_scopes(Scope.TEMPLATES_READ)]
Writer = Annotated[Principal, require_scopes(Scope.TEMPLATES_WRITE)]

NOT_FOUND = "template not found"
READ_ONLY = "system templates are read-only: copy it (POST /api/v1/templates/{id}/copy) and edit the copy"


def _default_id(db, user_id: uuid.UUID) -> str | None:
    user = db.get(User, user_id)
    value = ((user.preferences if user else None) or {}).get("default_template_id")
    return str(value) if value else None


def _out(t: SummaryTemplate, default_id: str | None) -> TemplateOut:
    out = TemplateOut.model_validate(t)
    out.placeholders = list(dict.fromkeys(PLACEHOLDER.findall(t.template_content or "")))
    out.is_user_default = default_id == str(t.id)
    return out


def _visible(db, principal: Principal, template_id: uuid.UUID) -> SummaryTemplate:
    t = visible_template(db, principal.user_id, template_id)
    if t is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return t


def _own(db, principal: Principal, template_id: uuid.UUID) -> SummaryTemplate:
    t = _visible(db, principal, template_id)
    if t.user_id != principal.user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, READ_ONLY)
    return t


@router.get("/", response_model=list[TemplateOut])
def list_templates(
    db: DB,
    principal: Reader,
    category: Annotated[str | None, Query(max_length=100)] = None,
    include_inactive: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[TemplateOut]:
    """The system templates, then the caller's own (newest first)."""
    query = select(SummaryTemplate).where(
        or_(SummaryTemplate.user_id == principal.user_id, SummaryTemplate.is_system_template.is_(True))
    )
    if category is not None:
        query = query.where(SummaryTemplate.category == category)
    if not include_inactive:
        query = query.where(SummaryTemplate.is_active.is_(True))
    query = query.order_by(
        SummaryTemplate.is_system_template.desc(), SummaryTemplate.created_at.desc(), SummaryTemplate.id
    )
    default_id = _default_id(db, principal.user_id)
    return [_out(t, default_id) for t in db.scalars(query.limit(limit).offset(offset))]


@router.post("/", response_model=TemplateOut, status_code=status.HTTP_201_CREATED)
def create_template(body: TemplateCreate, db: DB, principal: Writer) -> TemplateOut:
    t = SummaryTemplate(user_id=principal.user_id, is_system_template=False, **body.model_dump())
    db.add(t)
    db.commit()
    return _out(t, _default_id(db, principal.user_id))


@router.get("/{template_id}", response_model=TemplateOut)
def get_template(template_id: uuid.UUID, db: DB, principal: Reader) -> TemplateOut:
    return _out(_visible(db, principal, template_id), _default_id(db, principal.user_id))


@router.put("/{template_id}", response_model=TemplateOut)
@router.patch("/{template_id}", response_model=TemplateOut, include_in_schema=False)
def update_template(template_id: uuid.UUID, body: TemplateUpdate, db: DB, principal: Writer) -> TemplateOut:
    """Partial update of one of the caller's templates (403 for a system template)."""
    t = _own(db, principal, template_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(t, field, value)
    db.commit()
    return _out(t, _default_id(db, principal.user_id))


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(template_id: uuid.UUID, db: DB, principal: Writer) -> Response:
    """Deletes one of the caller's templates; summaries made with it keep their text. If it was the
    caller's default, the default falls back to the system default."""
    t = _own(db, principal, template_id)
    user = db.get(User, principal.user_id)
    if user is not None and _default_id(db, principal.user_id) == str(t.id):
        user.preferences = {**(user.preferences or {}), "default_template_id": None}
    db.delete(t)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{template_id}/copy", response_model=TemplateOut, status_code=status.HTTP_201_CREATED)
def copy_template(template_id: uuid.UUID, db: DB, principal: Writer) -> TemplateOut:
    """A copy owned by the caller (of a system template or one of theirs), to edit freely."""
    src = _visible(db, principal, template_id)
    t = SummaryTemplate(
        user_id=principal.user_id,
        name=(src.name + " (copy)")[:200],
        description=src.description,
        template_content=src.template_content,
        category=src.category,
        tags=list(src.tags or []),
        is_active=True,
        is_system_template=False,
    )
    db.add(t)
    db.commit()
    return _out(t, _default_id(db, principal.user_id))


@router.put("/{template_id}/default", response_model=TemplateOut)
def set_default_template(template_id: uuid.UUID, db: DB, principal: Writer) -> TemplateOut:
    """Make this (own or system) template the caller's default (preferences ``default_template_id``)."""
    t = _visible(db, principal, template_id)
    user = db.get(User, principal.user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    user.preferences = {**(user.preferences or {}), "default_template_id": str(t.id)}
    db.commit()
    return _out(t, str(t.id))
