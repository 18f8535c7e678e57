"""Rules in the running service: evaluating stored events exactly once, re-checking
waiting rules at their due time (both through the evaluation loop, `loop.py`, over
PostgreSQL), and putting set-aside items back. Which rules are active:
`service.ruleset.runtime`; reload and rollback: `deployments.py`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from service.events import outbox
from service.events.models import Event
from service.experiments import exposures
from service.language.facts import Profile
from service.pipeline.isolation import isolated
from service.pipeline.models import SetAside, Stage
from service.pipeline.service import register_replay, set_aside
from service.profiles import facts as profile_facts
from service.rules import repository
from service.rules.loop import Firing, Loop, SetClock
from service.rules.models import RuleFiring
from service.rules.store import DatabaseStore, trigger_of
from service.ruleset.runtime import RUNTIME, Active
from service.segments import service as segments
from service.settings import get_settings
from service.vocabulary import SEGMENT_EVENT_SOURCE, FiringStatus

log = structlog.get_logger(__name__)


class Act(Protocol):
    """What a fired rule sets off (its actions), in the evaluating transaction."""

    def __call__(
        self,
        session: Session,
        *,
        firing_id: int,
        customer_id: uuid.UUID,
        event_id: int,
        version_id: int,
        rule_id: str,
        actions: list[dict[str, Any]],
        now: datetime,
    ) -> object: ...


# --- evaluation -----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _loop(session: Session, active: Active, *, act: Act, now: datetime) -> Loop:
    def fired(firing: Firing) -> None:
        assert firing.version_id is not None
        act(
            session,
            firing_id=firing.firing_id,
            customer_id=firing.customer_id,
            event_id=firing.event_id,
            version_id=firing.version_id,
            rule_id=firing.rule_id,
            actions=firing.actions,
            now=firing.at,
        )
        if not firing.actions and firing.experiments:
            # A control group or a holdout: exposed now, when the others are sent.
            rows = exposures.arms(
                firing.experiments, customer_id=firing.customer_id, source="firing", at=firing.at
            )
            exposures.record(session, rows)

    return Loop(
        engine=RUNTIME.engine,
        rulesets=active.rulesets,
        store=DatabaseStore(session),
        clock=SetClock(now),
        fired=fired,
        consent_defaults=get_settings().consent_defaults,
        version_ids=active.version_ids,
    )


def evaluate_pending(
    session: Session, *, act: Act, limit: int = 500, now: datetime | None = None
) -> int:
    """Evaluate up to `limit` resolved events not yet evaluated; returns how many.
    The firings and the events' `evaluated_at` commit together, and each (event, rule)
    can fire once: evaluating an event again has no second effect. An event (or a
    customer's segments) whose processing raises is set aside with its error, and the
    rest of the batch commits. With no rules active (activating them is the start-up's
    or the CLI's work), events stay pending and 0 is returned."""
    now = now or _now()
    events = outbox.claim_unevaluated(session, limit=limit)
    if not events:
        return 0
    settings = get_settings()
    # The active rules are read once the customers are locked: a deployment committed
    # before the locks is seen; one committed after waits for them in its backfill.
    profile_facts.lock_for_evaluation(session, {e.customer_id for e in events if e.customer_id})
    active = RUNTIME.active(session)
    if active.deployment_id is None:
        log.warning("rules_none_active", pending=len(events))
        return 0
    oldest = now - timedelta(seconds=settings.rules_max_event_age_s)
    fresh = [e for e in events if e.occurred_at >= oldest]
    if active.segments is not None:
        # Segments first, so rules see the membership this event brought about. The
        # events that announce a change need not recompute it.
        _update_segments(
            session,
            active,
            {e.customer_id for e in events if e.customer_id and e.source != SEGMENT_EVENT_SOURCE},
            now=now,
            reason="event",
        )
    loop = _loop(session, active, act=act, now=now)

    def evaluate_all(batch: Sequence[Event]) -> None:
        profiles = _profiles(session, {e.customer_id for e in batch if e.customer_id}, now=now)
        for event in batch:
            trigger = trigger_of(event)
            loop.evaluate(trigger, profiles(trigger.customer_id))

    for event, error in isolated(session, fresh, evaluate_all, stage=Stage.EVALUATE):
        set_aside(
            session,
            stage=Stage.EVALUATE,
            item_id=event.id,
            customer_id=event.customer_id,
            error=error,
        )
    outbox.mark_evaluated(session, [e.id for e in events], at=now)
    return len(events)


def _profiles(
    session: Session, customers: set[uuid.UUID], *, now: datetime
) -> Callable[[uuid.UUID], Profile]:
    """These customers' profile facts as of `now`, read at once (an erased one: an empty
    profile)."""
    found = profile_facts.read(session, customers, currency=get_settings().shop_currency, now=now)
    return lambda customer: found.get(customer) or Profile(customer_id=customer)


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


def run_due(session: Session, *, act: Act, limit: int = 500, now: datetime | None = None) -> int:
    """Re-check waiting rules whose time has come; returns how many were decided. One
    whose re-check raises is set aside (status `set_aside`) with its error."""
    now = now or _now()
    store = DatabaseStore(session)
    due = store.due(now=now, limit=limit)
    if not due:
        return 0
    active = RUNTIME.active(session)
    profile_facts.lock_for_evaluation(session, {f.customer_id for f in due})
    loop = _loop(session, active, act=act, now=now)

    def decide_all(batch: Sequence[RuleFiring]) -> None:
        profiles = _profiles(session, {f.customer_id for f in batch}, now=now)
        for firing in batch:
            loop.decide(firing, profiles(firing.customer_id))

    for firing, error in isolated(session, due, decide_all, stage=Stage.TIMERS):
        firing.status = FiringStatus.SET_ASIDE
        set_aside(
            session,
            stage=Stage.TIMERS,
            item_id=firing.id,
            customer_id=firing.customer_id,
            error=error,
        )
    return len(due)


# --- set-aside items put back ---------------------------------------------------------------


def _replay_evaluation(session: Session, row: SetAside) -> None:
    """The event goes back to the rules' outbox (evaluated again unless older than
    RULES_MAX_EVENT_AGE_S by then)."""
    assert row.item_id is not None
    outbox.unmark_evaluated(session, row.item_id)


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
