"""Segment files: what the loader accepts and rejects (with file and line), and the
tests written in them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.language.engine import Engine
from service.language.loader import load_all, load_segment_source
from service.language.parse import RulesInvalid
from service.language.segments import compile_segments, run_tests

ROOT = Path(__file__).resolve().parents[2]
ENGINE = Engine()


def segment(body: str, *, name: str = "s") -> str:
    return f"segment: {name}\nversion: 1\n" + textwrap.dedent(body)


def errors_of(source: str, file: str = "segments/s.yaml") -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        load_segment_source(file, source)
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            "- event.properties.path: /",
            "segments/s.yaml:4: event.properties.path: segments test the profile and its events",
        ),
        ("- context.page.path: /", "segments/s.yaml:4: context.page.path: segments test the"),
        (
            "- profile.segments: {contains: vip}",
            "segments/s.yaml:4: a segment cannot depend on other segments' members",
        ),
        (
            "- count: {event: Product Viewed, within: 1d, at_least: 2, same: [product_id]}",
            "segments/s.yaml:4: segments have no trigger event to be the same as: drop `same`",
        ),
        (
            "- count: {event: Product Teleported, within: 1d, at_least: 2}",
            "segments/s.yaml:4: unknown event 'Product Teleported'",
        ),
        (
            "- profile.shoe_size: {gte: 40}",
            "segments/s.yaml:4: unknown profile fact 'shoe_size'",
        ),
        (
            "- count: {event: Segment Entered, within: 1d, at_least: 1}",
            "segments/s.yaml:4: Segment Entered: a segment cannot depend on other segments'",
        ),
        (
            "- profile.orders_count: {gte: 5}\n- profile.orders_count: {lt: 2}",
            "segments/s.yaml:4: no customer can ever be in this segment: no value of",
        ),
    ],
)
def test_what_a_segment_cannot_test_is_named_with_its_line(condition: str, expected: str) -> None:
    source = segment("when:\n" + textwrap.indent(condition, "  ") + "\n")
    found = errors_of(source)
    assert any(e.startswith(expected) for e in found), found


def test_a_segment_needs_conditions_and_a_valid_expectation() -> None:
    assert errors_of(segment("description: nothing\n")) == [
        "segments/s.yaml:1: 'when' is required here"
    ]
    found = errors_of(
        segment("""
        when:
          - profile.orders_count: {gte: 1}
        tests:
          - {name: t, expect: maybe}
        """)
    )
    assert any(e.startswith("segments/s.yaml:7: tests.0.expect") for e in found), found


def test_segment_ids_are_unique_and_rules_cannot_fill_a_computed_segment(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", directory)
    (directory / "segments" / "copy.yaml").write_text(
        (directory / "segments" / "high_value.yaml").read_text()
    )
    (directory / "vip.yaml").write_text(
        textwrap.dedent("""
        ruleset: vip
        version: 1
        rules:
          - id: make_vip
            trigger: {event: Order Completed}
            actions:
              - segment: {add: high_value}
        """)
    )
    with pytest.raises(RulesInvalid) as caught:
        load_all(directory)
    found = [str(e) for e in caught.value.errors]
    assert (
        "segments/high_value.yaml:1: segment 'high_value' is also defined in segments/copy.yaml"
        in found
    )
    assert any(
        e.startswith("vip.yaml:5: rule make_vip: segment 'high_value' is computed from")
        for e in found
    ), found


def test_segment_file_tests_can_fail() -> None:
    loaded = load_segment_source(
        "segments/s.yaml",
        segment("""
        when:
          - count: {event: Product Viewed, within: 1d, at_least: 2}
        tests:
          - name: two views today
            history: [{ago: 1h, event: Product Viewed}, {ago: 2h, event: Product Viewed}]
            expect: in
          - name: wrongly expected in
            history: [{ago: 1h, event: Product Viewed}, {ago: 2d, event: Product Viewed}]
            expect: in
        """),
    )
    results = run_tests(loaded, engine=ENGINE, consent_defaults={})
    assert [r.passed for r in results] == [True, False]
    assert results[1].failures == ["expected in, got out"]


def test_one_match_gives_every_segment_and_absence_reads_as_no_events() -> None:
    _rulesets, segments = load_all(ROOT / "rules")
    compiled = compile_segments(ENGINE, segments)
    assert set(compiled.segments) == {
        "high_value",
        "high_intent_at_risk",
        "lapsed_90d",
        "new_customers_30d",
        "frequent_browsers",
    }
    profile = {
        "orders_count": 2,
        "total_spent": 900.0,
        "days_since_first_order": 3,
        "days_since_last_order": 1,
        "consent": {},
        "traits": {},
        "segments": [],
    }
    added = next(
        w.key for w in compiled.windows if getattr(w.spec, "event", None) == "Product Added"
    )
    assert compiled.match(ENGINE, profile=profile, counts={}) == {"high_value", "new_customers_30d"}
    assert compiled.match(ENGINE, profile=profile, counts={added: 1}) == {
        "high_value",
        "new_customers_30d",
        "high_intent_at_risk",
    }


def test_rules_validate_counts_segments_and_rules_test_runs_theirs() -> None:
    for command, expected in (("validate", "5 segments"), ("test", "segments/lapsed_90d.yaml")):
        run = subprocess.run(
            [sys.executable, "-m", "service.cli", "rules", command, "--dir", str(ROOT / "rules")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert expected in run.stdout


def test_a_segment_id_fits_its_stored_version_name() -> None:
    long = "s" * 56
    found = errors_of(segment("when:\n  - profile.orders_count: {gte: 1}\n", name=long))
    assert found == ["segments/s.yaml:1: segment: String should have at most 55 characters"]
    assert load_segment_source(
        "segments/s.yaml", segment("when:\n  - profile.orders_count: {gte: 1}\n", name=long[:55])
    )
