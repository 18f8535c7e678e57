"""`POST /v1/decisions`: what the storefront shows a customer in each placement.

The request waits for the database at most DECISION_BUDGET_MS, for one read (the API
key, unless this process checked it and heard of no change since; the profile, its
segments and inbox; the active rules' version). Past the budget, or with the database
down, it answers 200 with the defaults and `degraded: true` to a key checked before,
503 to one it cannot check. Nothing is written on the way: the decision log goes to a
background writer. The decision itself is service.py's `answer_request`; this module
adapts it to HTTP.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from service.auth.dependencies import bearer
from service.decisions.schemas import DecisionIn, DecisionOut
from service.decisions.service import answer_request
from service.errors import problem_responses

router = APIRouter(tags=["decisions"])


@router.post(
    "/v1/decisions",
    response_model=DecisionOut,
    responses=problem_responses(401, 403, 413, 422, 500, 503),
)
async def decide(
    request: Request,
    body: DecisionIn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    explain: Annotated[bool, Query(description="Add which rules matched and why.")] = False,
) -> Response:
    """The content and offers for each placement (scope `storefront`). Always 200 for a
    valid request and key: with the database slow or down, the defaults, `degraded:
    true`; 503 (with Retry-After) when the key itself cannot be checked then.

    (Requests are answered by `FastPath` before they reach this route; both run
    `answer_request`.)"""
    answer = await answer_request(
        reader=request.app.state.decision_reader,
        log=request.app.state.decision_log,
        body=body,
        token=credentials.credentials if credentials else None,
        explain=explain,
    )
    return Response(orjson.dumps(answer), media_type="application/json")
