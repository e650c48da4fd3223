"""FastAPI dependencies: the app context, a database session, the authenticated caller, scopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from api.context import AppContext
from api.core.security import Principal, Scope


def unprocessable(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    """A 422 shaped like FastAPI's own (``{"detail": [{"type", "loc", "msg"}]}``), for checks that
    run in the route rather than in the request model."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg}])


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_db(ctx: Ctx) -> Iterator[Session]:
    """A session per request. Routes commit explicitly; anything uncommitted is rolled back."""
    s = ctx.db.sessionmaker()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


DB = Annotated[Session, Depends(get_db)]


def get_principal(request: Request) -> Principal:
    # Set by AuthMiddleware before routing; absent only if a route was wrongly made public.
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or missing credentials")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_scopes(*scopes: str):
    """Dependency: the caller's credential carries every scope (access tokens carry all)."""

    def check(principal: CurrentPrincipal) -> Principal:
        missing = [s for s in scopes if s not in principal.scopes]
        if missing:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this API key lacks the scope(s): {', '.join(missing)}"
            )
        return principal

    return Depends(check)


# A caller allowed to read / change sessions and what hangs off them (audio, transcripts, summaries).
SessionReader = Annotated[Principal, require_scopes(Scope.SESSIONS_READ)]
SessionWriter = Annotated[Principal, require_scopes(Scope.SESSIONS_WRITE)]


def require_interactive(principal: CurrentPrincipal) -> Principal:
    """Only a user's access token, not an API key (e.g. to manage API keys)."""
    if principal.via_api_key:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "use an access token (log in), not an API key, for this"
        )
    return principal


Interactive = Annotated[Principal, Depends(require_interactive)]
