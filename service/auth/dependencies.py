"""`require(Scope.X)`: the FastAPI dependency that guards an endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import service
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import ProblemError

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pk_…`")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def authenticated(
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """Any valid, unrevoked key; 401 otherwise."""
    if credentials is None:
        raise ProblemError(
            401, "An API key is required: Authorization: Bearer <key>.", headers=_CHALLENGE
        )
    record = service.authenticate(session, key=credentials.credentials)
    if record is None:
        raise ProblemError(401, "The API key is unknown or revoked.", headers=_CHALLENGE)
    return record


def require(scope: Scope) -> Callable[..., ApiKey]:
    """A valid key holding `scope` (or `admin`); 401 or 403 otherwise."""

    def dependency(record: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        if not service.allows(record, scope):
            raise ProblemError(403, f"This API key lacks the '{scope.value}' scope.")
        return record

    return dependency
