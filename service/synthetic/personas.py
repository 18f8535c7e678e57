"""The personas file: the store, its catalogue, who its customers are and how they
behave, and the effects planted for experiments to find. YAML, checked like rule files
(errors name the file and line); `service/synthetic/personas.yaml` is the default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.language.parse import RuleError, RulesInvalid, parse_model

DEFAULT = Path(__file__).with_name("personas.yaml")

Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(_Strict):
    """A log-normal amount: half of the draws are below `median`; `spread` is the
    standard deviation of its logarithm (0.5: most draws between 0.37 and 2.7 times the median)."""

    median: Positive
    spread: Annotated[float, Field(ge=0, le=2)] = 0.5


class Category(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    products: Annotated[int, Field(ge=1, le=100_000)]
    price: Money


class Rhythm(_Strict):
    """When sessions happen: a weight per hour of the day (0 to 23, the customer's local
    time) and per day of the week (Monday first)."""

    hours: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=24, max_length=24)]
    weekdays: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=7, max_length=7)]


class Channels(_Strict):
    """How a customer's traffic reaches the service. Storefront events go through the
    Segment endpoints (`segment`) or the events API; orders and checkouts come as the
    store platform's signed webhooks."""

    segment: Share = 0.7
    platforms: dict[str, Share] = Field(default_factory=lambda: {"shopify": 1.0})

    @model_validator(mode="after")
    def _platforms_known(self) -> Self:
        unknown = set(self.platforms) - {"shopify", "woocommerce"}
        if unknown:
            raise ValueError(f"unknown platform {sorted(unknown)[0]!r}: shopify or woocommerce")
        if abs(sum(self.platforms.values()) - 1) > 1e-6:
            raise ValueError("platform shares must add up to 1")
        return self


class Persona(_Strict):
    """How one kind of customer behaves. Rates are per product view unless named
    otherwise; every draw is from the generator's seeded random streams."""

    share: Share
    description: str = ""
    visits_per_week: Positive
    views_per_session: Positive = Field(description="Mean product views in a session.")
    add_to_cart: Share = Field(
        description="Chance that a product view puts it in the cart (a product dearer "
        "than twice the median order value proportionally less)."
    )
    cart_abandonment: Share = Field(description="Chance that a cart is left without an order.")
    order_value: Money
    discount_use: Share = 0.1
    refund_rate: Share = 0.05
    churn_after_days: Positive | None = Field(
        None, description="Mean days from a customer's first visit to their last; none: stays."
    )
    joins: Share = Field(
        0.0, description="Share of these customers whose first visit falls inside the span."
    )
    anonymous_sessions: Annotated[float, Field(ge=0)] = Field(
        1.0, description="Mean sessions browsed anonymously before signing in (then merged)."
    )
    marketing_consent: Share = 0.8
    categories: dict[str, Positive] = Field(
        default_factory=dict,
        description="Relative interest in categories (others get 1); empty: all alike.",
    )


class Effect(_Strict):
    """A planted effect, for experiments to find. Either content shown in a placement
    lifts the chance of an order in that session (`conversion_lift`, relative), or an
    offer shown in a placement brings back a share of abandoned carts (`recovers`)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    placement: str
    content: str | None = None
    offer: str | None = None
    conversion_lift: Annotated[float, Field(ge=-1, le=10)] = 0.0
    recovers: Share = 0.0

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.content is None) == (self.offer is None):
            raise ValueError("give either `content` or `offer`")
        return self


class PersonasFile(_Strict):
    store: Annotated[str, Field(min_length=1, max_length=64)] = "demo"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    locales: dict[str, Positive] = Field(default_factory=lambda: {"en_US": 1.0})
    categories: Annotated[list[Category], Field(min_length=1)]
    popularity: Annotated[float, Field(gt=0, le=3)] = Field(
        1.1, description="Zipf exponent of product popularity within a category."
    )
    rhythm: Rhythm
    channels: Channels = Channels()
    personas: Annotated[dict[str, Persona], Field(min_length=1)]
    effects: list[Effect] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        total = sum(p.share for p in self.personas.values())
        if abs(total - 1) > 1e-6:
            raise ValueError(f"persona shares add up to {total:g}, not 1")
        names = {c.name for c in self.categories}
        if len(names) != len(self.categories):
            raise ValueError("category names must be distinct")
        for name, persona in self.personas.items():
            unknown = set(persona.categories) - names
            if unknown:
                raise ValueError(f"persona {name} names an unknown category {sorted(unknown)[0]!r}")
        return self


def load(path: Path | None = None) -> PersonasFile:
    """The personas file at `path` (the default one when None). RulesInvalid with the
    file and line of each error."""
    path = path or DEFAULT
    try:
        source = path.read_text()
    except OSError as exc:
        raise RulesInvalid(
            [RuleError(str(path), None, f"cannot read it: {exc.strerror}")]
        ) from None
    _node, model = parse_model(path.name, source, PersonasFile)
    return model
