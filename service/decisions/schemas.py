from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Placement = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", examples=["homepage_hero"])]


class _Open(BaseModel):
    # The storefront may send more than is named here; rules can test it as context.*.
    model_config = ConfigDict(extra="allow")


class PageContext(_Open):
    path: str | None = Field(default=None, max_length=2048, examples=["/"])
    type: str | None = Field(default=None, max_length=64, examples=["home"])


class ProductContext(_Open):
    id: str | None = Field(default=None, max_length=255)
    category: str | None = Field(default=None, max_length=255)
    price: float | None = Field(default=None, ge=0)


class CartContext(_Open):
    id: str | None = Field(default=None, max_length=255)
    value: float | None = Field(default=None, ge=0, examples=[42.5])
    items: int | None = Field(default=None, ge=0)


class DecisionContext(_Open):
    page: PageContext | None = None
    product: ProductContext | None = None
    cart: CartContext | None = None
    device: str | None = Field(default=None, max_length=32, examples=["mobile"])
    locale: str | None = Field(default=None, max_length=35, examples=["en-GB"])
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", examples=["GB"])


class DecisionIn(BaseModel):
    """Who is looking (none of the three: an unknown visitor), where, and in what
    context."""

    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    user_id: str | None = Field(default=None, min_length=1, max_length=255)
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=255)
    placements: list[Placement] = Field(min_length=1, max_length=20)
    context: DecisionContext = Field(default_factory=DecisionContext)

    @field_validator("placements")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a placement is named twice")
        return value


class ContentOut(BaseModel):
    id: str
    params: dict[str, Any]
    source: Literal["rule", "inbox", "default", "experiment"]
    rule: str | None = Field(description="`ruleset/rule` that chose it, for `source: rule`.")


class OfferOut(BaseModel):
    offer: str = Field(description="The offer's code.")
    params: dict[str, Any]
    source: Literal["rule", "inbox"]
    rule: str | None
    expires_at: datetime | None
    inbox_id: int | None = Field(description="The inbox entry, for `source: inbox`.")


class ExplainOut(BaseModel):
    rule: str
    priority: int
    matched: bool
    facts: dict[str, Any] = Field(description="The facts the rule tests, with their values.")


class ArmOut(BaseModel):
    experiment: str
    variant: str = Field(description="The variant shown, or `holdout` (the default, no rule).")


class PlacementOut(BaseModel):
    content: ContentOut
    offers: list[OfferOut]
    experiments: list[ArmOut] = Field(
        description="The experiments on this placement the visitor is in, with their variant."
    )
    explain: list[ExplainOut] | None = None


class RuleVersionOut(BaseModel):
    ruleset: str
    version: int
    version_id: int | None = Field(description="None when served from files, not a deployment.")
    content_hash: str


class DecisionOut(BaseModel):
    decision_id: uuid.UUID
    customer_id: uuid.UUID | None = Field(description="None for an unknown visitor.")
    segments: list[str]
    degraded: bool = Field(
        description="True when the database did not answer within the budget: defaults "
        "(or the last rules known) were used, without the customer's profile."
    )
    rule_versions: list[RuleVersionOut]
    placements: dict[str, PlacementOut]
