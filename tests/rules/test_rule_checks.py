"""`validate` refuses rules that could never act as written: consent purposes that are
not declared, comparisons with a value of the wrong kind, names one or two letters off
(with the name meant), and durations that are not durations; each error names the file
and the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from service.language import loader
from service.language.loader import load_source
from service.language.parse import RulesInvalid
from service.settings import get_settings


def ruleset(body: str, *, name: str = "t") -> str:
    return f"ruleset: {name}\nversion: 1\n" + textwrap.dedent(body)


def rule(*conditions: str, trigger: str = "Product Added") -> str:
    """A rule file whose one rule has `conditions` under `when` (line 8 onwards)."""
    when = "".join(f"\n      - {c}" for c in conditions) if conditions else " []"
    return (
        "ruleset: t\nversion: 1\n\nrules:\n  - id: a\n"
        f"    trigger: {{event: {trigger}}}\n    when:{when}\n"
        "    actions: [{segment: {add: x}}]\n"
    )


def errors_of(source: str, *, purposes: set[str] | None = None) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        load_source("t.yaml", source, purposes=purposes)
    return [str(e) for e in caught.value.errors]


def directory_errors(directory: Path) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        loader.load_all(directory)
    return [str(e) for e in caught.value.errors]


# --- consent purposes ----------------------------------------------------------------------


def test_an_undeclared_consent_purpose_is_an_error_naming_the_declared_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.yaml").write_text(rule("profile.consent.marketting: true"))
    (error,) = directory_errors(tmp_path)
    assert error.startswith("t.yaml:8: unknown consent purpose 'marketting'"), error
    assert "the purposes are marketing (the keys of the setting CONSENT_DEFAULTS)" in error
    assert error.endswith("did you mean 'marketing'?"), error


def test_the_declared_purposes_are_the_keys_of_consent_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t.yaml").write_text(rule("profile.consent.analytics: true"))
    assert any("unknown consent purpose 'analytics'" in e for e in directory_errors(tmp_path))
    defaults = {"marketing": False, "analytics": True}
    monkeypatch.setattr(get_settings(), "consent_defaults", defaults)
    (loaded,), _segments = loader.load_all(tmp_path)
    assert loaded.name == "t"


def test_a_stored_version_loaded_again_is_not_refused_for_its_purposes() -> None:
    # Checked when deployed; a later change of CONSENT_DEFAULTS must not stop it loading.
    assert load_source("t.yaml", rule("profile.consent.analytics: true")).name == "t"


def test_a_test_profile_gives_consent_for_declared_purposes_only() -> None:
    source = rule("profile.consent.marketing: true") + textwrap.dedent("""
    tests:
      - name: t
        profile: {consent: {marketting: true}}
        events: [{event: Product Added}]
        expect: []
    """)
    (error,) = errors_of(source, purposes={"marketing"})
    assert error.startswith("t.yaml:13: unknown consent purpose 'marketting'"), error


def test_a_segment_file_tests_declared_purposes_only(tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "s.yaml").write_text(
        "segment: s\nversion: 1\nwhen:\n  - profile.consent.marketting: true\n"
    )
    (error,) = directory_errors(tmp_path)
    assert error.startswith("segments/s.yaml:4: unknown consent purpose 'marketting'"), error


# --- the kind of value a fact is compared with ------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('profile.total_spent: {gt: "lots"}', "profile.total_spent is a number: gt 'lots'"),
        ('profile.orders_count: "2"', "'2' is text, write 2 without quotes"),
        ("profile.average_order_value: {lte: cheap}", "is a number: lte 'cheap'"),
        ("profile.days_since_last_order: {gte: 3 days}", "is a number: gte '3 days'"),
        ("profile.rfm_recency: {in: [4, five]}", "is a number: in 'five' never holds"),
        ("profile.rfm_monetary: {contains: 5}", "is a number: contains tests a list"),
        (
            'profile.consent.marketing: "yes"',
            "profile.consent.marketing is true or false, not 'yes'",
        ),
        ("profile.consent.marketing: {gt: 0}", "is true or false: write"),
        ("profile.consent.marketing: {in: [true, 1]}", "is true or false, not 1"),
        ("profile.segments: vip", "a list of segment names: use contains or not_contains"),
        ("profile.segments: {contains: 3}", "contains takes a name, not 3"),
    ],
)
def test_a_fact_compared_with_a_value_of_another_kind_is_an_error(
    condition: str, expected: str
) -> None:
    (error,) = errors_of(rule(condition))
    assert error.startswith("t.yaml:8: "), error
    assert expected in error, error


@pytest.mark.parametrize(
    "condition",
    [
        "profile.total_spent: {gte: 10.5}",
        "profile.orders_count: {in: [1, 2]}",
        "profile.days_since_last_order: {exists: false}",
        "profile.consent.marketing: false",
        "profile.consent.marketing: {ne: true}",
        "profile.segments: {not_contains: vip}",
        'event.properties.price: {gt: "a"}',  # the shop's own values: untyped
        "context.page.path: {gt: 3}",
        "profile.traits.age: {gt: old}",
    ],
)
def test_comparisons_of_the_right_kind_and_untyped_facts_pass(condition: str) -> None:
    assert load_source("t.yaml", rule(condition)).name == "t"


def test_a_test_profile_gives_numbers_for_numeric_facts() -> None:
    source = rule("profile.orders_count: {gte: 1}") + textwrap.dedent("""
    tests:
      - name: t
        profile: {orders_count: two, total_spent: 10}
        events: [{event: Product Added}]
        expect: []
    """)
    (error,) = errors_of(source)
    assert error == "t.yaml:13: orders_count is a number, not 'two'"


# --- did you mean ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            rule(trigger="Order Complete"),
            "t.yaml:6: unknown event 'Order Complete'; did you mean 'Order Completed'?",
        ),
        (rule("profile.order_count: 1"), "t.yaml:8: unknown profile fact 'order_count'"),
        (rule("profile.traits.frist_name: Ada"), "did you mean 'first_name'?"),
        (rule("event.nmae: x"), "did you mean 'event.name'?"),
        (
            rule("{count: {event: Product Viewd, within: 1h, at_least: 2}}"),
            "t.yaml:8: unknown event 'Product Viewd'; did you mean 'Product Viewed'?",
        ),
    ],
)
def test_unknown_names_suggest_the_closest_known_one(source: str, expected: str) -> None:
    (error,) = errors_of(source)
    assert expected in error, error
    assert "did you mean" in error, error


def test_unknown_fact_suggests_the_fact_meant() -> None:
    (error,) = errors_of(rule("profile.order_count: 1"))
    assert error.endswith("did you mean 'profile.orders_count'?"), error


def test_a_name_like_none_known_gets_the_list_not_a_guess() -> None:
    (error,) = errors_of(rule(trigger="Wishlist Shared"))
    assert "did you mean" not in error
    assert "built-in events are" in error
    assert "list it under `events:`" in error


def test_rule_ids_and_placements_in_tests_and_experiments_suggest_the_one_meant() -> None:
    source = ruleset("""
    rules:
      - id: cart_reminder
        trigger: {event: Product Added}
        actions: [{segment: {add: x}}]
      - id: hero
        trigger: {placement: homepage_hero}
        actions: [{content: {placement: homepage_hero, content: c}}]
    experiments:
      - key: e
        target: {rule: cart_remindr}
        variants: [{name: a}, {name: b, suppress: true}]
    tests:
      - name: t
        events: [{event: Product Added}]
        expect: [{rule: cart_remider}]
      - name: d
        decide: {placement: homepage_heor}
        expect: []
    """)
    errors = errors_of(source)
    assert "t.yaml:13: no rule 'cart_remindr' in this file; did you mean 'cart_reminder'?" in errors
    assert "t.yaml:18: no rule 'cart_remider' in this file; did you mean 'cart_reminder'?" in errors
    assert (
        "t.yaml:20: no rule in this file answers 'homepage_heor'; did you mean 'homepage_hero'?"
        in errors
    )


def test_placements_templates_and_segments_across_files_suggest_the_one_meant(
    tmp_path: Path,
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "cart_reminder.yaml").write_text("subject: s\ntext: t\n")
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "high_value.yaml").write_text(
        "segment: high_value\nversion: 1\nwhen:\n  - profile.total_spent: {gte: 500}\n"
    )
    (tmp_path / "t.yaml").write_text(
        ruleset("""
    placements:
      homepage_hero: {content: default}
    rules:
      - id: hero
        trigger: {placement: homepage_heor}
        actions: [{content: {placement: homepage_heor, content: c}}]
      - id: mail
        trigger: {event: Product Added}
        when: [{profile.segments: {contains: high_valeu}}]
        actions: [{offer: {channel: email, offer: X, template: cart_remindr}}]
    """)
    )
    errors = directory_errors(tmp_path)
    assert any(
        e.startswith("t.yaml:7: placement 'homepage_heor' has no default")
        and e.endswith("did you mean 'homepage_hero'?")
        for e in errors
    ), errors
    assert (
        "t.yaml:13: rule mail: no email template templates/cart_remindr.yaml; "
        "did you mean 'cart_reminder'?" in errors
    ), errors


def test_a_rule_testing_a_segment_no_file_defines_and_no_rule_sets_is_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "high_value.yaml").write_text(
        "segment: high_value\nversion: 1\nwhen:\n  - profile.total_spent: {gte: 500}\n"
    )
    (tmp_path / "t.yaml").write_text(
        rule(
            "{any: [{profile.segments: {contains: high_valeu}}, {profile.segments: {contains: x}}]}"
        )
    )
    (error,) = directory_errors(tmp_path)  # `x` is set by the rule itself
    assert error == (
        "t.yaml:8: rule a: no segment 'high_valeu' is defined in segments/ or set by a rule; "
        "did you mean 'high_value'?"
    )


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [("delay: 2 hours", "'2 hours'"), ("delay: 90", "90"), ("delay: 1.5h", "'1.5h'")],
)
def test_a_duration_error_says_how_to_write_one(line: str, value: str) -> None:
    source = ruleset(f"""
    rules:
      - id: a
        trigger: {{event: Product Added}}
        {line}
        actions: [{{segment: {{add: x}}}}]
    """)
    (error,) = errors_of(source)
    assert error == (
        f"t.yaml:7: rules.0.delay: {value} is not a duration: use a number and a unit, "
        "e.g. 30m, 2h, 7d (units: s, m, h, d, w)"
    )
