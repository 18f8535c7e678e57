"""Two rule files for bench.rules: rules on the marketers' profile facts (orders and
spend in the last 30/90/365 days, CLV, discount use, categories viewed and bought), and
the same rules, condition for condition, on facts that were there before them (total
spent, orders, average order value, RFM, segments): measured side by side, they tell
what the new facts cost, apart from what more rules cost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from service.language.facts import Profile
from service.language.loader import load_source

CATEGORIES = ("Games", "Books", "Toys", "Garden", "Shoes", "Kitchen")
FACTS, LIKE = "marketer_facts", "older_facts"

_RULES = """
ruleset: {name}
version: 1
rules:
  - id: big_spender_this_quarter
    trigger: {{event: Page Viewed}}
    when: [{{profile.{spent_90d}: {{gt: 500}}}}, {{profile.{orders_30d}: {{gte: 1}}}}]
    actions: [{{segment: {{add: quarter_vip}}}}]
  - id: regular_this_year
    trigger: {{event: Product Viewed}}
    when:
      - profile.{orders_365d}: {{gte: 3}}
      - profile.{spent_365d}: {{gte: 300}}
      - profile.{orders_90d}: {{gte: 1}}
    actions: [{{segment: {{add: regulars}}}}]
  - id: lifetime_vip
    trigger: {{event: Order Completed}}
    when: [{{profile.{clv}: {{gte: 1000}}}}]
    actions: [{{segment: {{add: lifetime_vip}}}}]
  - id: deal_seeker
    trigger: {{event: Product Added}}
    when:
      - profile.{discount_share}: {{gte: {share}}}
      - profile.{discount_orders}: {{gte: 2}}
      - profile.consent.marketing: true
    actions: [{{segment: {{add: deal_seekers}}}}]
  - id: games_browser_not_buyer
    trigger: {{event: Product Viewed}}
    when:
      - profile.{categories_viewed}: {{contains: {viewed}}}
      - profile.{categories_bought}: {{not_contains: {bought}}}
    actions: [{{segment: {{add: games_prospects}}}}]
  - id: recent_book_buyer
    trigger: {{event: Page Viewed}}
    when:
      - profile.{spent_30d}: {{gte: 100}}
      - profile.{categories_bought}: {{contains: {books}}}
    actions: [{{segment: {{add: book_buyers}}}}]
"""
_NEW = {
    "name": FACTS,
    "share": 0.5,
    "viewed": "Games",
    "bought": "Games",
    "books": "Books",
    **{
        fact: fact
        for fact in (
            "spent_30d",
            "spent_90d",
            "spent_365d",
            "orders_30d",
            "orders_90d",
            "orders_365d",
            "clv",
            "discount_share",
            "discount_orders",
            "categories_viewed",
            "categories_bought",
        )
    },
}
# Each new fact's stand-in: a fact of the same kind (number, list) from before.
_OLD = {
    **_NEW,
    "name": LIKE,
    "share": 3,
    "viewed": "customers",
    "bought": "vip",
    "books": "customers",
    "spent_30d": "average_order_value",
    "spent_90d": "total_spent",
    "spent_365d": "total_spent",
    "orders_30d": "orders_count",
    "orders_90d": "rfm_frequency",
    "orders_365d": "orders_count",
    "clv": "total_spent",
    "discount_share": "rfm_monetary",
    "discount_orders": "orders_count",
    "categories_viewed": "segments",
    "categories_bought": "segments",
}
FILES = {FACTS: _RULES.format(**_NEW), LIKE: _RULES.format(**_OLD)}


def check_file(
    name: str,
    messages: list[Any],
    match: Callable[[Any], list[str]],
    evaluate: Callable[[Any], list[Any]],
) -> None:
    """evaluator.evaluate over the shipped files and this one fires what Engine.match
    does, for every distinct event; and each of its rules fires for some."""
    fired: Counter[str] = Counter()
    disagreements = []
    for m in messages:
        expected = set(match(m))
        got = {o.rule.rule.id for o in evaluate(m)}
        fired.update(expected)
        if got != expected:
            disagreements.append(f"evaluate fired {sorted(got)}, Engine.match {sorted(expected)}")
    rules = load_source(f"{name}.yaml", FILES[name]).definition.rules
    print(
        f"events firing each rule of {name}: " + ", ".join(f"{r.id} {fired[r.id]}" for r in rules)
    )
    silent = [r.id for r in rules if not fired[r.id]]
    if disagreements or silent:
        raise SystemExit(
            f"{name}: {len(disagreements)} disagreements, never fired: {silent}\n"
            + "\n".join(disagreements[:10])
        )


def facts_before(
    profile: Profile, *, now: datetime, consent_defaults: dict[str, bool]
) -> dict[str, Any]:
    """`Profile.facts` as it was before the marketers' facts: what each evaluation's
    facts tree cost then."""
    average = profile.total_spent / profile.orders_count if profile.orders_count else None
    return {
        "orders_count": profile.orders_count,
        "total_spent": float(profile.total_spent),
        "average_order_value": float(round(average, 2)) if average is not None else None,
        "days_since_first_order": _days(now, profile.first_order_at),
        "days_since_last_order": _days(now, profile.last_order_at),
        "days_since_last_seen": _days(now, profile.last_seen_at),
        "rfm_recency": profile.rfm[0],
        "rfm_frequency": profile.rfm[1],
        "rfm_monetary": profile.rfm[2],
        "segments": list(profile.segments),
        "consent": {**consent_defaults, **profile.consent},
        "traits": profile.traits,
    }


def _days(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, (now - then).days)
