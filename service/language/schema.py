"""The rule language: conditions, triggers, actions, limits and rules, as the rule and
segment files (`files.py`) write them.

These models are the format's single definition: they validate files, and
`rules/schema.json` (for editors) is generated from them. Rule text is data, never
code: conditions name facts and operators from a closed list, and action parameters
may only reference fact paths (`{{ event.properties.product_id }}`).
docs/rules.md is the reference for the people who write the files.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    model_validator,
)

from service.language.names import EventName

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
# A fact a condition can test: the trigger event, its context, or the customer's profile.
FACT_PATH = r"^(event|context|profile)(\.[A-Za-z0-9_$-]+)+$"
DURATION = r"^\d+\s*(s|m|h|d|w)$"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

Scalar = str | int | float | bool


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d', '2w' → timedelta."""
    match = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if not match:
        raise ValueError(not_a_duration(text))
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def not_a_duration(value: Any) -> str:
    return (
        f"{value!r} is not a duration: use a number and a unit, e.g. 30m, 2h, 7d "
        "(units: s, m, h, d, w)"
    )


def _duration(value: Any) -> Any:
    """A duration in the file's words, before the pattern would say it in a regex's."""
    if not isinstance(value, str) or not re.fullmatch(DURATION, value):
        raise ValueError(not_a_duration(value))
    return value


# The check runs before the pattern (which stays in the schema for editors).
Duration = Annotated[
    str, Field(pattern=DURATION, examples=["30m", "24h", "7d"]), BeforeValidator(_duration)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- conditions ------------------------------------------------------------------------

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "exists",
)


class Comparison(Strict):
    """Exactly one operator and its operand."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: int | float | str | None = None
    gte: int | float | str | None = None
    lt: int | float | str | None = None
    lte: int | float | str | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    contains: Scalar | None = None
    not_contains: Scalar | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Comparison:
        if len(self.model_fields_set) != 1:
            raise ValueError(f"use exactly one operator of: {', '.join(OPERATORS)}")
        return self

    @property
    def operator(self) -> str:
        (name,) = self.model_fields_set
        return "in" if name == "in_" else name

    @property
    def operand(self) -> Any:
        (name,) = self.model_fields_set
        return getattr(self, name)


def _shorthand(value: Any) -> Any:
    return value if isinstance(value, dict | Comparison) else {"eq": value}


# `path: value` is short for `path: {eq: value}`.
ComparisonOrValue = Annotated[
    Comparison, BeforeValidator(_shorthand, json_schema_input_type=Comparison | Scalar)
]


class FactCondition(RootModel[dict[str, Comparison]]):
    """`profile.orders_count: {gte: 1}`, or `event.properties.path: "/"` for equality."""

    # Only fact paths as keys, so an editor tells `absent:` from a misspelt fact.
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})

    root: dict[Annotated[str, Field(pattern=FACT_PATH)], ComparisonOrValue] = Field(
        min_length=1, max_length=1
    )

    @property
    def path(self) -> str:
        return next(iter(self.root))

    @property
    def comparison(self) -> Comparison:
        return next(iter(self.root.values()))


class CountSpec(Strict):
    """How many times the customer did `event` in the `within` window that ends at the
    trigger (the trigger itself included), optionally only events with the same values
    as the trigger for the `same` properties."""

    event: EventName
    within: Duration
    same: list[str] = Field(default_factory=list)
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bound(self) -> CountSpec:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        return self


class CountCondition(Strict):
    count: CountSpec


class AbsentSpec(Strict):
    """None of `events` by the customer in the `within` window that starts at the trigger,
    with the same values as the trigger for the `same` properties. Checked again when
    the window has passed, so the rule acts only then."""

    events: list[EventName] = Field(min_length=1)
    within: Duration
    same: list[str] = Field(default_factory=list)


class AbsentCondition(Strict):
    absent: AbsentSpec


class AllCondition(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(Strict):
    not_: Condition = Field(alias="not")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_COMBINATORS = ("all", "any", "not", "count", "absent")


def _condition_kind(value: Any) -> str:
    """Which kind of condition a mapping is, by its single key (else a fact test)."""
    if isinstance(value, dict) and len(value) == 1:
        key = str(next(iter(value)))
        if key in _COMBINATORS:
            return key
    if isinstance(value, BaseModel) and not isinstance(value, FactCondition):
        return next(iter(type(value).model_fields)).rstrip("_")
    return "fact"


Condition = Annotated[
    Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")]
    | Annotated[CountCondition, Tag("count")]
    | Annotated[AbsentCondition, Tag("absent")]
    | Annotated[FactCondition, Tag("fact")],
    Discriminator(_condition_kind),
]

AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()


# --- trigger, actions, limits --------------------------------------------------------


class Trigger(Strict):
    """What starts the rule. `event`: a track event name (Segment e-commerce names such
    as `Product Added`), `Page Viewed`, `Screen Viewed` or `Identify`; `where` narrows
    it by the event's properties or context. `placement`: the storefront asking what to
    show in that placement (a decision); `where` then tests the request's context."""

    event: EventName | None = None
    placement: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    where: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        if (self.event is None) == (self.placement is None):
            raise ValueError("give either event or placement")
        return self

    @property
    def key(self) -> str:
        """What the engine matches the trigger on."""
        return self.event if self.event is not None else placement_key(self.placement or "")


def placement_key(placement: str) -> str:
    return f"placement:{placement}"


Params = dict[str, Scalar | list[Scalar]]


class OfferSpec(Strict):
    """An offer for the customer, kept in their offers inbox until it expires (and shown
    by the storefront in `placement`, if given), and sent by email (`template` names a
    file in the email templates), to an outgoing webhook (`destination`), or only kept
    (`inbox`)."""

    channel: Literal["email", "webhook", "inbox"]
    offer: Annotated[str, Field(min_length=1, max_length=64)]
    placement: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    template: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    destination: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    expires_in: Duration | None = None
    params: Params = Field(default_factory=dict)

    @model_validator(mode="after")
    def _channel(self) -> OfferSpec:
        if (self.channel == "webhook") != (self.destination is not None):
            raise ValueError("give a destination for channel webhook, and only for it")
        if self.channel == "email" and self.template is None:
            raise ValueError("an email offer needs a template")
        return self


class ContentSpec(Strict):
    placement: Annotated[str, Field(pattern=IDENTIFIER)]
    content: Annotated[str, Field(min_length=1, max_length=128)]
    params: Params = Field(default_factory=dict)


class SegmentSpec(Strict):
    add: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    remove: Annotated[str, Field(pattern=IDENTIFIER)] | None = None

    @model_validator(mode="after")
    def _one(self) -> SegmentSpec:
        if (self.add is None) == (self.remove is None):
            raise ValueError("give either add or remove")
        return self


class WebhookSpec(Strict):
    destination: Annotated[str, Field(pattern=IDENTIFIER)]
    params: Params = Field(default_factory=dict)


class OfferAction(Strict):
    offer: OfferSpec


class ContentAction(Strict):
    content: ContentSpec


class SegmentAction(Strict):
    segment: SegmentSpec


class WebhookAction(Strict):
    webhook: WebhookSpec


def _action_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


Action = Annotated[
    Annotated[OfferAction, Tag("offer")]
    | Annotated[ContentAction, Tag("content")]
    | Annotated[SegmentAction, Tag("segment")]
    | Annotated[WebhookAction, Tag("webhook")],
    Discriminator(
        _action_kind,
        custom_error_type="action",
        custom_error_message="an action is one of: offer, content, segment, webhook",
    ),
]


def action_kind(action: BaseModel) -> str:
    return next(iter(type(action).model_fields))


class Limits(Strict):
    """Rules in one `group` do not both act on a customer within `cooldown`: on one
    event the rule with the highest priority wins, and after a rule of the group has
    acted (or is waiting to), the group is quiet for the cooldown."""

    group: Annotated[str, Field(pattern=IDENTIFIER)]
    cooldown: Duration


# --- rules and the file ----------------------------------------------------------------


class Rule(Strict):
    id: Annotated[str, Field(pattern=IDENTIFIER)]
    description: str = ""
    version: int = Field(default=1, ge=1)
    enabled: bool = True
    priority: int = 0  # higher wins within a limits group
    trigger: Trigger
    when: list[Condition] = Field(default_factory=list)
    delay: Duration | None = None
    actions: list[Action] = Field(min_length=1)
    limits: Limits | None = None


class PlacementDefault(Strict):
    """What a placement shows when no rule for it matches, and to unknown visitors."""

    content: Annotated[str, Field(min_length=1, max_length=128)]
    params: Params = Field(default_factory=dict)


# --- the customer a test starts with ----------------------------------------------------


class TestProfile(Strict):
    """The customer as they stand when the test starts (computed traits as given)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    traits: dict[str, Any] = Field(default_factory=dict)
    segments: list[str] = Field(default_factory=list)
    consent: dict[str, bool] = Field(default_factory=dict)
