"""The two kinds of file: a rule file (`rules/<ruleset>.yaml`: rules, placements and
the tests of its rules) and a segment file (`rules/segments/<segment>.yaml`: one
segment's conditions and tests), and the JSON Schema of both (`rules/schema.json`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, model_validator

from service.language import editor
from service.language.experiments import ExperimentSpec
from service.language.names import EventName
from service.language.schema import (
    IDENTIFIER,
    Condition,
    Duration,
    PlacementDefault,
    Rule,
    Strict,
    TestProfile,
)

# --- in-file tests ---------------------------------------------------------------------


class TestEvent(Strict):
    at: Duration = "0s"
    event: EventName
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class Expectation(Strict):
    rule: str
    at: Duration | None = None  # when the rule acts, from the first event; any time if omitted


class TestDecision(Strict):
    """The storefront asking what to show in `placement`, with this page context."""

    placement: Annotated[str, Field(pattern=IDENTIFIER)]
    context: dict[str, Any] = Field(default_factory=dict)


class RuleTest(Strict):
    """Given a profile, either `events` at times relative to the start (expect: the rules
    that act, and when) or one `decide` request (expect: the placement rule whose content
    is shown, or nothing for the default)."""

    name: str
    profile: TestProfile = Field(default_factory=TestProfile)
    events: list[TestEvent] = Field(default_factory=list)
    decide: TestDecision | None = None
    # experiment key → the variant (or `holdout`) the test's customer is in
    variants: dict[str, str] = Field(default_factory=dict)
    expect: list[Expectation]

    @model_validator(mode="after")
    def _one(self) -> RuleTest:
        if bool(self.events) == (self.decide is not None):
            raise ValueError("give either events or decide")
        return self


# --- rule files ------------------------------------------------------------------------


class RuleFile(Strict):
    ruleset: Annotated[str, Field(pattern=IDENTIFIER)]
    version: int = Field(ge=1)
    description: str = ""
    # Event names and profile traits beyond the built-in ones that these rules use.
    events: list[str] = Field(default_factory=list)
    traits: list[str] = Field(default_factory=list)
    # Storefront placements this file defines, with their default content.
    placements: dict[Annotated[str, Field(pattern=IDENTIFIER)], PlacementDefault] = Field(
        default_factory=dict
    )
    rules: list[Rule] = Field(min_length=1)
    # A/B and multivariate tests of these rules or of placements (experiments.py).
    experiments: list[ExperimentSpec] = Field(default_factory=list)
    tests: list[RuleTest] = Field(default_factory=list)


# --- segment files ---------------------------------------------------------------------


class PastEvent(Strict):
    """An event the test's customer did `ago` before the segment is evaluated."""

    ago: Duration
    event: EventName
    properties: dict[str, Any] = Field(default_factory=dict)


class SegmentTest(Strict):
    """Given a profile and past events, is the customer in the segment (`in`) or not
    (`out`)?"""

    name: str
    profile: TestProfile = Field(default_factory=TestProfile)
    history: list[PastEvent] = Field(default_factory=list)
    expect: Literal["in", "out"]


class SegmentFile(Strict):
    """One segment, in `rules/segments/`: the customers for whom every `when` condition
    holds now. Conditions test the profile (computed traits, traits, consent) and the
    customer's events in windows that end now (`count`, `absent`)."""

    # 55: its versions are kept as `segment:<id>`, in 64 characters.
    segment: Annotated[str, Field(pattern=IDENTIFIER, max_length=55)]
    version: int = Field(ge=1)
    description: str = ""
    events: list[str] = Field(default_factory=list)
    traits: list[str] = Field(default_factory=list)
    when: list[Condition] = Field(min_length=1)
    tests: list[SegmentTest] = Field(default_factory=list)


def json_schema() -> dict[str, Any]:
    """One schema for both kinds of file: a rule file (`ruleset:`) or, under
    `segments/`, a segment file (`segment:`), with the hints editors complete from."""
    schema = TypeAdapter(RuleFile | SegmentFile).json_schema(by_alias=True)
    schema = editor.add_hints(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Personalize rule or segment file"
    return schema
