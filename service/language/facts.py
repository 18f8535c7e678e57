"""The facts a rule can test, and how they are laid out for one evaluation.

A rule sees three namespaces: `event` (the trigger: name, type, source, properties),
`context` (the trigger's context: page, locale, device…) and `profile` (the customer:
computed traits, traits, segments, consent). The same layout serves the rule engine,
action parameters (`{{ profile.traits.first_name }}`) and the firings log.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

# Identify traits from the Segment spec; a ruleset lists others under `traits:`.
STANDARD_TRAITS = frozenset(
    {
        "address",
        "age",
        "avatar",
        "birthday",
        "company",
        "created_at",
        "description",
        "first_name",
        "gender",
        "id",
        "last_name",
        "name",
        "title",
        "username",
        "website",
        "timezone",
        "locale",
        "country",
        "city",
    }
)

# Orders and spend are also given over the last 30, 90 and 365 days.
WINDOW_DAYS = (30, 90, 365)

# Computed on every event, at the evaluation (the windows), or by the scheduled RFM job.
PROFILE_FACTS = frozenset(
    {
        "orders_count",
        "total_spent",
        "clv",
        "average_order_value",
        "days_since_first_order",
        "days_since_last_order",
        "days_since_last_seen",
        *(f"orders_{days}d" for days in WINDOW_DAYS),
        *(f"spent_{days}d" for days in WINDOW_DAYS),
        "discount_orders",
        "discount_share",
        "categories_viewed",
        "categories_bought",
        "rfm_recency",
        "rfm_frequency",
        "rfm_monetary",
        "segments",
    }
)
EVENT_FACTS = frozenset({"name", "type", "source"})
REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.$-]+)\s*\}\}")


def check_path(path: str, traits: frozenset[str] | set[str]) -> str | None:
    """Why `path` names no fact, or None when it does."""
    parts = path.split(".")
    root, rest = parts[0], parts[1:]
    if root == "context" and rest:
        return None
    if root == "event" and rest:
        if rest[0] == "properties" and len(rest) > 1:
            return None
        if len(rest) == 1 and rest[0] in EVENT_FACTS:
            return None
        return "use event.name, event.type, event.source or event.properties.<name>"
    if root == "profile" and rest:
        if len(rest) == 1 and rest[0] in PROFILE_FACTS:
            return None
        if rest[0] == "consent" and len(rest) == 2:
            return None
        if rest[0] == "traits" and len(rest) >= 2:
            if rest[1] in traits:
                return None
            return (
                f"unknown trait {rest[1]!r}; list it under `traits:` at the top of the file "
                "if identify calls set it"
            )
        return (
            f"unknown profile fact {'.'.join(rest)!r}; profile facts are "
            f"{', '.join(sorted(PROFILE_FACTS))}, consent.<purpose> and traits.<name>"
        )
    return "a fact starts with event., context. or profile."


def references(action: BaseModel) -> list[str]:
    """Fact paths referenced by an action's parameters."""
    found: list[str] = []
    for value in _strings(action.model_dump()):
        found.extend(REFERENCE.findall(value))
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def render(value: Any, facts: dict[str, Any]) -> Any:
    """Fill `{{ path }}` references from `facts`. A string that is one reference takes
    the fact's own type; a reference to a missing fact becomes empty. Nothing else in
    the text is interpreted."""
    if isinstance(value, dict):
        return {k: render(v, facts) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, facts) for v in value]
    if not isinstance(value, str):
        return value
    whole = REFERENCE.fullmatch(value.strip())
    if whole:
        return lookup(facts, whole.group(1))
    return REFERENCE.sub(lambda m: _text(lookup(facts, m.group(1))), value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def lookup(facts: dict[str, Any], path: str) -> Any:
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class Profile:
    """A customer as rules see them; money (`total_spent`, `spent_in`) is in the shop's
    currency. `orders_in` and `spent_in` are the orders placed, and their total less
    refunds, in each of the last WINDOW_DAYS days before the moment the profile was read
    for (an evaluation reads its profiles at its own `now`). The totals are summed
    exactly by the database and given as numbers to compare, converted once there rather
    than at each evaluation."""

    customer_id: uuid.UUID | None = None
    orders_count: int = 0
    total_spent: Decimal = Decimal(0)
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    last_seen_at: datetime | None = None
    orders_in: tuple[int, ...] = (0,) * len(WINDOW_DAYS)
    spent_in: tuple[float, ...] = (0.0,) * len(WINDOW_DAYS)
    discount_orders: int = 0
    categories_viewed: tuple[str, ...] = ()
    categories_bought: tuple[str, ...] = ()
    rfm: tuple[int | None, int | None, int | None] = (None, None, None)
    traits: dict[str, Any] = field(default_factory=dict)
    segments: tuple[str, ...] = ()
    consent: dict[str, bool] = field(default_factory=dict)

    def facts(self, *, now: datetime, consent_defaults: dict[str, bool]) -> dict[str, Any]:
        """The facts, built for every evaluation: kept cheap."""
        count = self.orders_count
        # Compared as numbers only; money is never computed with floats.
        spent = float(self.total_spent)
        facts = {
            "orders_count": count,
            "total_spent": spent,
            # Historic lifetime value: what the customer has spent, less refunds.
            "clv": spent,
            "average_order_value": float(round(self.total_spent / count, 2)) if count else None,
            "days_since_first_order": _days(now, self.first_order_at),
            "days_since_last_order": _days(now, self.last_order_at),
            "days_since_last_seen": _days(now, self.last_seen_at),
            "discount_orders": self.discount_orders,
            "discount_share": self.discount_orders / count if count else None,
            "categories_viewed": list(self.categories_viewed),
            "categories_bought": list(self.categories_bought),
            "rfm_recency": self.rfm[0],
            "rfm_frequency": self.rfm[1],
            "rfm_monetary": self.rfm[2],
            "segments": list(self.segments),
            "consent": {**consent_defaults, **self.consent},
            "traits": self.traits,
        }
        facts.update(zip(_ORDERS_KEYS, self.orders_in, strict=True))
        facts.update(zip(_SPENT_KEYS, self.spent_in, strict=True))
        return facts


_ORDERS_KEYS = tuple(f"orders_{days}d" for days in WINDOW_DAYS)
_SPENT_KEYS = tuple(f"spent_{days}d" for days in WINDOW_DAYS)


def _days(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, (now - then).days)


@dataclass(frozen=True)
class TriggerEvent:
    """The event a rule is evaluated for, as stored."""

    id: int
    customer_id: uuid.UUID
    source: str
    type: str
    name: str | None
    occurred_at: datetime
    properties: dict[str, Any]
    context: dict[str, Any]

    @property
    def trigger_name(self) -> str | None:
        """The name rules trigger on: track events by name, pages and screens as
        `Page Viewed` / `Screen Viewed`, identify calls as `Identify`."""
        return trigger_name(self.type, self.name)

    def facts(self) -> dict[str, Any]:
        return {
            "name": self.trigger_name,
            "type": self.type,
            "source": self.source,
            "properties": self.properties,
        }


def trigger_name(type_: str, name: str | None) -> str | None:
    return {"page": "Page Viewed", "screen": "Screen Viewed", "identify": "Identify"}.get(
        type_, name if type_ == "track" else None
    )


def stored_filter(trigger: str) -> tuple[str, str | None]:
    """(type, name) of the stored events a trigger name stands for (name None: any)."""
    special = {"Page Viewed": "page", "Screen Viewed": "screen", "Identify": "identify"}
    if trigger in special:
        return special[trigger], None
    return "track", trigger


def same_values(event: TriggerEvent, keys: list[str]) -> dict[str, Any] | None:
    """The trigger's values for a window's `same` properties; None when the trigger
    lacks one (then no other event can be "the same")."""
    values = {}
    for key in keys:
        value = event.properties.get(key)
        if value is None or isinstance(value, dict | list):
            return None
        values[key] = value
    return values


def matches_same(properties: dict[str, Any], same: dict[str, Any]) -> bool:
    """An event is "the same" when each property equals the trigger's, or its
    `products` list holds an item that does (an order with the viewed product)."""
    for key, value in same.items():
        if properties.get(key) == value:
            continue
        products = properties.get("products")
        if isinstance(products, list) and any(
            isinstance(p, dict) and p.get(key) == value for p in products
        ):
            continue
        return False
    return True
