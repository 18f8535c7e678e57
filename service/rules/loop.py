"""The evaluation loop, once for the service, the rule files' tests and the simulator:
evaluate an event for its customer; record what acts now and what waits; cancel a
waiting rule as soon as the event it waits for the absence of arrives; re-check a
waiting rule at its due time and fire or cancel it. Limits and cooldowns are judged
by the evaluator on the history the `Store` reads.

The ports: a `Store` (the facts and the firings log: PostgreSQL in the service, in
memory for the tests and the simulator), a `Clock`, and `Fired`, told of every rule
that acts (the service makes its actions; a test notes when).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.experiments.declared import Catalogue, catalogue
from service.language.engine import CompiledRuleset, Engine
from service.language.facts import TriggerEvent
from service.rules import evaluator
from service.rules.evaluator import Outcome, ProfileFacts
from service.vocabulary import FiringStatus

NO_LONGER_ACTIVE = "the rule is no longer active"


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass
class SetClock:
    """A clock that reads what it was set to (a batch's time, a test's fake time)."""

    at: datetime

    def now(self) -> datetime:
        return self.at


class Wait(Protocol):
    """A waiting rule, as a store keeps it."""

    @property
    def id(self) -> int: ...

    @property
    def customer_id(self) -> uuid.UUID: ...

    @property
    def event_id(self) -> int: ...

    @property
    def ruleset(self) -> str: ...

    @property
    def rule_id(self) -> str: ...

    @property
    def version_id(self) -> int | None: ...

    @property
    def cancel_on(self) -> list[str] | None: ...

    @property
    def experiments(self) -> list[dict[str, Any]] | None: ...


class Store(evaluator.Store, Protocol):
    """The history the evaluator reads, and the firings log the loop writes."""

    def record(
        self, trigger: TriggerEvent, outcome: Outcome, *, version_id: int | None, now: datetime
    ) -> int | None:
        """Log an outcome; its firing's id, or None when this event already fired this rule."""

    def waiting(self, customer: uuid.UUID, *, event: str) -> Sequence[Wait]:
        """The customer's waiting rules that `event` may cancel (all of them for a wait
        kept without the events that cancel it)."""

    def trigger_of(self, wait: Wait) -> TriggerEvent | None:
        """The event a waiting rule waits after (None once it is gone)."""

    def finish(
        self, wait: Wait, *, outcome: Outcome | None, version_id: int | None, now: datetime
    ) -> None:
        """Log a waiting rule's decision; no outcome: its rule is no longer active."""


@dataclass(frozen=True)
class Firing:
    """A rule that acts, with its rendered actions."""

    firing_id: int
    customer_id: uuid.UUID
    event_id: int
    version_id: int | None
    rule_id: str
    actions: list[dict[str, Any]]
    at: datetime
    # The customer's variants of the rule (`Arm.as_dict`): none, or a suppressed one
    # when nothing is sent (a control group, a holdout).
    experiments: list[dict[str, Any]] = field(default_factory=list)


Fired = Callable[[Firing], None]


@dataclass
class Loop:
    """The active rules over one store: evaluate events, decide waiting rules."""

    engine: Engine
    rulesets: Sequence[CompiledRuleset]
    store: Store
    clock: Clock
    fired: Fired
    consent_defaults: dict[str, bool]
    # ruleset name → its version's id (none for rules that were never deployed)
    version_ids: Mapping[str, int] = field(default_factory=dict)
    # experiment key → variant, instead of the hash (an in-file test's `variants:`)
    pinned: dict[str, str] | None = None

    @property
    def experiments(self) -> Catalogue:
        return catalogue(self.rulesets)

    def ruleset(self, name: str) -> CompiledRuleset | None:
        return next((r for r in self.rulesets if r.name == name), None)

    def evaluate(self, trigger: TriggerEvent, profile: ProfileFacts) -> list[Outcome]:
        """Cancel the waits this event ends, then evaluate it and log what it brings."""
        self._cancel_waiting(trigger, profile)
        now = self.clock.now()
        outcomes = evaluator.evaluate(
            engine=self.engine,
            rulesets=list(self.rulesets),
            event=trigger,
            profile=profile,
            store=self.store,
            now=now,
            consent_defaults=self.consent_defaults,
            catalogue=self.experiments,
            pinned=self.pinned,
        )
        for outcome in outcomes:
            self._record(trigger, outcome, now=now)
        return outcomes

    def _record(self, trigger: TriggerEvent, outcome: Outcome, *, now: datetime) -> None:
        version_id = self.version_ids.get(outcome.ruleset.name)
        firing = self.store.record(trigger, outcome, version_id=version_id, now=now)
        if firing is not None and outcome.status == FiringStatus.FIRED:
            self.fired(
                Firing(
                    firing_id=firing,
                    customer_id=trigger.customer_id,
                    event_id=trigger.id,
                    version_id=version_id,
                    rule_id=outcome.rule.rule.id,
                    actions=outcome.actions,
                    at=now,
                    experiments=[arm.as_dict() for arm in outcome.arms],
                )
            )

    def _cancel_waiting(self, trigger: TriggerEvent, profile: ProfileFacts) -> None:
        """An event that ends a waiting rule's absence (a checkout for the waiting cart)
        cancels it at once rather than at its due time."""
        name = trigger.trigger_name
        if name is None:
            return
        for wait in self.store.waiting(trigger.customer_id, event=name):
            if wait.cancel_on is None:  # kept without `cancel_on`: ask the active rule
                ruleset = self.ruleset(wait.ruleset)
                rule = ruleset.rules.get(wait.rule_id) if ruleset else None
                if rule is None or name not in rule.cancelled_by:
                    continue
            self.decide(wait, profile)

    def decide(self, wait: Wait, profile: ProfileFacts) -> None:
        """Re-check a waiting rule now: fired or cancelled, or still waiting when it is
        not due yet and nothing cancels it."""
        now = self.clock.now()
        ruleset = self.ruleset(wait.ruleset)
        trigger = self.store.trigger_of(wait)
        if ruleset is None or wait.rule_id not in ruleset.rules or trigger is None:
            self.store.finish(wait, outcome=None, version_id=None, now=now)
            return
        outcome = evaluator.recheck(
            engine=self.engine,
            ruleset=ruleset,
            rule_id=wait.rule_id,
            event=trigger,
            profile=profile,
            store=self.store,
            now=now,
            consent_defaults=self.consent_defaults,
            firing=wait.id,
            arms=self.experiments.arms_from(wait.experiments or []),
        )
        if outcome.status == FiringStatus.SCHEDULED:
            return  # still waiting: an early re-check found nothing that cancels it
        self.store.finish(
            wait, outcome=outcome, version_id=self.version_ids.get(ruleset.name), now=now
        )
        if outcome.status == FiringStatus.FIRED:
            self.fired(
                Firing(
                    firing_id=wait.id,
                    customer_id=wait.customer_id,
                    event_id=wait.event_id,
                    version_id=wait.version_id,
                    rule_id=wait.rule_id,
                    actions=outcome.actions,
                    at=now,
                    experiments=[arm.as_dict() for arm in outcome.arms],
                )
            )
