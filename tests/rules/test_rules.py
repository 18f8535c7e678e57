"""Rule files without a database: the format, its errors, the compiled semantics and
the in-file test runner."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.language import loader
from service.language.engine import Engine
from service.language.files import json_schema
from service.language.loader import load_source
from service.language.parse import RulesInvalid
from service.rules.evaluator import actions_of
from service.rules.testing import run_file

ROOT = Path(__file__).resolve().parents[2]
ENGINE = Engine()


def ruleset(body: str, *, name: str = "t") -> str:
    return f"ruleset: {name}\nversion: 1\n" + textwrap.dedent(body)


def errors_of(source: str, file: str = "t.yaml") -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        load_source(file, source)
    return [str(e) for e in caught.value.errors]


# --- the shipped rules --------------------------------------------------------------------


def test_shipped_rules_validate_and_pass_their_tests() -> None:
    for command in ("validate", "test"):
        run = subprocess.run(
            [sys.executable, "-m", "service.cli", "rules", command, "--dir", str(ROOT / "rules")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failed" in run.stdout
    assert run.stdout.count("PASS") >= 15


def test_rules_schema_json_is_the_format_definition() -> None:
    shipped = json.loads((ROOT / "rules" / "schema.json").read_text())
    assert shipped == json_schema(), "run: personalize rules schema --output rules/schema.json"


def test_rules_test_exits_1_and_names_the_failing_test(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        ruleset("""
        rules:
          - id: welcome
            trigger: {event: Order Completed}
            when: [{profile.orders_count: 1}]
            actions: [{segment: {add: customers}}]
        tests:
          - name: expects the wrong time
            profile: {orders_count: 1}
            events: [{at: 0h, event: Order Completed}]
            expect: [{rule: welcome, at: 2h}]
        """)
    )
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "rules", "test", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "FAIL  a.yaml :: expects the wrong time" in run.stdout
    assert "expected welcome to act at 2h; acted: welcome at 0s" in run.stdout


PLACEMENTS = """
placements:
  hero: {content: plain}
rules:
  - id: vip_hero
    priority: 5
    trigger: {placement: hero}
    when: [{profile.segments: {contains: vip}}]
    actions: [{content: {placement: hero, content: gold}}]
  - id: any_hero
    trigger: {placement: hero}
    when: [{profile.orders_count: {gte: 1}}]
    actions:
      - content: {placement: hero, content: thanks}
      - offer: {channel: inbox, offer: SAVE5}
  - id: welcome
    trigger: {event: Order Completed}
    actions: [{segment: {add: customers}}]
"""


def test_decide_tests_expect_what_the_placement_shows() -> None:
    source = ruleset(
        PLACEMENTS
        + """
tests:
  - name: priority decides the content; every match shows its offers
    profile: {segments: [vip], orders_count: 2}
    decide: {placement: hero}
    expect: [{rule: vip_hero}, {rule: any_hero}]
  - name: nobody matches, the default shows
    decide: {placement: hero}
    expect: []
  - name: a wrong expectation fails
    profile: {orders_count: 2}
    decide: {placement: hero}
    expect: [{rule: vip_hero}]
"""
    )
    loaded = load_source("p.yaml", source)
    results = run_file(loaded, engine=ENGINE, consent_defaults={})
    assert [r.passed for r in results] == [True, True, False]
    assert results[2].failures == [
        "expected vip_hero to act; acted: any_hero at 0s",
        "any_hero acted at 0s, which the test does not expect",
    ]


def test_decide_tests_name_what_does_not_fit() -> None:
    source = ruleset(
        PLACEMENTS
        + """
tests:
  - name: t
    decide: {placement: footer}
    expect: [{rule: welcome}, {rule: vip_hero, at: 1h}]
"""
    )
    errors = errors_of(source)
    assert any("no rule in this file answers 'footer'" in e for e in errors), errors
    assert any("'welcome' does not answer 'footer'" in e for e in errors), errors
    assert any("a decide test has no time" in e for e in errors), errors
    both = ruleset(
        PLACEMENTS
        + """
tests:
  - name: both
    events: [{event: Order Completed}]
    decide: {placement: hero}
    expect: []
"""
    )
    (error,) = errors_of(both)
    assert error.endswith("tests.0: give either events or decide"), error


# --- errors name the file and the line ---------------------------------------------------


def test_a_yaml_syntax_error_names_its_line() -> None:
    source = ruleset("""
    rules:
      - id: a
        trigger: {event: "Product Added"
    """)
    (error,) = errors_of(source, "cart.yaml")
    assert error.startswith("cart.yaml:7: YAML: expected ',' or '}'"), error
    assert "flow mapping that starts on line 6" in error


def test_an_unknown_operator_names_the_line_and_the_operators() -> None:
    source = ruleset("""
    rules:
      - id: a
        trigger: {event: Product Added}
        when:
          - profile.orders_count: {gte: 1}
          - profile.total_spent: {approx: 100}
        actions: [{segment: {add: x}}]
    """)
    (error,) = errors_of(source)
    assert error.startswith("t.yaml:9: rules.0.when.1.profile.total_spent.approx: unknown operator")
    assert "not_in" in error


def test_schema_errors_point_inside_actions() -> None:
    source = ruleset("""
    rules:
      - id: a
        trigger: {event: Product Added}
        actions:
          - offer:
              channel: sms
              offer: X
          - coupon: {code: Y}
    """)
    errors = errors_of(source)
    assert any(e.startswith("t.yaml:9: rules.0.actions.0.offer.channel:") for e in errors), errors
    assert any(e.startswith("t.yaml:11: rules.0.actions.1: an action is one of") for e in errors)


def test_offers_name_what_their_channel_needs() -> None:
    source = ruleset("""
    rules:
      - id: a
        trigger: {event: Product Added}
        actions:
          - offer: {channel: email, offer: X}
          - offer: {channel: webhook, offer: Y}
          - offer: {channel: inbox, offer: Z, destination: crm}
    """)
    errors = errors_of(source)
    assert any(e.startswith("t.yaml:8:") and "needs a template" in e for e in errors), errors
    assert sum("give a destination for channel webhook" in e for e in errors) == 2, errors


def test_a_missing_or_broken_email_template_is_named_with_the_rule(tmp_path: Path) -> None:
    rule = """
    rules:
      - id: reminder
        trigger: {event: Product Added}
        actions:
          - offer: {channel: email, offer: X, template: nudge}
    """
    (tmp_path / "a.yaml").write_text(ruleset(rule))
    with pytest.raises(RulesInvalid) as caught:
        loader.load_directory(tmp_path)
    (error,) = [str(e) for e in caught.value.errors]
    # At the offer's `template:` (line 8), naming the rule.
    assert error == "a.yaml:8: rule reminder: no email template templates/nudge.yaml"

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "nudge.yaml").write_text("subject: Hi {{ x\ntext: ok\n")
    with pytest.raises(RulesInvalid) as caught:
        loader.load_directory(tmp_path)
    (error,) = [str(e) for e in caught.value.errors]
    assert error.startswith("a.yaml:8: rule reminder: templates/nudge.yaml: "), error

    (tmp_path / "templates" / "nudge.yaml").write_text("subject: Hi\ntext: '{{ offer.offer }}'\n")
    (loaded,) = loader.load_directory(tmp_path)
    assert loaded.name == "t"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{profile.traits.shoe_size: 42}", "unknown trait 'shoe_size'"),
        ("{profile.lifetime: {gt: 1}}", "unknown profile fact 'lifetime'"),
        ("{event.price: 1}", "use event.name, event.type"),
        (
            "{count: {event: Product Viewd, within: 1h, at_least: 2}}",
            "unknown event 'Product Viewd'",
        ),
        ("{any: [{absent: {events: [Order Completed], within: 1h}}]}", "absent must be listed"),
    ],
)
def test_semantic_errors(condition: str, expected: str) -> None:
    source = ruleset(f"""
    rules:
      - id: a
        trigger: {{event: Product Added}}
        when:
          - {condition}
        actions: [{{segment: {{add: x}}}}]
    """)
    (error,) = errors_of(source)
    assert error.startswith("t.yaml:8:"), error
    assert expected in error


def test_declared_traits_and_events_are_known() -> None:
    source = ruleset("""
    events: [Coupon Applied]
    traits: [shoe_size]
    rules:
      - id: a
        trigger: {event: Coupon Applied}
        when: [{profile.traits.shoe_size: 42}]
        actions: [{segment: {add: x}}]
    """)
    assert load_source("t.yaml", source).definition.events == ["Coupon Applied"]


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ("[{profile.orders_count: {gt: 5}}, {profile.orders_count: {lt: 2}}]", "≥ 5 and ≤ 2"),
        ("[{profile.orders_count: 1}, {profile.orders_count: 2}]", "cannot equal both"),
        ("[{context.locale: fr}, {context.locale: {in: [de, en]}}]", "not among the `in`"),
    ],
)
def test_conditions_that_can_never_hold_are_rejected(conditions: str, expected: str) -> None:
    source = ruleset(f"""
    rules:
      - id: a
        trigger: {{event: Product Added}}
        when: {conditions}
        actions: [{{segment: {{add: x}}}}]
    """)
    (error,) = errors_of(source)
    assert "can never act" in error
    assert expected in error


def test_duplicate_ids_keys_and_rulesets_are_rejected() -> None:
    twice = ruleset("""
    rules:
      - id: a
        trigger: {event: Product Added}
        actions: [{segment: {add: x}}]
      - id: a
        trigger: {event: Product Added}
        actions: [{segment: {add: x}}]
        actions: [{segment: {add: y}}]
    """)
    assert errors_of(twice) == ["t.yaml:11: 'actions' is given twice"]
    with pytest.raises(RulesInvalid) as caught:
        loader.load_sources(
            [("one.yaml", ruleset(_ONE_RULE)), ("two.yaml", ruleset(_ONE_RULE, name="u"))]
        )
    assert [str(e) for e in caught.value.errors] == [
        "two.yaml:5: rule id 'a' is also used in one.yaml"
    ]


_ONE_RULE = """
rules:
  - id: a
    trigger: {event: Product Added}
    actions: [{segment: {add: x}}]
"""


def test_rule_text_never_runs_as_code() -> None:
    """Conditions are data: an expression in a value is compared as text, and a
    parameter's reference is filled with the fact's text, never interpreted again."""
    code = "__import__('os').getpid()"
    source = ruleset(f"""
    rules:
      - id: a
        trigger:
          event: Page Viewed
          where: [{{event.properties.path: "{code}"}}]
        actions:
          - content:
              {{placement: hero, content: x, params: {{v: "{{{{ profile.traits.name }}}}!"}}}}
    """)
    compiled = ENGINE.compile(load_source("t.yaml", source))
    tree = {"event": {"properties": {"path": "/"}}, "profile": {"traits": {"name": "{{ x }}"}}}
    assert ENGINE.match(compiled, trigger="Page Viewed", facts=tree, history={}) == []
    tree["event"]["properties"]["path"] = code
    assert ENGINE.match(compiled, trigger="Page Viewed", facts=tree, history={}) == ["a"]
    (action,) = actions_of(compiled.rules["a"], tree)
    assert action["params"] == {"v": "{{ x }}!"}


# --- compiled semantics -----------------------------------------------------------------


def _matches(condition: str, facts: dict) -> bool:
    source = ruleset(f"""
    events: [Ping]
    traits: [tier, tags, n]
    rules:
      - id: r
        trigger: {{event: Ping}}
        when: [{condition}]
        actions: [{{segment: {{add: x}}}}]
    """)
    compiled = ENGINE.compile(load_source("t.yaml", source))
    tree = {"event": {"name": "Ping"}, "profile": {"traits": facts}}
    return ENGINE.match(compiled, trigger="Ping", facts=tree, history={}) == ["r"]


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        ("{profile.traits.tier: gold}", {"tier": "gold"}, True),
        ("{profile.traits.tier: gold}", {}, False),
        ("{profile.traits.tier: {ne: gold}}", {"tier": "silver"}, True),
        ("{profile.traits.tier: {ne: gold}}", {}, True),  # missing is not gold
        ("{profile.traits.tier: {ne: gold}}", {"tier": "gold"}, False),
        ("{profile.traits.tier: {in: [gold, silver]}}", {"tier": "silver"}, True),
        ("{profile.traits.tier: {in: [gold, silver]}}", {"tier": "bronze"}, False),
        ("{profile.traits.tier: {not_in: [gold]}}", {}, True),
        ("{profile.traits.tier: {not_in: [gold]}}", {"tier": "gold"}, False),
        ("{profile.traits.n: {gt: 5}}", {"n": 6}, True),
        ("{profile.traits.n: {gt: 5}}", {"n": 5}, False),
        ("{profile.traits.n: {gt: 5}}", {}, False),
        ("{profile.traits.n: {lte: 5}}", {"n": 5.0}, True),
        ("{profile.traits.tags: {contains: vip}}", {"tags": ["a", "vip"]}, True),
        ("{profile.traits.tags: {contains: vip}}", {"tags": []}, False),
        ("{profile.traits.tags: {not_contains: vip}}", {"tags": []}, True),
        ("{profile.traits.tags: {not_contains: vip}}", {}, True),
        ("{profile.traits.tags: {not_contains: vip}}", {"tags": ["vip"]}, False),
        ("{profile.traits.tier: {exists: true}}", {"tier": "x"}, True),
        ("{profile.traits.tier: {exists: false}}", {"tier": None}, True),  # null is missing
        ("{not: {profile.traits.n: {gt: 5}}}", {}, True),  # not(false) holds
        ("{not: {profile.traits.n: {gt: 5}}}", {"n": 9}, False),
        ("{not: {profile.traits.tier: {ne: gold}}}", {}, False),
        ("{not: {any: [{profile.traits.n: 1}, {profile.traits.tier: a}]}}", {"n": 2}, True),
        ("{not: {all: [{profile.traits.n: 1}, {profile.traits.tier: a}]}}", {"n": 1}, True),
        ("{not: {not: {profile.traits.n: 1}}}", {"n": 1}, True),
    ],
)
def test_operators_and_missing_values(condition: str, facts: dict, expected: bool) -> None:
    assert _matches(condition, facts) is expected


def test_history_windows_and_their_negation() -> None:
    source = ruleset("""
    rules:
      - id: often
        trigger: {event: Product Viewed}
        when: [{count: {event: Product Viewed, within: 1d, at_least: 3, at_most: 5}}]
        actions: [{segment: {add: x}}]
      - id: rarely
        trigger: {event: Product Viewed}
        when: [{not: {count: {event: Product Viewed, within: 1d, at_least: 3}}}]
        actions: [{segment: {add: y}}]
    """)
    compiled = ENGINE.compile(load_source("t.yaml", source))
    (often,) = compiled.rules["often"].windows
    (rarely,) = compiled.rules["rarely"].windows
    for n, expected in [(2, ["rarely"]), (3, ["often"]), (5, ["often"]), (6, [])]:
        history = {often.key: n, rarely.key: n}
        fired = ENGINE.match(compiled, trigger="Product Viewed", facts={}, history=history)
        assert sorted(fired) == expected, n


# --- the in-file test runner ----------------------------------------------------------------


def _run(source: str) -> list:
    return run_file(load_source("t.yaml", source), engine=ENGINE, consent_defaults={})


def test_limits_keep_two_rules_of_one_group_from_both_acting() -> None:
    source = ruleset("""
    rules:
      - id: big
        priority: 10
        trigger: {event: Product Added}
        actions: [{offer: {channel: inbox, offer: BIG}}]
        limits: {group: promo, cooldown: 1d}
      - id: small
        priority: 1
        trigger: {event: Product Added}
        actions: [{offer: {channel: inbox, offer: SMALL}}]
        limits: {group: promo, cooldown: 1d}
    tests:
      - name: one event, one offer; the cooldown holds, then ends
        events:
          - {at: 0h, event: Product Added}
          - {at: 12h, event: Product Added}
          - {at: 25h, event: Product Added}
        expect: [{rule: big, at: 0h}, {rule: big, at: 25h}]
    """)
    (result,) = _run(source)
    assert result.passed, result.failures


def test_a_delay_acts_later_and_a_wait_is_cancelled_early() -> None:
    source = ruleset("""
    rules:
      - id: later
        trigger: {event: Product Added}
        delay: 2h
        actions: [{segment: {add: x}}]
    tests:
      - name: acts after its delay
        events: [{at: 0h, event: Product Added}]
        expect: [{rule: later, at: 2h}]
      - name: wrong expectations fail
        events: [{at: 0h, event: Product Added}]
        expect: []
    """)
    ok, wrong = _run(source)
    assert ok.passed, ok.failures
    assert wrong.failures == ["later acted at 2h, which the test does not expect"]


def test_a_rule_whose_any_holds_twice_fires_once() -> None:
    """durable-rules runs a rule's action once per branch of an `any` that holds."""
    assert _matches(
        "{any: [{profile.traits.n: {gt: 1}}, {profile.traits.tier: gold}]}",
        {"n": 5, "tier": "gold"},
    )
    source = ruleset("""
    rules:
      - id: vip
        trigger: {event: Page Viewed}
        when: [{any: [{profile.total_spent: {gte: 500}}, {profile.rfm_monetary: 5}]}]
        actions: [{content: {placement: hero, content: premium}}]
    tests:
      - name: both reasons hold
        profile: {total_spent: 900, rfm_monetary: 5}
        events: [{at: 0s, event: Page Viewed}]
        expect: [{rule: vip}]
    """)
    (result,) = _run(source)
    assert result.passed, result.failures
