"""The evaluation loop's store in the service: history read from the events, the
firings log in `rule_firings`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import structlog

from service.events import outbox
from service.events.models import Event
from service.language.facts import TriggerEvent
from service.rules import evaluator, repository
from service.rules.evaluator import Outcome
from service.rules.loop import NO_LONGER_ACTIVE, Wait
from service.rules.models import RuleFiring
from service.vocabulary import FiringStatus

log = structlog.get_logger(__name__)


def trigger_of(event: Event) -> TriggerEvent:
    assert event.customer_id is not None, "only resolved events are evaluated"
    return TriggerEvent(
        id=event.id,
        customer_id=event.customer_id,
        source=event.source,
        type=event.type,
        name=event.name,
        occurred_at=event.occurred_at,
        properties=event.properties or {},
        context=event.context or {},
    )


class DatabaseStore(repository.PgStore):
    """Reads and writes in the caller's transaction; waits come back locked."""

    def record(
        self, trigger: TriggerEvent, outcome: Outcome, *, version_id: int | None, now: datetime
    ) -> int | None:
        assert version_id is not None, "a deployed rule has a version"
        waits = outcome.status == FiringStatus.SCHEDULED
        firing = repository.insert_firing(
            self.session,
            event_id=trigger.id,
            customer_id=trigger.customer_id,
            ruleset=outcome.ruleset.name,
            rule_id=outcome.rule.rule.id,
            rule_version=outcome.rule.rule.version,
            version_id=version_id,
            status=outcome.status,
            limits_group=outcome.group,
            reason=outcome.reason,
            facts=outcome.facts,
            actions=outcome.actions,
            due_at=outcome.due_at,
            decided_at=None if waits else now,
            guard=evaluator.guard(outcome.rule, trigger) if waits else None,
            cancel_on=sorted(outcome.rule.cancelled_by) if waits else None,
            experiments=[arm.as_dict() for arm in outcome.arms] or None,
        )
        if firing is not None:
            log.info(
                "rule_matched",
                firing_id=firing,
                event_id=trigger.id,
                rule=outcome.rule.rule.id,
                status=outcome.status,
            )
        return firing

    def waiting(self, customer: uuid.UUID, *, event: str) -> Sequence[Wait]:
        return repository.scheduled_for(self.session, customer, event=event)

    def trigger_of(self, wait: Wait) -> TriggerEvent | None:
        event = outbox.get_event(self.session, wait.event_id)
        return trigger_of(event) if event is not None else None

    def finish(
        self, wait: Wait, *, outcome: Outcome | None, version_id: int | None, now: datetime
    ) -> None:
        assert isinstance(wait, RuleFiring)
        if outcome is None:
            wait.status, wait.reason = FiringStatus.CANCELLED, NO_LONGER_ACTIVE
        else:
            wait.decided_version_id = version_id
            wait.facts = {**wait.facts, "at_due": outcome.facts}
            wait.actions = outcome.actions
            wait.experiments = [arm.as_dict() for arm in outcome.arms] or None
            wait.status, wait.reason = outcome.status, outcome.reason
        wait.decided_at = now
        if outcome is not None:
            log.info("rule_decided", firing_id=wait.id, rule=wait.rule_id, status=wait.status)

    def due(self, *, now: datetime, limit: int) -> Sequence[RuleFiring]:
        """Waiting rules due by `now`, locked (others take other ones), soonest first."""
        return repository.claim_due(self.session, now=now, limit=limit)
