"""`POST /v1/decisions`: what the storefront shows a customer in each placement.

The request waits for the database at most DECISION_BUDGET_MS, for one read (the API
key, once a minute per key; the profile, its segments and inbox; the active rules'
version). Past the budget, or with the database down, it answers 200 with the
defaults and `degraded: true`. Nothing is written on the way: the decision log goes
to a background writer.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import SQLAlchemyError

from service.auth import repository as keys
from service.auth.dependencies import bearer
from service.auth.service import Scope, digest
from service.decisions import repository, service
from service.decisions.log import LOG
from service.decisions.repository import Snapshot
from service.decisions.schemas import (
    ContentOut,
    DecisionIn,
    DecisionOut,
    ExplainOut,
    OfferOut,
    PlacementOut,
    RuleVersionOut,
)
from service.errors import FieldError, ProblemError, problem_responses
from service.profiles.identity import ANONYMOUS_ID, USER_ID, lookup_key
from service.rules.service import RUNTIME, Active
from service.settings import get_settings

log = structlog.get_logger(__name__)
router = APIRouter(tags=["decisions"])

KEY_CACHE_S = 60.0  # a revoked key keeps working in a running process this long


@dataclass(frozen=True)
class _Read:
    scopes: frozenset[str] | None  # None: no key checked in this read (it was cached)
    snapshot: Snapshot
    active: Active


class _Reader:
    """The read, on a few threads of its own; a request that finds them all busy (a
    slow database) is degraded at once instead of queueing."""

    def __init__(self) -> None:
        size = get_settings().decision_max_reads
        self._slots = threading.BoundedSemaphore(size)
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="decision-read")
        self._keys: dict[str, tuple[frozenset[str], float]] = {}
        self._files: Active | None = None

    def cached_scopes(self, key_hash: str) -> frozenset[str] | None:
        hit = self._keys.get(key_hash)
        return hit[0] if hit and hit[1] > time.monotonic() else None

    async def read(self, **kwargs: Any) -> _Read | None:
        if not self._slots.acquire(blocking=False):
            return None
        future = self._pool.submit(self._run, **kwargs)
        budget = get_settings().decision_budget_ms / 1000
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), budget)
        except (TimeoutError, SQLAlchemyError) as exc:
            log.warning("decision_degraded", reason=type(exc).__name__)
            return None

    def _run(
        self,
        *,
        key_hash: str | None,
        customer_id: uuid.UUID | None,
        identity: tuple[str, str] | None,
        placements: list[str],
    ) -> _Read:
        try:
            with repository.reader()() as session, session.begin():
                scopes = None
                if key_hash is not None:
                    record = keys.get_active_by_hash(session, key_hash=key_hash)
                    scopes = frozenset(record.scopes) if record else frozenset()
                    if record:
                        self._keys[key_hash] = (scopes, time.monotonic() + KEY_CACHE_S)
                snapshot = repository.snapshot(
                    session,
                    customer_id=customer_id,
                    identity=identity,
                    placements=placements,
                    currency=get_settings().shop_currency,
                )
                active = RUNTIME.cached()
                if snapshot.deployment_id != active.deployment_id:
                    active = RUNTIME.active(session)  # rules changed: compile once
            return _Read(scopes, snapshot, active)
        finally:
            self._slots.release()

    def rules_without_database(self) -> Active:
        active = RUNTIME.cached()
        if active.deployment_id is not None:
            return active
        if self._files is None:  # never reached the database: the files on disk
            self._files = RUNTIME.from_files(get_settings().rules_dir)
        return self._files


READER = _Reader()


@router.post(
    "/v1/decisions",
    response_model=DecisionOut,
    response_model_exclude_none=False,
    responses=problem_responses(401, 403, 422, 500),
)
async def decide(
    body: DecisionIn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    explain: Annotated[bool, Query(description="Add which rules matched and why.")] = False,
) -> DecisionOut:
    """The content and offers for each placement (scope `storefront`). Always 200 for a
    valid request: with the database slow or down, the defaults, `degraded: true`."""
    if credentials is None:
        raise ProblemError(401, "An API key is required: Authorization: Bearer <key>.")
    key_hash = digest(credentials.credentials)
    cached = READER.cached_scopes(key_hash)
    customer_id, identity = _who(body)
    got = await READER.read(
        key_hash=None if cached is not None else key_hash,
        customer_id=customer_id,
        identity=identity,
        placements=body.placements,
    )
    scopes = cached if cached is not None else (got.scopes if got else None)
    if scopes is not None and not scopes:
        raise ProblemError(401, "The API key is unknown or revoked.")
    if scopes is not None and not ({Scope.STOREFRONT.value, Scope.ADMIN.value} & scopes):
        raise ProblemError(403, "This API key lacks the 'storefront' scope.")
    # An unverified key (database down, key not seen yet) gets only the defaults, which
    # are the same for everyone.
    active = got.active if got else READER.rules_without_database()
    snapshot = got.snapshot if got else Snapshot(None, None, [])
    return _answer(body, active=active, snapshot=snapshot, degraded=got is None, explain=explain)


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
) -> DecisionOut:
    defaults = service.defaults_of(active.rulesets)
    unknown = [
        FieldError(field=f"body.placements.{i}", message=f"unknown placement {p!r}")
        for i, p in enumerate(body.placements)
        if p not in defaults
    ]
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ProblemError(422, f"Unknown placement; known: {known}.", errors=unknown)
    settings = get_settings()
    now = datetime.now(UTC)
    chosen = service.choose(
        engine=RUNTIME.engine,
        rulesets=active.rulesets,
        placements=body.placements,
        profile=snapshot.profile,
        context=body.context.model_dump(exclude_none=True),
        inbox=snapshot.inbox,
        now=now,
        consent_defaults=settings.consent_defaults,
        explain=explain,
    )
    profile = snapshot.profile
    answer = DecisionOut(
        decision_id=uuid.uuid4(),
        customer_id=profile.customer_id if profile else None,
        segments=list(profile.segments) if profile else [],
        degraded=degraded,
        rule_versions=[
            RuleVersionOut(
                ruleset=r.name,
                version=r.loaded.definition.version,
                version_id=active.version_ids.get(r.name),
                content_hash=r.loaded.content_hash,
            )
            for r in active.rulesets
            if r.loaded.definition.placements
            or any(k.startswith("placement:") for k in r.by_trigger)
        ],
        placements={
            name: PlacementOut(
                content=ContentOut(**c.content),
                offers=[OfferOut(**o) for o in c.offers],
                explain=[ExplainOut(**e) for e in c.explain] if explain else None,
            )
            for name, c in chosen.items()
        },
    )
    _log(answer, body=body, now=now)
    return answer


def _log(answer: DecisionOut, *, body: DecisionIn, now: datetime) -> None:
    exposures = []
    for name, placement in answer.placements.items():
        shown = [
            ("content", placement.content.id, placement.content.source, placement.content.rule)
        ]
        shown += [("offer", o.offer, o.source, o.rule) for o in placement.offers]
        exposures += [
            {
                "decision_id": answer.decision_id,
                "decided_at": now,
                "customer_id": answer.customer_id,
                "placement": name,
                "kind": kind,
                "item": item,
                "source": source,
                "rule": rule,
            }
            for kind, item, source, rule in shown
        ]
    decision = {
        "id": answer.decision_id,
        "decided_at": now,
        "customer_id": answer.customer_id,
        "degraded": answer.degraded,
        "context": body.context.model_dump(mode="json", exclude_none=True),
        "placements": {
            name: p.model_dump(mode="json", exclude={"explain"})
            for name, p in answer.placements.items()
        },
        "rule_versions": [v.model_dump() for v in answer.rule_versions],
    }
    LOG.record(decision, exposures)
