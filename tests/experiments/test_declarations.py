"""Experiments as rule files declare them, without a database: the format and its errors
(file and line), the catalogue, and the in-file tests bucketing like the service."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.experiments.bucketing import assign
from service.experiments.declared import HOLDOUT, catalogue, declare
from service.experiments.stopping import CannotStop, stop
from service.language.engine import Engine
from service.language.loader import load_all, load_source
from service.language.parse import RulesInvalid
from service.rules.testing import CUSTOMER, run_file

ENGINE = Engine()
NOW = datetime(2026, 12, 1, tzinfo=UTC)

CART = """\
ruleset: carts
version: 1
rules:
  - id: cart_abandoned
    trigger: {event: Product Added}
    when:
      - absent: {events: [Order Completed], within: 24h}
    actions:
      - offer: {channel: inbox, offer: CART10, params: {product: "{{ event.properties.sku }}"}}
experiments:
  - key: cart_offer
    description: Does the reminder bring orders back, and does 15% beat 10%?
    target: {rule: cart_abandoned}
    variants:
      - {name: control, suppress: true}
      - {name: ten}
      - {name: fifteen, offer: CART15, delay: 12h, params: {pct: 15}}
"""


def loaded(source: str = CART, file: str = "carts.yaml"):  # type: ignore[no-untyped-def]
    return load_source(file, source)


def errors_of(source: str) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        load_source("carts.yaml", source)
    return [str(e) for e in caught.value.errors]


def with_experiment(body: str) -> str:
    head = CART.split("experiments:")[0]
    return head + "experiments:\n" + textwrap.indent(textwrap.dedent(body), "  ")


# --- the format -----------------------------------------------------------------------


def test_a_declared_experiment_loads_with_its_variants_and_weights() -> None:
    item = loaded()
    (spec,) = item.definition.experiments
    declared = declare(spec, ruleset="carts")
    assert declared.control == "control"
    assert declared.weights == pytest.approx({"control": 1 / 3, "ten": 1 / 3, "fifteen": 1 / 3})
    assert declared.changes["control"].suppress
    assert declared.changes["fifteen"].offer == "CART15"
    assert spec.metric.event == "Order Completed"
    assert spec.metric.window == "7d"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "- {key: x, target: {rule: nope}, variants: [{name: a}, {name: b}]}",
            11,
            "no rule 'nope' in this file",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}"
            ", variants: [{name: a}, {name: b, content: c}]}",
            11,
            "content: a variant of a rule changes only",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, unit: anonymous"
            ", variants: [{name: a}, {name: b}]}",
            11,
            "unit anonymous is for placements only",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, variants: [{name: a}, {name: a}]}",
            11,
            "variant names must be unique",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}"
            ", variants: [{name: a}, {name: b, suppress: true, offer: Z}]}",
            11,
            "give suppress alone",
        ),
        (
            "- {key: x, target: {ruleset: other}, variants: [{name: a}, {name: b}]}",
            11,
            "this file's ruleset, 'carts'",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, metric: {event: Purchased}"
            ", variants: [{name: a}, {name: b}]}",
            11,
            "unknown event 'Purchased'",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, variants: [{name: a}]}",
            11,
            "two variants at least",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, start: 2026-12-01T00:00:00"
            ", variants: [{name: a}, {name: b}]}",
            11,
            "timezone",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, factors: [{name: f, levels: "
            "[{name: a, weight: 0}, {name: b, weight: 0}]}]}",
            11,
            "one level at least needs a weight above 0",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, factors: [{name: f, levels: "
            "[{name: a}, {name: b}]}], cells: [{name: c, levels: {f: a}}]}",
            11,
            "two cells at least",
        ),
        (
            "- {key: x, target: {rule: cart_abandoned}, factors: [{name: f, levels: "
            "[{name: a}, {name: b}]}], cells: [{name: c, levels: {f: a}}, "
            "{name: c, levels: {f: b}}]}",
            11,
            "cell 'c' is declared twice",
        ),
    ],
)
def test_a_wrong_experiment_is_refused_with_its_file_and_line(
    body: str, line: int, message: str
) -> None:
    found = errors_of(with_experiment(body))
    assert any(e.startswith(f"carts.yaml:{line}:") and message in e for e in found), found


def test_across_files_a_placement_and_a_segment_must_exist_and_keys_be_unique(
    tmp_path: Path,
) -> None:
    (tmp_path / "carts.yaml").write_text(CART)
    (tmp_path / "more.yaml").write_text(
        "ruleset: more\nversion: 1\n"
        "rules:\n"
        "  - id: r\n    trigger: {event: Order Completed}\n"
        "    actions: [{segment: {add: buyers}}]\n"
        "experiments:\n"
        "  - key: cart_offer\n"
        "    target: {placement: nowhere}\n"
        "    segment: nobody\n"
        "    variants: [{name: a}, {name: b, content: c}]\n"
    )
    with pytest.raises(RulesInvalid) as caught:
        load_all(tmp_path)
    found = [str(e) for e in caught.value.errors]
    assert any(
        "more.yaml:8: experiment 'cart_offer' is also declared in carts.yaml" in e for e in found
    )
    assert any("no placement 'nowhere' is defined" in e for e in found), found
    assert any("segment 'nobody' is neither defined" in e for e in found), found


def test_a_test_may_pin_only_a_declared_variant() -> None:
    source = CART + (
        "tests:\n"
        "  - name: pinned\n"
        "    variants: {cart_offer: twenty}\n"
        "    events: [{event: Product Added}]\n"
        "    expect: []\n"
    )
    (error,) = errors_of(source)
    assert "no variant 'twenty' of 'cart_offer'" in error
    assert "control, fifteen, ten" in error


# --- the in-file tests, bucketing as the service does ------------------------------------


def run_tests(source: str) -> list[tuple[str, bool, list[str]]]:
    return [
        (r.name, r.passed, r.failures)
        for r in run_file(loaded(source), engine=ENGINE, consent_defaults={})
    ]


def test_pinned_variants_change_what_acts_and_when() -> None:
    source = CART + textwrap.dedent("""\
        tests:
          - name: the control group gets nothing
            variants: {cart_offer: control}
            events: [{event: Product Added}]
            expect: []
          - name: ten percent at the rule's own time
            variants: {cart_offer: ten}
            events: [{event: Product Added}]
            expect: [{rule: cart_abandoned, at: 24h}]
          - name: fifteen percent waits as the rule's absence does, not less
            variants: {cart_offer: fifteen}
            events: [{event: Product Added}]
            expect: [{rule: cart_abandoned, at: 24h}]
        """)
    assert [passed for _, passed, _ in run_tests(source)] == [True, True, True]


def test_a_variant_delay_longer_than_the_absence_moves_the_rule() -> None:
    source = CART.replace("delay: 12h", "delay: 2d") + textwrap.dedent("""\
        tests:
          - name: two days
            variants: {cart_offer: fifteen}
            events: [{event: Product Added}]
            expect: [{rule: cart_abandoned, at: 2d}]
          - name: a wrong expectation fails
            variants: {cart_offer: fifteen}
            events: [{event: Product Added}]
            expect: [{rule: cart_abandoned, at: 24h}]
        """)
    (first, second) = run_tests(source)
    assert first[1] is True, first
    assert second[1] is False
    assert "cart_abandoned at 2d" in second[2][0]


def test_an_unpinned_test_customer_is_bucketed_by_the_same_hash_as_everyone() -> None:
    spec = loaded().definition.experiments[0]
    variant = assign(experiment=declare(spec, ruleset="carts").design, unit_id=str(CUSTOMER))
    acts = variant.variant != "control"
    source = CART + textwrap.dedent(f"""\
        tests:
          - name: as the hash says
            events: [{{event: Product Added}}]
            expect: {"[{rule: cart_abandoned}]" if acts else "[]"}
        """)
    assert run_tests(source)[0][1] is True


# --- the catalogue and arms ---------------------------------------------------------------


def test_arms_follow_the_schedule_the_segment_and_the_holdout() -> None:
    source = with_experiment("""\
        - key: scheduled
          target: {rule: cart_abandoned}
          segment: vip
          start: 2026-12-01T00:00:00Z
          stop: 2026-12-08T00:00:00Z
          holdout: {share: 0.2}
          variants: [{name: a}, {name: b, offer: CART15}]
        """)
    declared = catalogue([ENGINE.compile(loaded(source))]).for_rule("carts", "cart_abandoned")[0]
    units = [str(uuid.UUID(int=i)) for i in range(2000)]
    inside = [declared.arm(u, segments=["vip"], now=NOW + timedelta(days=1)) for u in units]
    assert all(a is not None for a in inside)
    held = sum(a.variant == HOLDOUT for a in inside if a)
    assert 300 < held < 500  # 20% of 2000, binomial sd 18
    assert all(a.suppressed for a in inside if a and a.variant == HOLDOUT)
    assert declared.arm(units[0], segments=[], now=NOW + timedelta(days=1)) is None
    assert declared.arm(units[0], segments=["vip"], now=NOW - timedelta(seconds=1)) is None
    assert declared.arm(units[0], segments=["vip"], now=NOW + timedelta(days=7)) is None


def test_a_multivariate_design_merges_its_levels_changes() -> None:
    source = with_experiment("""\
        - key: mv
          target: {rule: cart_abandoned}
          factors:
            - name: code
              levels: [{name: ten}, {name: fifteen, offer: CART15}]
            - name: wait
              levels: [{name: day}, {name: two, delay: 2d}]
        """)
    (spec,) = loaded(source).definition.experiments
    declared = declare(spec, ruleset="carts")
    assert sorted(declared.weights) == [
        "code=fifteen,wait=day",
        "code=fifteen,wait=two",
        "code=ten,wait=day",
        "code=ten,wait=two",
    ]
    both = declared.changes["code=fifteen,wait=two"]
    assert (both.offer, both.delay) == ("CART15", "2d")
    assert declared.weights["code=ten,wait=day"] == pytest.approx(0.25)


# --- stopping is a change to the file -------------------------------------------------------


def test_stop_writes_the_stop_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "carts.yaml"
    path.write_text(CART)
    done = stop(tmp_path, key="cart_offer", at=NOW)
    text = path.read_text()
    assert "    stop: 2026-12-01T00:00:00Z\n" in text
    assert text.replace("    stop: 2026-12-01T00:00:00Z\n", "") == CART
    assert "+    stop: 2026-12-01T00:00:00Z" in done.diff
    assert load_source("carts.yaml", text).definition.experiments[0].stop == NOW
    again = stop(tmp_path, key="cart_offer", at=NOW + timedelta(hours=1))  # moved, not added
    assert path.read_text().count("stop:") == 1
    assert "-    stop:" in again.diff
    with pytest.raises(CannotStop):
        stop(tmp_path, key="missing", at=NOW)


def test_stop_refuses_a_stop_before_the_start(tmp_path: Path) -> None:
    (tmp_path / "carts.yaml").write_text(
        CART.replace("    target:", "    start: 2026-12-05T00:00:00Z\n    target:")
    )
    with pytest.raises(RulesInvalid, match="stop must come after start"):
        stop(tmp_path, key="cart_offer", at=NOW)


def test_decide_tests_show_what_the_customers_variant_shows() -> None:
    source = textwrap.dedent("""\
        ruleset: hero
        version: 1
        placements:
          homepage_hero: {content: seasonal}
        rules:
          - id: returning
            trigger: {placement: homepage_hero}
            when: [{profile.orders_count: {gte: 1}}]
            actions: [{content: {placement: homepage_hero, content: welcome_back}}]
        experiments:
          - key: hero_test
            target: {placement: homepage_hero}
            holdout: {share: 0.1}
            variants: [{name: control}, {name: premium, content: premium}]
        tests:
          - name: control shows the rule's content
            variants: {hero_test: control}
            profile: {orders_count: 2}
            decide: {placement: homepage_hero}
            expect: [{rule: returning}]
          - name: the variant's content replaces the rule's
            variants: {hero_test: premium}
            profile: {orders_count: 2}
            decide: {placement: homepage_hero}
            expect: []
          - name: held out, the default
            variants: {hero_test: holdout}
            profile: {orders_count: 2}
            decide: {placement: homepage_hero}
            expect: []
        """)
    results = [
        (r.name, r.passed, r.failures)
        for r in run_file(load_source("hero.yaml", source), engine=ENGINE, consent_defaults={})
    ]
    assert all(passed for _, passed, _ in results), results
