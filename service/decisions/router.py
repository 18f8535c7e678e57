"""`POST /v1/decisions`: what the storefront shows a customer in each placement.

The request waits for the database at most DECISION_BUDGET_MS, for one read (the API
key, unless this process checked it and heard of no change since; the profile, its
segments and inbox; the active rules' version). Past the budget, or with the database
down, it answers 200 with the defaults and `degraded: true` to a key checked before,
503 to one it cannot check. Nothing is written on the way: the decision log goes to a
background writer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from service.auth.dependencies import bearer
from service.auth.service import Scope, digest
from service.decisions import service
from service.decisions.log import LOG
from service.decisions.reader import Reader
from service.decisions.repository import Snapshot
from service.decisions.schemas import DecisionIn, DecisionOut
from service.errors import FieldError, ProblemError, problem_responses
from service.profiles.identity import ANONYMOUS_ID, USER_ID, lookup_key
from service.ruleset.runtime import RUNTIME, Active
from service.settings import get_settings

router = APIRouter(tags=["decisions"])

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


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
        request.app.state.decision_reader,
        body=body,
        token=credentials.credentials if credentials else None,
        explain=explain,
    )
    return Response(orjson.dumps(answer), media_type="application/json")


async def answer_request(
    reader: Reader, *, body: DecisionIn, token: str | None, explain: bool
) -> dict[str, Any]:
    """The decision for a validated request; ProblemError for 401, 403, 422 and 503.
    Every request's key is checked: by this process's cache when it can be trusted
    (see keys.py), else in the read."""
    if not token:
        raise ProblemError(
            401, "An API key is required: Authorization: Bearer <key>.", headers=_CHALLENGE
        )
    key_hash = digest(token)
    scopes = reader.keys.fresh(key_hash)
    customer_id, identity = _who(body)
    got = await reader.read(
        key_hash=None if scopes is not None else key_hash,
        customer_id=customer_id,
        identity=identity,
    )
    if scopes is None:
        # Checked in this read; or, with the database away, as last checked here.
        scopes = got.scopes if got is not None else reader.keys.last_known(key_hash)
    if scopes is None:
        raise ProblemError(
            503,
            "The API key cannot be checked now (the database does not answer); try again.",
            headers={"Retry-After": str(get_settings().db_unavailable_retry_after_s)},
        )
    if not scopes:
        raise ProblemError(401, "The API key is unknown or revoked.", headers=_CHALLENGE)
    if not ({Scope.STOREFRONT.value, Scope.ADMIN.value} & scopes):
        raise ProblemError(403, "This API key lacks the 'storefront' scope.")
    # The rules the read found active; a deployment this process has not compiled yet
    # is compiled now, however long that takes beyond the budget.
    active = await reader.rules_for(got.snapshot.deployment_id) if got is not None else None
    if got is None or active is None:
        return _answer(
            body,
            active=reader.rules_without_database(),
            snapshot=Snapshot(None, None, []),
            degraded=True,
            explain=explain,
        )
    return _answer(body, active=active, snapshot=got.snapshot, degraded=False, explain=explain)


def _who(body: DecisionIn) -> tuple[uuid.UUID | None, tuple[str, str] | None]:
    if body.customer_id is not None:
        return body.customer_id, None
    for kind, value in ((USER_ID, body.user_id), (ANONYMOUS_ID, body.anonymous_id)):
        key = lookup_key(kind, value) if value else None
        if key is not None:
            return None, (key.kind, key.value)
    return None, None


def _answer(
    body: DecisionIn, *, active: Active, snapshot: Snapshot, degraded: bool, explain: bool
) -> dict[str, Any]:
    """The response document (DecisionOut's shape), built as plain data: this is the
    hot path, and FastAPI's response model would validate it all again."""
    defaults = service.defaults_of(active.rulesets)
    unknown = [
        FieldError(field=f"body.placements.{i}", message=f"unknown placement {p!r}")
        for i, p in enumerate(body.placements)
        if p not in defaults
    ]
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ProblemError(422, f"Unknown placement; known: {known}.", errors=unknown)
    now = datetime.now(UTC)
    context = body.context.model_dump(mode="json", exclude_none=True)  # as sent, for both
    chosen = service.choose(
        engine=RUNTIME.engine,
        rulesets=active.rulesets,
        placements=body.placements,
        profile=snapshot.profile,
        context=context,
        inbox=snapshot.inbox,
        now=now,
        consent_defaults=get_settings().consent_defaults,
        explain=explain,
    )
    profile = snapshot.profile
    answer: dict[str, Any] = {
        "decision_id": uuid.uuid4(),
        "customer_id": profile.customer_id if profile else None,
        "segments": list(profile.segments) if profile else [],
        "degraded": degraded,
        "rule_versions": [
            {
                "ruleset": r.name,
                "version": r.loaded.definition.version,
                "version_id": active.version_ids.get(r.name),
                "content_hash": r.loaded.content_hash,
            }
            for r in active.rulesets
            if r.loaded.definition.placements
            or any(k.startswith("placement:") for k in r.by_trigger)
        ],
        "placements": {
            name: {
                "content": c.content,
                "offers": c.offers,
                "explain": c.explain if explain else None,
            }
            for name, c in chosen.items()
        },
    }
    _log(answer, context=context, now=now)
    return answer


def _log(answer: dict[str, Any], *, context: dict[str, Any], now: datetime) -> None:
    exposures = []
    for name, placement in answer["placements"].items():
        content = placement["content"]
        shown = [("content", content["id"], content["source"], content["rule"])]
        shown += [("offer", o["offer"], o["source"], o["rule"]) for o in placement["offers"]]
        exposures += [
            {
                "decision_id": answer["decision_id"],
                "decided_at": now,
                "customer_id": answer["customer_id"],
                "placement": name,
                "kind": kind,
                "item": item,
                "source": source,
                "rule": rule,
            }
            for kind, item, source, rule in shown
        ]
    decision = {
        "id": answer["decision_id"],
        "decided_at": now,
        "customer_id": answer["customer_id"],
        "degraded": answer["degraded"],
        "context": context,
        "placements": {
            name: {"content": p["content"], "offers": p["offers"]}
            for name, p in answer["placements"].items()
        },
        "rule_versions": answer["rule_versions"],
    }
    LOG.record(decision, exposures)
