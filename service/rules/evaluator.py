"""Evaluate one event against the active rulesets, and re-check a waiting rule at its
due time. Pure logic: the facts come through a `Store` (PostgreSQL in the service, an
in-memory one for the rule files' own tests), so both run the same code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from service.experiments import declared as experiments
from service.experiments.declared import Arm, Catalogue
from service.language.engine import CompiledRule, CompiledRuleset, Engine, Window
from service.language.facts import TriggerEvent, lookup, render, same_values
from service.language.schema import AbsentSpec, CountSpec, action_kind, parse_duration
from service.vocabulary import FiringStatus


class ProfileFacts(Protocol):
    def facts(self, *, now: datetime, consent_defaults: dict[str, bool]) -> dict[str, Any]: ...


class Store(Protocol):
    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int:
        """Events named `event` in [since, until]."""

    def first_of(
        self,
        *,
        customer: uuid.UUID,
        events: list[str],
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
        exclude: int,
    ) -> tuple[str, datetime] | None:
        """The earliest of `events` in [since, until] other than the event `exclude`,
        as (name, occurred_at); ties by id."""

    def group_acted(
        self, *, customer: uuid.UUID, group: str, since: datetime, exclude: int | None
    ) -> datetime | None:
        """When a rule of `group` last acted (or was set to) for the customer since `since`."""


@dataclass
class Outcome:
    ruleset: CompiledRuleset
    rule: CompiledRule
    status: FiringStatus
    due_at: datetime
    facts: dict[str, Any]
    actions: list[dict[str, Any]]
    reason: str | None = None
    arms: list[Arm] = field(default_factory=list)  # the customer's variants of this rule

    @property
    def group(self) -> str | None:
        return self.rule.rule.limits.group if self.rule.rule.limits else None


def fact_tree(
    event: TriggerEvent, profile: ProfileFacts, *, now: datetime, consent_defaults: dict[str, bool]
) -> dict[str, Any]:
    return {
        "event": event.facts(),
        "context": event.context,
        "profile": profile.facts(now=now, consent_defaults=consent_defaults),
    }


def evaluate(
    *,
    engine: Engine,
    rulesets: list[CompiledRuleset],
    event: TriggerEvent,
    profile: ProfileFacts,
    store: Store,
    now: datetime,
    consent_defaults: dict[str, bool],
    catalogue: Catalogue | None = None,
    pinned: dict[str, str] | None = None,
) -> list[Outcome]:
    """What each ruleset does with this event: rules that act now, rules that wait
    (absence windows, delays), and rules held back by their limits. A rule under
    experiment acts as the customer's variant says (`catalogue`; `pinned` names variants
    instead of the hash, for the in-file tests)."""
    trigger = event.trigger_name
    if trigger is None:
        return []
    tree = fact_tree(event, profile, now=now, consent_defaults=consent_defaults)
    outcomes: list[Outcome] = []
    for ruleset in rulesets:
        candidates = ruleset.by_trigger.get(trigger, ())
        if not candidates:
            continue
        history, _ = _windows(candidates, event, store, now=now)
        for rule_id in engine.match(ruleset, trigger=trigger, facts=tree, history=history):
            rule = ruleset.rules[rule_id]
            arms = _arms(catalogue, ruleset, rule, event, tree, now=now, pinned=pinned)
            due = event.occurred_at + experiments.wait(rule, arms)
            outcomes.append(
                Outcome(
                    ruleset=ruleset,
                    rule=rule,
                    status=FiringStatus.SCHEDULED if due > now else FiringStatus.FIRED,
                    due_at=max(due, now),
                    facts=facts_used(rule, tree, history),
                    actions=experiments.change_actions(actions_of(rule, tree), arms, tree=tree),
                    arms=arms,
                )
            )
    _arbitrate(outcomes, customer=event.customer_id, store=store, now=now, exclude=None)
    return outcomes


def recheck(
    *,
    engine: Engine,
    ruleset: CompiledRuleset,
    rule_id: str,
    event: TriggerEvent,
    profile: ProfileFacts,
    store: Store,
    now: datetime,
    consent_defaults: dict[str, bool],
    firing: int | None,
    arms: list[Arm] | None = None,
) -> Outcome:
    """Re-evaluate a waiting rule against current data at its due time: `fired` when
    its conditions still hold (a checkout in the meantime makes them fail), else
    `cancelled` with the reason. A rule under experiment keeps the `arms` it was given
    at its trigger."""
    rule = ruleset.rules.get(rule_id)
    if rule is None:
        raise LookupError(rule_id)
    tree = fact_tree(event, profile, now=now, consent_defaults=consent_defaults)
    history, broken = _windows((rule,), event, store, now=now)
    fired = rule_id in engine.match(
        ruleset, trigger=rule.rule.trigger.key, facts=tree, history=history
    )
    arms = arms or []  # the variants given when the rule began to wait
    outcome = Outcome(
        ruleset=ruleset,
        rule=rule,
        status=FiringStatus.FIRED,
        due_at=now,
        facts=facts_used(rule, tree, history),
        actions=experiments.change_actions(actions_of(rule, tree), arms, tree=tree),
        arms=arms,
    )
    if not fired:
        outcome.status = FiringStatus.CANCELLED
        outcome.reason = "; ".join(broken) or "its conditions no longer hold"
        return outcome
    if event.occurred_at + experiments.wait(rule, arms) > now:
        outcome.status = (
            FiringStatus.SCHEDULED
        )  # not due yet (re-checked early by a cancelling event)
        return outcome
    _arbitrate([outcome], customer=event.customer_id, store=store, now=now, exclude=firing)
    return outcome


def _arms(
    catalogue: Catalogue | None,
    ruleset: CompiledRuleset,
    rule: CompiledRule,
    event: TriggerEvent,
    tree: dict[str, Any],
    *,
    now: datetime,
    pinned: dict[str, str] | None,
) -> list[Arm]:
    if catalogue is None:
        return []
    return experiments.arms_for_rule(
        catalogue,
        ruleset=ruleset.name,
        rule_id=rule.rule.id,
        unit_id=str(event.customer_id),
        segments=tree["profile"].get("segments", ()),
        now=now,
        pinned=pinned,
    )


def _windows(
    rules: tuple[CompiledRule, ...], event: TriggerEvent, store: Store, *, now: datetime
) -> tuple[dict[str, Any], list[str]]:
    """Values of the rules' count and absence conditions, and what broke an absence."""
    values: dict[str, Any] = {}
    broken: list[str] = []
    for rule in rules:
        for window in rule.windows:
            values[window.key], why = _window(window, event, store, now=now)
            if why:
                broken.append(why)
    return values, broken


def _window(
    window: Window, event: TriggerEvent, store: Store, *, now: datetime
) -> tuple[Any, str | None]:
    span = parse_duration(window.spec.within)
    same = same_values(event, window.spec.same) if window.spec.same else {}
    if isinstance(window.spec, CountSpec):
        if same is None:
            return 0, None  # the trigger lacks a `same` property: nothing can match it
        count = store.count(
            customer=event.customer_id,
            event=window.spec.event,
            since=event.occurred_at - span,
            until=event.occurred_at,
            same=same,
        )
        return count, None
    assert isinstance(window.spec, AbsentSpec)
    since, until = absence_window(event, span, now=now)
    found = store.first_of(
        customer=event.customer_id,
        events=window.spec.events,
        # Without the trigger's `same` value any such event counts: when in doubt, do not act.
        same=same or None,
        since=since,
        until=until,
        exclude=event.id,
    )
    if found is None:
        return True, None
    name, at = found
    scope = f" for the same {', '.join(window.spec.same)}" if same else ""
    return False, f"{name}{scope} at {at.isoformat()}"


def absence_window(
    event: TriggerEvent, span: timedelta, *, now: datetime
) -> tuple[datetime, datetime]:
    """Where an `absent` condition looks, as of `now`: from the trigger's own time to
    the end of its span (or now, if sooner), both ends included, the trigger itself left
    out. An order in the same second as its checkout (platforms send times to the
    second) is inside: it cancels the reminder, whichever of the two is stored first.
    `count` windows are closed at both ends too: [trigger's time - span, trigger's time],
    the trigger included; segment windows are [now - span, now]."""
    return event.occurred_at, min(now, event.occurred_at + span)


def guard(rule: CompiledRule, event: TriggerEvent) -> list[dict[str, Any]]:
    """A waiting rule's absences keyed to its trigger, as stored with it: which events,
    for which values (`same`), within how long."""
    return [
        {
            "events": w.spec.events,
            "same": same_values(event, w.spec.same) if w.spec.same else {},
            "within": w.spec.within,
        }
        for w in rule.windows
        if isinstance(w.spec, AbsentSpec)
    ]


def facts_used(rule: CompiledRule, tree: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
    used: dict[str, Any] = {path: lookup(tree, path) for path in rule.paths}
    for window in rule.windows:
        spec = window.spec
        if isinstance(spec, CountSpec):
            label = f"count {spec.event} within {spec.within}"
        else:
            label = f"absent {' / '.join(spec.events)} within {spec.within}"
        if spec.same:
            label += f" (same {', '.join(spec.same)})"
        used[label] = history.get(window.key)
    return used


def actions_of(rule: CompiledRule, tree: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule's actions with their `{{ … }}` references filled in."""
    produced = []
    for action in rule.rule.actions:
        kind = action_kind(action)
        spec = getattr(action, kind).model_dump(exclude_none=True)
        produced.append({"type": kind, **render(spec, tree)})
    return produced


def _arbitrate(
    outcomes: list[Outcome],
    *,
    customer: uuid.UUID,
    store: Store,
    now: datetime,
    exclude: int | None,
) -> None:
    """Limits: in each group the highest-priority rule wins this event, and a group that
    acted within its cooldown stays quiet."""
    winners: dict[str, Outcome] = {}
    for outcome in sorted(outcomes, key=lambda o: -o.rule.rule.priority):
        group = outcome.group
        if group is None or outcome.status not in (FiringStatus.FIRED, FiringStatus.SCHEDULED):
            continue
        if group in winners:
            outcome.status = FiringStatus.SUPPRESSED
            outcome.reason = f"{winners[group].rule.rule.id} has priority in group {group}"
            continue
        limits = outcome.rule.rule.limits
        assert limits is not None
        cooldown = parse_duration(limits.cooldown)
        acted = store.group_acted(
            customer=customer, group=group, since=now - cooldown, exclude=exclude
        )
        if acted is not None:
            outcome.status = FiringStatus.SUPPRESSED
            outcome.reason = (
                f"group {group} acted at {acted.isoformat()} (cooldown {limits.cooldown})"
            )
            continue
        winners[group] = outcome
