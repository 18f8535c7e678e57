"""The marketers' profile facts in rule files, without a database: validation accepts
them, a file's own tests can give them, and a test profile that leaves them out is a
customer with no orders, as in the service."""

from __future__ import annotations

import textwrap

import pytest

from service.language.engine import Engine
from service.language.facts import PROFILE_FACTS, check_path
from service.language.loader import load_source
from service.language.parse import RulesInvalid
from service.rules.testing import run_file

ENGINE = Engine()
NEW_FACTS = {
    "orders_30d": 1,
    "orders_90d": 2,
    "orders_365d": 3,
    "spent_30d": 10,
    "spent_90d": 20,
    "spent_365d": 30,
    "clv": 40,
    "discount_orders": 1,
    "discount_share": 0.25,
}
LISTS = ("categories_viewed", "categories_bought")


def run(body: str) -> list:
    source = "ruleset: t\nversion: 1\n" + textwrap.dedent(body)
    return run_file(load_source("t.yaml", source), engine=ENGINE, consent_defaults={})


@pytest.mark.parametrize("fact", [*NEW_FACTS, *LISTS])
def test_each_fact_is_known(fact: str) -> None:
    assert fact in PROFILE_FACTS
    assert check_path(f"profile.{fact}", set()) is None


def test_an_unknown_fact_names_the_new_ones() -> None:
    source = "ruleset: t\nversion: 1\n" + textwrap.dedent("""
    rules:
      - id: r
        trigger: {event: Page Viewed}
        when: [{profile.spent_last_90_days: {gt: 500}}]
        actions: [{content: {placement: hero, content: x}}]
    """)
    with pytest.raises(RulesInvalid) as caught:
        load_source("t.yaml", source)
    (error,) = [str(e) for e in caught.value.errors]
    assert "unknown profile fact 'spent_last_90_days'" in error
    for fact in ("spent_90d", "categories_bought", "clv"):
        assert fact in error


@pytest.mark.parametrize(("fact", "value"), NEW_FACTS.items())
def test_a_test_profile_gives_each_number(fact: str, value: float) -> None:
    (given, missing) = run(f"""
    rules:
      - id: r
        trigger: {{event: Page Viewed}}
        when: [{{profile.{fact}: {{gte: {value}}}}}]
        actions: [{{content: {{placement: hero, content: x}}}}]
    tests:
      - name: given
        profile: {{{fact}: {value}}}
        events: [{{at: 0s, event: Page Viewed}}]
        expect: [{{rule: r}}]
      - name: below
        profile: {{{fact}: {value / 2}}}
        events: [{{at: 0s, event: Page Viewed}}]
        expect: [{{rule: r}}]
    """)
    assert given.passed, given.failures
    assert missing.failures == ["expected r to act; acted: nothing"]


@pytest.mark.parametrize("fact", LISTS)
def test_a_test_profile_gives_each_list(fact: str) -> None:
    results = run(f"""
    rules:
      - id: r
        trigger: {{event: Page Viewed}}
        when: [{{profile.{fact}: {{contains: Games}}}}]
        actions: [{{content: {{placement: hero, content: x}}}}]
    tests:
      - name: in the list
        profile: {{{fact}: [Books, Games]}}
        events: [{{at: 0s, event: Page Viewed}}]
        expect: [{{rule: r}}]
      - name: not in the list
        profile: {{{fact}: [Books]}}
        events: [{{at: 0s, event: Page Viewed}}]
        expect: []
      - name: not given
        events: [{{at: 0s, event: Page Viewed}}]
        expect: []
    """)
    assert all(r.passed for r in results), [r.failures for r in results]


def test_left_out_they_are_a_customer_with_no_orders() -> None:
    """Counts and amounts 0, lists empty, the share missing; CLV and total spent given
    as one."""
    results = run("""
    rules:
      - id: little
        trigger: {event: Page Viewed}
        when:
          - profile.spent_90d: {lt: 100}
          - profile.orders_365d: 0
          - profile.categories_viewed: {not_contains: Games}
          - profile.discount_share: {exists: false}
        actions: [{content: {placement: hero, content: x}}]
      - id: valuable
        trigger: {event: Page Viewed}
        when: [{profile.clv: {gte: 500}}, {profile.total_spent: {gte: 500}}]
        actions: [{content: {placement: hero2, content: y}}]
    tests:
      - name: a new customer
        events: [{at: 0s, event: Page Viewed}]
        expect: [{rule: little}]
      - name: total spent given
        profile: {total_spent: 800}
        events: [{at: 0s, event: Page Viewed}]
        expect: [{rule: little}, {rule: valuable}]
      - name: clv given
        profile: {clv: 800}
        events: [{at: 0s, event: Page Viewed}]
        expect: [{rule: little}, {rule: valuable}]
    """)
    assert all(r.passed for r in results), [r.failures for r in results]
