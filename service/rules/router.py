"""Rules over HTTP: what is active, reload, rollback, and the firings log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import ProblemError, problem_response, problem_responses
from service.language import loader
from service.params import id_cursor
from service.profiles import service as profiles
from service.rules import deployments, live, repository
from service.rules.schemas import (
    DeploymentOut,
    FileStateOut,
    FiringOut,
    FiringsPage,
    ReloadOut,
    RollbackIn,
    RuleOut,
    RulesetOut,
    RulesOut,
    StatusOut,
    VersionOut,
)
from service.ruleset import repository as deployed
from service.ruleset.models import RuleDeployment
from service.settings import get_settings
from service.vocabulary import DeploymentStatus

router = APIRouter(prefix="/v1/rules", tags=["rules"])
Marketer = Annotated[ApiKey, Depends(require(Scope.MARKETER))]


def _deployment(d: RuleDeployment | None) -> DeploymentOut | None:
    if d is None:
        return None
    return DeploymentOut(
        id=d.id,
        created_at=d.created_at,
        origin=d.origin,
        status=d.status,
        version_ids=d.version_ids,
        errors=d.errors,
        note=d.note,
        summary=d.summary,
    )


@router.get("", response_model=RulesOut, responses=problem_responses(401, 403, 500))
def list_rules(session: DbSession, _: Marketer) -> RulesOut:
    """The active rulesets, their versions and rules (scope `marketer`). The active
    segment definitions are listed by `GET /v1/segments`."""
    deployment_id = deployed.active_deployment_id(session)
    deployment = deployed.get_deployment(session, deployment_id) if deployment_id else None
    rulesets = []
    for row in deployed.versions(session, deployment.version_ids if deployment else []):
        if row.name.startswith(loader.SEGMENT_PREFIX):
            continue
        definition = loader.load_source(row.file, row.source).definition
        rules = [
            RuleOut(
                id=r.id,
                description=r.description,
                version=r.version,
                enabled=r.enabled,
                priority=r.priority,
                trigger=r.trigger.key,
                group=r.limits.group if r.limits else None,
            )
            for r in definition.rules
        ]
        rulesets.append(
            RulesetOut(
                name=row.name,
                version=row.version,
                version_id=row.id,
                content_hash=row.content_hash,
                file=row.file,
                first_loaded_at=row.first_loaded_at,
                rules=rules,
            )
        )
    return RulesOut(
        deployment_id=deployment.id if deployment else None,
        activated_at=deployment.created_at if deployment else None,
        origin=deployment.origin if deployment else None,
        rulesets=rulesets,
    )


@router.get("/status", response_model=StatusOut, responses=problem_responses(401, 403, 500))
def rules_status(session: DbSession, _: Marketer) -> StatusOut:
    """The active deployment, the newest attempt to change it, with its errors (file,
    line, what is wrong) when it was rejected, and the files on disk beside what is live
    (scope `marketer`)."""
    active_id = deployed.active_deployment_id(session)
    last = deployed.latest_deployment(session)
    states = live.states(session, directory=get_settings().rules_dir, deployment_id=active_id)
    return StatusOut(
        active=_deployment(deployed.get_deployment(session, active_id) if active_id else None),
        last_attempt=_deployment(last),
        healthy=last is None or last.status == DeploymentStatus.ACTIVE,
        rejected_total=deployed.rejected_count(session),
        files_live=active_id is not None and all(s.state == live.SAME for s in states),
        files=[FileStateOut(file=s.file, state=s.state) for s in states],
    )


@router.post(
    "/reload",
    response_model=ReloadOut,
    responses=problem_responses(401, 403, 422, 500),
)
def reload_rules(session: DbSession, _: Marketer) -> Any:
    """Read `rules/` and activate it if every file is valid and differs from what is
    live (after a rollback too); otherwise 422 with every error, and the active rules
    keep running (scope `marketer`). `personalize rules publish` also runs the files'
    tests and a backtest first."""
    result = deployments.reload(session, directory=get_settings().rules_dir, origin="api")
    if result.status == DeploymentStatus.REJECTED:
        # Returned, not raised: the rejected attempt is recorded (committed) for /status.
        first = result.errors[0]
        return problem_response(
            422,
            f"{first['file']}:{first['line']}: {first['message']}"
            + (f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""),
            title="Rule files rejected; the active rules are unchanged",
            extra={"rule_errors": result.errors, "deployment_id": result.deployment_id},
        )
    return ReloadOut(status=result.status, deployment_id=result.deployment_id)


@router.post(
    "/rollback", response_model=DeploymentOut, responses=problem_responses(401, 403, 404, 422, 500)
)
def rollback_rules(body: RollbackIn, session: DbSession, _: Marketer) -> DeploymentOut:
    """Activate an earlier deployment, or an earlier version of one ruleset (scope
    `marketer`). The watcher and restarts leave it in place until the files in `rules/`
    change; a reload or a publish activates the files again."""
    try:
        deployment = deployments.rollback(
            session, deployment_id=body.deployment_id, version_id=body.version_id
        )
    except LookupError as exc:
        raise ProblemError(404, str(exc)) from None
    out = _deployment(deployment)
    assert out is not None
    return out


@router.get(
    "/deployments", response_model=list[DeploymentOut], responses=problem_responses(401, 403, 500)
)
def list_deployments(
    session: DbSession, _: Marketer, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[DeploymentOut]:
    """Recent reloads and rollbacks, newest first (scope `marketer`)."""
    return [d for d in map(_deployment, deployed.deployments(session, limit=limit)) if d]


@router.get(
    "/versions/{name}", response_model=list[VersionOut], responses=problem_responses(401, 403, 500)
)
def list_versions(name: str, session: DbSession, _: Marketer) -> list[VersionOut]:
    """Every recorded version of one ruleset, newest first (scope `marketer`)."""
    return [
        VersionOut(
            id=v.id,
            name=v.name,
            version=v.version,
            content_hash=v.content_hash,
            file=v.file,
            first_loaded_at=v.first_loaded_at,
        )
        for v in deployed.version_history(session, name)
    ]


@router.get("/firings", response_model=FiringsPage, responses=problem_responses(401, 403, 404, 500))
def list_firings(
    session: DbSession,
    _: Marketer,
    customer: Annotated[str | None, Query(description="A profile id or `kind:value`.")] = None,
    rule: str | None = None,
    status: Literal["scheduled", "fired", "cancelled", "suppressed"] | None = None,
    before: Annotated[int | None, id_cursor("`next_before` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FiringsPage:
    """The firings log, newest first: which rule version matched which event, the
    facts that mattered and the actions produced (scope `marketer`)."""
    customer_id = None
    if customer is not None:
        found = profiles.find(session, ref=customer)
        if found is None:
            raise ProblemError(404, "No profile matches this id or identity.")
        customer_id = found.id
    rows = repository.firings(
        session, customer=customer_id, rule_id=rule, status=status, before=before, limit=limit
    )
    items = [FiringOut.model_validate(r, from_attributes=True) for r in rows]
    return FiringsPage(items=items, next_before=items[-1].id if len(items) == limit else None)
