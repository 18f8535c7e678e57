"""Rules in the running service: evaluating stored events exactly once, re-checking
waiting rules at their due time, and putting set-aside items back. Which rules are
active, reload and rollback: `deployments.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from service.actions import service as actions
from service.events.models import Event
from service.language.facts import Profile, TriggerEvent
from service.pipeline.isolation import isolated
from service.pipeline.models import SetAside, Stage
from service.pipeline.service import register_replay, set_aside
from service.profiles import facts as profile_facts
from service.rules import evaluator, repository
from service.rules.deployments import RUNTIME, Active, reload
from service.rules.evaluator import Outcome
from service.rules.models import SET_ASIDE, RuleFiring
from service.segments import service as segments
from service.segments.models import EVENT_SOURCE
from service.settings import get_settings

log = structlog.get_logger(__name__)


# --- evaluation -----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def trigger_of(event: Any) -> TriggerEvent:
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


def evaluate_pending(session: Session, *, limit: int = 500, now: datetime | None = None) -> int:
    """Evaluate up to `limit` resolved events not yet evaluated; returns how many.
    The firings and the events' `evaluated_at` commit together, and each (event, rule)
    can fire once: evaluating an event again has no second effect. An event (or a
    customer's segments) whose processing raises is set aside with its error, and the
    rest of the batch commits."""
    now = now or _now()
    events = repository.claim_unevaluated(session, limit=limit)
    if not events:
        return 0
    settings = get_settings()
    # The active rules are read once the customers are locked: a deployment committed
    # before the locks is seen; one committed after waits for them in its backfill.
    profile_facts.lock_for_evaluation(session, {e.customer_id for e in events if e.customer_id})
    active = RUNTIME.active(session)
    if active.deployment_id is None:
        reload(session, directory=settings.rules_dir, origin="startup")
        active = RUNTIME.active(session)
    oldest = now - timedelta(seconds=settings.rules_max_event_age_s)
    fresh = [e for e in events if e.occurred_at >= oldest]
    if active.segments is not None:
        # Segments first, so rules see the membership this event brought about. The
        # events that announce a change need not recompute it.
        _update_segments(
            session,
            active,
            {e.customer_id for e in events if e.customer_id and e.source != EVENT_SOURCE},
            now=now,
            reason="event",
        )

    def evaluate_all(batch: Sequence[Event]) -> None:
        _evaluate(session, active, batch, now=now)

    for event, error in isolated(session, fresh, evaluate_all, stage=Stage.EVALUATE):
        set_aside(
            session,
            stage=Stage.EVALUATE,
            item_id=event.id,
            customer_id=event.customer_id,
            error=error,
        )
    repository.mark_evaluated(session, [e.id for e in events], at=now)
    return len(events)


def _update_segments(
    session: Session, active: Active, customers: set[uuid.UUID], *, now: datetime, reason: str
) -> None:
    """Recompute these customers' segments; one whose recomputation raises is set aside."""
    assert active.segments is not None
    compiled = active.segments

    def update(batch: Sequence[uuid.UUID]) -> None:
        segments.update(
            session,
            engine=RUNTIME.engine,
            compiled=compiled,
            version_ids=active.version_ids,
            customers=batch,
            now=now,
            reason=reason,
        )

    for customer, error in isolated(session, sorted(customers), update, stage=Stage.SEGMENTS):
        set_aside(session, stage=Stage.SEGMENTS, customer_id=customer, error=error)


def _evaluate(session: Session, active: Active, events: Sequence[Event], *, now: datetime) -> None:
    settings = get_settings()
    profiles = profile_facts.read(
        session, {e.customer_id for e in events if e.customer_id}, currency=settings.shop_currency
    )
    store = repository.PgStore(session)
    for event in events:
        trigger = trigger_of(event)
        profile = profiles.get(trigger.customer_id) or Profile(customer_id=trigger.customer_id)
        _cancel_waiting(session, active, trigger, profile, store, now=now)
        outcomes = evaluator.evaluate(
            engine=RUNTIME.engine,
            rulesets=active.rulesets,
            event=trigger,
            profile=profile,
            store=store,
            now=now,
            consent_defaults=settings.consent_defaults,
        )
        for outcome in outcomes:
            _record(session, active, trigger, outcome, now=now)


def _record(
    session: Session, active: Active, trigger: TriggerEvent, outcome: Outcome, *, now: datetime
) -> None:
    firing = repository.insert_firing(
        session,
        event_id=trigger.id,
        customer_id=trigger.customer_id,
        ruleset=outcome.ruleset.name,
        rule_id=outcome.rule.rule.id,
        rule_version=outcome.rule.rule.version,
        version_id=active.version_ids[outcome.ruleset.name],
        status=outcome.status,
        limits_group=outcome.group,
        reason=outcome.reason,
        facts=outcome.facts,
        actions=outcome.actions,
        due_at=outcome.due_at,
        decided_at=now if outcome.status != "scheduled" else None,
        guard=evaluator.guard(outcome.rule, trigger) if outcome.status == "scheduled" else None,
        cancel_on=sorted(outcome.rule.cancelled_by) if outcome.status == "scheduled" else None,
    )
    if firing is not None and outcome.status == "fired":
        actions.create_for_firing(
            session,
            firing_id=firing,
            customer_id=trigger.customer_id,
            event_id=trigger.id,
            version_id=active.version_ids[outcome.ruleset.name],
            rule_id=outcome.rule.rule.id,
            actions=outcome.actions,
            now=now,
        )
    if firing is not None:
        log.info(
            "rule_matched",
            firing_id=firing,
            event_id=trigger.id,
            rule=outcome.rule.rule.id,
            status=outcome.status,
        )


def _cancel_waiting(
    session: Session,
    active: Active,
    trigger: TriggerEvent,
    profile: Profile,
    store: Any,
    *,
    now: datetime,
) -> None:
    """An event that ends a waiting rule's absence (a checkout for the waiting cart)
    cancels it at once rather than at its due time."""
    name = trigger.trigger_name
    if name is None:
        return
    for firing in repository.scheduled_for(session, trigger.customer_id, event=name):
        if firing.cancel_on is None:  # kept before `cancel_on` was: ask the active rule
            ruleset = active.ruleset(firing.ruleset)
            rule = ruleset.rules.get(firing.rule_id) if ruleset else None
            if rule is None or name not in rule.cancelled_by:
                continue
        _decide(session, active, firing, profile=profile, store=store, now=now)


def run_due(session: Session, *, limit: int = 500, now: datetime | None = None) -> int:
    """Re-check waiting rules whose time has come; returns how many were decided. One
    whose re-check raises is set aside (status `set_aside`) with its error."""
    now = now or _now()
    due = repository.claim_due(session, now=now, limit=limit)
    if not due:
        return 0
    active = RUNTIME.active(session)
    profile_facts.lock_for_evaluation(session, {f.customer_id for f in due})

    def decide_all(batch: Sequence[RuleFiring]) -> None:
        profiles = profile_facts.read(
            session, {f.customer_id for f in batch}, currency=get_settings().shop_currency
        )
        store = repository.PgStore(session)
        for firing in batch:
            profile = profiles.get(firing.customer_id) or Profile(customer_id=firing.customer_id)
            _decide(session, active, firing, profile=profile, store=store, now=now)

    for firing, error in isolated(session, due, decide_all, stage=Stage.TIMERS):
        firing.status = SET_ASIDE
        set_aside(
            session,
            stage=Stage.TIMERS,
            item_id=firing.id,
            customer_id=firing.customer_id,
            error=error,
        )
    return len(due)


def _decide(
    session: Session,
    active: Active,
    firing: RuleFiring,
    *,
    profile: Profile,
    store: Any,
    now: datetime,
) -> None:
    ruleset = active.ruleset(firing.ruleset)
    event = repository.get_event(session, firing.event_id)
    if ruleset is None or firing.rule_id not in ruleset.rules or event is None:
        _finish(firing, status="cancelled", reason="the rule is no longer active", now=now)
        return
    outcome = evaluator.recheck(
        engine=RUNTIME.engine,
        ruleset=ruleset,
        rule_id=firing.rule_id,
        event=trigger_of(event),
        profile=profile,
        store=store,
        now=now,
        consent_defaults=get_settings().consent_defaults,
        firing=firing.id,
    )
    if outcome.status == "scheduled":
        return  # still waiting: an early re-check found nothing that cancels it
    firing.decided_version_id = active.version_ids[ruleset.name]
    firing.facts = {**firing.facts, "at_due": outcome.facts}
    firing.actions = outcome.actions
    _finish(firing, status=outcome.status, reason=outcome.reason, now=now)
    if firing.status == "fired":
        actions.create_for_firing(
            session,
            firing_id=firing.id,
            customer_id=firing.customer_id,
            event_id=firing.event_id,
            version_id=firing.version_id,
            rule_id=firing.rule_id,
            actions=firing.actions,
            now=now,
        )
    log.info("rule_decided", firing_id=firing.id, rule=firing.rule_id, status=firing.status)


def _finish(firing: RuleFiring, *, status: str, reason: str | None, now: datetime) -> None:
    firing.status = status
    firing.reason = reason
    firing.decided_at = now


# --- set-aside items put back ---------------------------------------------------------------


def _replay_evaluation(session: Session, row: SetAside) -> None:
    """The event goes back to the rules' outbox (evaluated again unless older than
    RULES_MAX_EVENT_AGE_S by then)."""
    assert row.item_id is not None
    repository.unmark_evaluated(session, row.item_id)


def _replay_segments(session: Session, row: SetAside) -> None:
    """The customer's segments are recomputed now; still failing, the replay fails."""
    assert row.customer_id is not None
    profile_facts.lock_for_evaluation(session, {row.customer_id})
    active = RUNTIME.active(session)
    if active.segments is None:
        return
    segments.update(
        session,
        engine=RUNTIME.engine,
        compiled=active.segments,
        version_ids=active.version_ids,
        customers=[row.customer_id],
        now=_now(),
        reason="replay",
    )


def _replay_timer(session: Session, row: SetAside) -> None:
    """The waiting rule is due again at once."""
    assert row.item_id is not None
    repository.reschedule_set_aside(session, row.item_id)


register_replay(Stage.EVALUATE, _replay_evaluation)
register_replay(Stage.SEGMENTS, _replay_segments)
register_replay(Stage.TIMERS, _replay_timer)
