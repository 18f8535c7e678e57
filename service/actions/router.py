"""Actions over HTTP: a customer's actions and waits, dead actions, and retrying one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from service.actions import repository, service
from service.actions.models import Action
from service.actions.schemas import (
    ActionOut,
    ActionsPage,
    AttemptOut,
    ProfileActionsOut,
    RuleRef,
    Status,
    WaitOut,
)
from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import ProblemError, problem_responses
from service.params import id_cursor, row_id
from service.profiles import service as profiles
from service.vocabulary import ActionStatus

router = APIRouter(tags=["actions"])
Marketer = Annotated[ApiKey, Depends(require(Scope.MARKETER))]


def action_views(session: Session, actions: list[Action]) -> list[ActionOut]:
    attempts: dict[int, list[AttemptOut]] = {}
    for a in repository.attempts_of(session, [x.id for x in actions]):
        attempts.setdefault(a.action_id, []).append(
            AttemptOut.model_validate(a, from_attributes=True)
        )
    views = []
    for action in actions:
        firing = repository.firing(session, action.firing_id)
        assert firing is not None
        views.append(
            ActionOut(
                id=action.id,
                customer_id=action.customer_id,
                rule=RuleRef(
                    ruleset=firing.ruleset, id=firing.rule_id, version=firing.rule_version
                ),
                event_id=firing.event_id,
                channel=action.channel,
                status=action.status,
                reason=action.reason,
                last_error=action.last_error,
                attempts=attempts.get(action.id, []),
                next_attempt_at=action.next_attempt_at
                if action.status == ActionStatus.PENDING
                else None,
                created_at=action.created_at,
                finished_at=action.finished_at,
                payload=action.payload,
            )
        )
    return views


@router.get(
    "/v1/profiles/{ref}/actions",
    response_model=ProfileActionsOut,
    responses=problem_responses(401, 403, 404, 500),
)
def profile_actions(
    ref: Annotated[str, Path(description="A profile id, or an identity as `kind:value`")],
    session: DbSession,
    _: Marketer,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ProfileActionsOut:
    """A customer's actions (pending, sent, cancelled, dead, with reasons and attempts)
    and the rules waiting for their due time or cancelled then (scope `marketer`)."""
    customer = profiles.find(session, ref=ref)
    if customer is None:
        raise ProblemError(404, "No profile matches this id or identity.")
    actions = repository.of_customer(session, customer.id, limit=limit)
    waits = [
        WaitOut(
            firing_id=f.id,
            rule=RuleRef(ruleset=f.ruleset, id=f.rule_id, version=f.rule_version),
            event_id=f.event_id,
            status=f.status,
            reason=f.reason,
            due_at=f.due_at,
            decided_at=f.decided_at,
            guard=f.guard,
            cancel_on=f.cancel_on,
        )
        for f in repository.waiting_of(session, customer.id, limit=limit)
    ]
    return ProfileActionsOut(actions=action_views(session, actions), waiting=waits)


@router.get(
    "/v1/actions", response_model=ActionsPage, responses=problem_responses(401, 403, 422, 500)
)
def list_actions(
    session: DbSession,
    _: Marketer,
    status: Status = ActionStatus.DEAD,
    after: Annotated[int | None, id_cursor("The last id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ActionsPage:
    """Actions by status, oldest first; by default the dead ones (scope `marketer`)."""
    actions = repository.with_status(session, status, after_id=after, limit=limit)
    return ActionsPage(
        items=action_views(session, actions),
        next_after=actions[-1].id if len(actions) == limit else None,
    )


@router.post(
    "/v1/actions/{action_id}/retry",
    response_model=ActionOut,
    responses=problem_responses(401, 403, 404, 409, 500),
)
def retry_action(action_id: Annotated[int, row_id()], session: DbSession, _: Marketer) -> ActionOut:
    """Give a dead action a new set of attempts (scope `marketer`)."""
    action = service.retry_dead(session, action_id=action_id, now=datetime.now(UTC))
    if action is None:
        if repository.get(session, action_id) is None:
            raise ProblemError(404, f"No action {action_id}.")
        raise ProblemError(409, f"Action {action_id} is not dead: only dead actions are retried.")
    return action_views(session, [action])[0]
