from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.auth import service
from service.auth.dependencies import authenticated, require
from service.auth.models import ApiKey
from service.auth.schemas import ApiKeyOut
from service.auth.service import Scope
from service.db import DbSession
from service.errors import problem_responses

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.get("/me", response_model=ApiKeyOut, responses=problem_responses(401, 500))
def current_api_key(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKeyOut:
    """The key making this call: lets an integrator check a key and its scopes."""
    return ApiKeyOut.model_validate(key)


@router.get("", response_model=list[ApiKeyOut], responses=problem_responses(401, 403, 500))
def list_api_keys(
    session: DbSession, _: Annotated[ApiKey, Depends(require(Scope.ADMIN))]
) -> list[ApiKeyOut]:
    """All API keys, without their secrets (scope `admin`)."""
    return [ApiKeyOut.model_validate(k) for k in service.list_keys(session)]
