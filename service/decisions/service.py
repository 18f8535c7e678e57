"""Choosing what each placement shows: pure, from a profile snapshot (or none), the
request's context and the active rules; nothing here touches the database.

A placement shows the content of its highest-priority matching placement rule (ties:
ruleset, then rule id, so the answer is the same for the same inputs and versions),
else the newest content an event rule left in the customer's inbox for it, else its
default. Its offers: those of every matching placement rule, then those waiting in the
inbox, for customers with marketing consent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.decisions.repository import InboxEntry
from service.language.engine import CompiledRule, CompiledRuleset, Engine
from service.language.facts import Profile
from service.language.schema import PlacementDefault, placement_key
from service.rules.evaluator import actions_of, facts_used

MARKETING = "marketing"


@dataclass
class Chosen:
    content: dict[str, Any]
    offers: list[dict[str, Any]]
    explain: list[dict[str, Any]] = field(default_factory=list)


def defaults_of(rulesets: list[CompiledRuleset]) -> dict[str, tuple[str, PlacementDefault]]:
    """Placement → (ruleset, its default), over the active rulesets."""
    return {
        name: (r.name, default)
        for r in rulesets
        for name, default in r.loaded.definition.placements.items()
    }


def choose(
    *,
    engine: Engine,
    rulesets: list[CompiledRuleset],
    placements: list[str],
    profile: Profile | None,
    context: dict[str, Any],
    inbox: list[InboxEntry],
    now: datetime,
    consent_defaults: dict[str, bool],
    explain: bool,
) -> dict[str, Chosen]:
    known = profile or Profile()
    tree = {
        "context": context,
        "profile": known.facts(now=now, consent_defaults=consent_defaults),
    }
    marketing = bool(tree["profile"]["consent"].get(MARKETING, False)) and profile is not None
    defaults = defaults_of(rulesets)
    return {
        placement: _choose_one(
            engine=engine,
            rulesets=rulesets,
            placement=placement,
            default=defaults[placement],
            tree=tree,
            inbox=[x for x in inbox if x.placement == placement],
            marketing=marketing,
            explain=explain,
        )
        for placement in placements
    }


def _choose_one(
    *,
    engine: Engine,
    rulesets: list[CompiledRuleset],
    placement: str,
    default: tuple[str, PlacementDefault],
    tree: dict[str, Any],
    inbox: list[InboxEntry],
    marketing: bool,
    explain: bool,
) -> Chosen:
    key = placement_key(placement)
    matched: list[tuple[CompiledRuleset, CompiledRule]] = []
    considered: list[dict[str, Any]] = []
    for ruleset in rulesets:
        candidates = ruleset.by_trigger.get(key, ())
        if not candidates:
            continue
        hits = set(engine.match(ruleset, trigger=key, facts=tree, history={}))
        for rule in candidates:
            if rule.rule.id in hits:
                matched.append((ruleset, rule))
            if explain:
                considered.append(
                    {
                        "rule": f"{ruleset.name}/{rule.rule.id}",
                        "priority": rule.rule.priority,
                        "matched": rule.rule.id in hits,
                        "facts": facts_used(rule, tree, {}),
                    }
                )
    matched.sort(key=lambda m: (-m[1].rule.priority, m[0].name, m[1].rule.id))
    content: dict[str, Any] | None = None
    offers: list[dict[str, Any]] = []
    for ruleset, rule in matched:
        source = f"{ruleset.name}/{rule.rule.id}"
        for action in actions_of(rule, tree):
            if action["type"] == "content" and content is None:
                content = {"id": action["content"], "params": action.get("params", {})}
                content |= {"source": "rule", "rule": source}
            elif action["type"] == "offer" and marketing:
                offers.append(
                    {"offer": action["offer"], "params": action.get("params", {})}
                    | {"source": "rule", "rule": source, "expires_at": None, "inbox_id": None}
                )
    if content is None:
        kept = next((x for x in inbox if x.kind == "content"), None)
        if kept is not None:
            content = {"id": kept.name, "params": kept.params, "source": "inbox", "rule": None}
    if content is None:
        _, spec = default
        content = {"id": spec.content, "params": spec.params, "source": "default", "rule": None}
    if marketing:
        offers += [
            {"offer": x.name, "params": x.params, "source": "inbox", "rule": None}
            | {"expires_at": x.expires_at, "inbox_id": x.id}
            for x in inbox
            if x.kind == "offer"
        ]
    unique: dict[str, dict[str, Any]] = {}
    for offer in offers:  # one of each code, the first (highest priority) kept
        unique.setdefault(offer["offer"], offer)
    return Chosen(content=content, offers=list(unique.values()), explain=considered)
