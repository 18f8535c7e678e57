"""`rules/schema.json` for editors: valid JSON Schema 2020-12 that every shipped file
satisfies, offering the built-in event names and the known fact paths to complete
(custom events and facts still allowed), and telling rule files from segment files so
an editor's errors are about the kind of file being edited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from service.language.files import json_schema
from service.language.names import BUILTIN_EVENTS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def rule_file(*conditions: str, event: str = "Product Added") -> dict[str, Any]:
    when = [yaml.safe_load(c) for c in conditions]
    rule = {"id": "a", "trigger": {"event": event}, "when": when}
    return {
        "ruleset": "t",
        "version": 1,
        "rules": [{**rule, "actions": [{"segment": {"add": "x"}}]}],
    }


def errors(document: dict[str, Any]) -> list[Any]:
    return list(VALIDATOR.iter_errors(document))


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_every_shipped_rule_and_segment_file_satisfies_it() -> None:
    files = [
        *ROOT.joinpath("rules").glob("*.yaml"),
        *ROOT.joinpath("rules", "segments").glob("*.yaml"),
    ]
    assert len(files) >= 10
    for path in files:
        assert errors(yaml.safe_load(path.read_text())) == [], path


def test_event_names_offer_the_built_in_ones_and_allow_custom_ones() -> None:
    event = SCHEMA["$defs"]["Trigger"]["properties"]["event"]
    offered = next(s for s in event["anyOf"] if "anyOf" in s)["anyOf"]
    assert set(offered[0]["enum"]) == BUILTIN_EVENTS
    for defn, field in [("CountSpec", "event"), ("TestEvent", "event"), ("PastEvent", "event")]:
        assert SCHEMA["$defs"][defn]["properties"][field]["anyOf"][0]["enum"] == offered[0]["enum"]
    assert errors(rule_file(event="Wishlist Shared")) == []  # listed under `events:`


def test_known_fact_paths_are_offered_and_others_still_allowed() -> None:
    offered = SCHEMA["$defs"]["FactCondition"]["properties"]
    for path in (
        "profile.orders_count",
        "profile.consent.marketing",
        "profile.traits.first_name",
        "event.name",
    ):
        assert path in offered
    assert (
        errors(
            rule_file(
                "event.properties.sku: x", "context.page.path: /", "profile.traits.tier: gold"
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("condition", "valid"),
    [
        ("profile.total_spent: {gt: 100}", True),
        ("profile.total_spent: {gt: lots}", False),
        ("profile.orders_count: '2'", False),
        ("profile.rfm_recency: {in: [4, 5]}", True),
        ("profile.consent.marketing: true", True),
        ("profile.consent.marketing: 'yes'", False),
        ("profile.segments: {contains: vip}", True),
        ("profile.segments: vip", False),
    ],
)
def test_the_editor_knows_the_kind_of_value_a_known_fact_is_compared_with(
    condition: str, valid: bool
) -> None:
    assert (errors(rule_file(condition)) == []) is valid


def test_a_rule_files_errors_are_about_rule_files_and_a_segment_files_about_segments() -> None:
    broken_rule = {**rule_file(), "when": []}  # `when` belongs to segment files
    found = errors(broken_rule)
    assert found
    assert all(e.absolute_schema_path[0] == "else" for e in found), [e.message for e in found]
    assert not any("segment" in e.message for e in found)
    broken_segment = {"segment": "s", "version": 1, "when": [], "rules": []}
    found = errors(broken_segment)
    assert found
    assert all(e.absolute_schema_path[0] == "then" for e in found), [e.message for e in found]
