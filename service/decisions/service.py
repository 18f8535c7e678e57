"""Answering a decision request: the key checked, the customer's snapshot read (see
reader.py), and what each placement shows chosen from it, then logged (see log.py).

Choosing is pure, from a profile snapshot (or none), the request's context and the
active rules; nothing in it touches the database. A placement shows the content of its
highest-priority matching placement rule (ties: ruleset, then rule id, so the answer is
the same for the same inputs and versions), else the newest content an event rule left
in the customer's inbox for it, else its default. Its offers: those of every matching
placement rule, then those waiting in the inbox, for customers with marketing consent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.auth.service import Scope, digest
from service.decisions.log import DecisionLog
from service.decisions.reader import Reader
from service.decisions.repository import InboxEntry, Snapshot
from service.decisions.schemas import DecisionIn
from service.errors import FieldError, ProblemError
from service.events.identity import ANONYMOUS_ID, USER_ID, lookup_key
from service.experiments.declared import Arm, Catalogue, catalogue
from service.language.engine import CompiledRule, CompiledRuleset, Engine
from service.language.facts import Profile, render
from service.language.schema import PlacementDefault, placement_key
from service.rules.evaluator import actions_of, facts_used
from service.ruleset.runtime import RUNTIME, Active
from service.settings import get_settings
from service.vocabulary import Channel

MARKETING = "marketing"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def answer_request(
    *, reader: Reader, log: DecisionLog, body: DecisionIn, token: str | None, explain: bool
) -> dict[str, Any]:
    """The decision for a validated request, logged; ProblemError for 401, 403, 422 and
    503. Every request's key is checked: by this process's cache when it can be trusted
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
    _authorize(scopes=scopes)
    # The rules the read found active; a deployment this process has not compiled yet
    # is compiled now, however long that takes beyond the budget.
    active = await reader.rules_for(got.snapshot.deployment_id) if got is not None else None
    if got is None or active is None:
        active, snapshot, degraded = reader.rules_without_database(), Snapshot(None, None, []), True
    else:
        snapshot, degraded = got.snapshot, False
    answer, chosen, context, now = _answer(
        body=body, active=active, snapshot=snapshot, degraded=degraded, explain=explain
    )
    log.record(*_log_entry(answer=answer, chosen=chosen, context=context, now=now))
    return answer


def _authorize(*, scopes: frozenset[str] | None) -> None:
    """The key's scopes (None: it could not be checked) allow a decision, or the error."""
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


def _who(body: DecisionIn) -> tuple[uuid.UUID | None, tuple[str, str] | None]:
    if body.customer_id is not None:
        return body.customer_id, None
    for kind, value in ((USER_ID, body.user_id), (ANONYMOUS_ID, body.anonymous_id)):
        key = lookup_key(kind, value) if value else None
        if key is not None:
            return None, (key.kind, key.value)
    return None, None


def _answer(
    *, body: DecisionIn, active: Active, snapshot: Snapshot, degraded: bool, explain: bool
) -> tuple[dict[str, Any], dict[str, Chosen], dict[str, Any], datetime]:
    """The response document (DecisionOut's shape), built as plain data: this is the
    hot path, and FastAPI's response model would validate it all again. With it, the
    request's context as sent and the moment decided, for the log."""
    defaults = defaults_of(active.rulesets)
    _check_placements(placements=body.placements, known=defaults)
    now = datetime.now(UTC)
    context = body.context.model_dump(mode="json", exclude_none=True)  # as sent, for both
    chosen = choose(
        engine=RUNTIME.engine,
        rulesets=active.rulesets,
        placements=body.placements,
        profile=snapshot.profile,
        context=context,
        inbox=snapshot.inbox,
        now=now,
        consent_defaults=get_settings().consent_defaults,
        explain=explain,
        anonymous_id=body.anonymous_id,
    )
    profile = snapshot.profile
    answer: dict[str, Any] = {
        "decision_id": uuid.uuid4(),
        "customer_id": profile.customer_id if profile else None,
        "segments": list(profile.segments) if profile else [],
        "degraded": degraded,
        "rule_versions": _rule_versions(active=active),
        "placements": {
            name: {
                "content": c.content,
                "offers": c.offers,
                "experiments": [
                    {"experiment": a.experiment, "variant": a.variant} for a, _ in c.arms
                ],
                "explain": c.explain if explain else None,
            }
            for name, c in chosen.items()
        },
    }
    return answer, chosen, context, now


def _check_placements(*, placements: list[str], known: dict[str, Any]) -> None:
    unknown = [
        FieldError(field=f"body.placements.{i}", message=f"unknown placement {p!r}")
        for i, p in enumerate(placements)
        if p not in known
    ]
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise ProblemError(422, f"Unknown placement; known: {names}.", errors=unknown)


def _rule_versions(*, active: Active) -> list[dict[str, Any]]:
    """The versions of the active rulesets that speak of placements."""
    return [
        {
            "ruleset": r.name,
            "version": r.loaded.definition.version,
            "version_id": active.version_ids.get(r.name),
            "content_hash": r.loaded.content_hash,
        }
        for r in active.rulesets
        if r.loaded.definition.placements or any(k.startswith("placement:") for k in r.by_trigger)
    ]


def _log_entry(
    *, answer: dict[str, Any], chosen: dict[str, Chosen], context: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The decision log's row for an answer, its exposures (one per thing shown), and
    its experiment exposures (one per experiment a placement shown is in)."""
    exposures = []
    arms = [
        {
            "experiment": arm.experiment,
            "variant": arm.variant,
            "unit": unit,
            "customer_id": answer["customer_id"],
            "segments": arm.segments,
            "source": "decision",
            "at": now,
        }
        for c in chosen.values()
        for arm, unit in c.arms
    ]
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
            name: {"content": p["content"], "offers": p["offers"], "experiments": p["experiments"]}
            for name, p in answer["placements"].items()
        },
        "rule_versions": answer["rule_versions"],
    }
    return decision, exposures, arms


@dataclass
class Chosen:
    content: dict[str, Any]
    offers: list[dict[str, Any]]
    explain: list[dict[str, Any]] = field(default_factory=list)
    arms: list[tuple[Arm, str]] = field(default_factory=list)  # (arm, the unit bucketed)


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
    anonymous_id: str | None = None,
) -> dict[str, Chosen]:
    known = profile or Profile()
    tree = {
        "context": context,
        "profile": known.facts(now=now, consent_defaults=consent_defaults),
    }
    marketing = bool(tree["profile"]["consent"].get(MARKETING, False)) and profile is not None
    defaults = defaults_of(rulesets)
    experiments = catalogue(rulesets)
    units = {"customer": str(profile.customer_id) if profile else None, "anonymous": anonymous_id}
    chosen = {}
    for placement in placements:
        one = _choose_one(
            engine=engine,
            rulesets=rulesets,
            placement=placement,
            default=defaults[placement],
            tree=tree,
            inbox=[x for x in inbox if x.placement == placement],
            marketing=marketing,
            explain=explain,
        )
        if experiments.for_placement(placement):
            _experiment(one, experiments, placement, units, tree=tree, now=now)
            if one.arms and one.arms[-1][0].suppressed:
                _, spec = defaults[placement]
                one.content = {"id": spec.content, "params": spec.params}
                one.content |= {"source": "default", "rule": None}
                one.offers = [o for o in one.offers if o["source"] != "rule"]
        chosen[placement] = one
    return chosen


def _experiment(
    chosen: Chosen,
    experiments: Catalogue,
    placement: str,
    units: dict[str, str | None],
    *,
    tree: dict[str, Any],
    now: datetime,
) -> None:
    """The visitor's variants of the experiments on this placement, in order: a variant
    with content shows it; a held-out or suppressed one shows the default (and stops)."""
    segments = tree["profile"].get("segments", ())
    for declared in experiments.for_placement(placement):
        unit = units[declared.spec.unit]
        arm = declared.arm(unit, segments=segments, now=now) if unit else None
        if arm is None:
            continue
        assert unit is not None
        chosen.arms.append((arm, unit))
        if arm.suppressed:
            return
        if arm.changes.content:
            chosen.content = {
                "id": arm.changes.content,
                "params": render(arm.changes.params, tree),
                "source": "experiment",
                "rule": None,
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
            content = {
                "id": kept.name,
                "params": kept.params,
                "source": Channel.INBOX,
                "rule": None,
            }
    if content is None:
        _, spec = default
        content = {"id": spec.content, "params": spec.params, "source": "default", "rule": None}
    if marketing:
        offers += [
            {"offer": x.name, "params": x.params, "source": Channel.INBOX, "rule": None}
            | {"expires_at": x.expires_at, "inbox_id": x.id}
            for x in inbox
            if x.kind == "offer"
        ]
    unique: dict[str, dict[str, Any]] = {}
    for offer in offers:  # one of each code, the first (highest priority) kept
        unique.setdefault(offer["offer"], offer)
    return Chosen(content=content, offers=list(unique.values()), explain=considered)
