from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import FieldError, ProblemError, problem_responses
from service.params import MAX_ID
from service.profiles import repository, service
from service.profiles.models import Customer
from service.profiles.schemas import (
    ConsentIn,
    ConsentOut,
    EventOut,
    EventsPage,
    IdentityOut,
    ProductViewsOut,
    ProfileOut,
    RfmOut,
    SpendOut,
)
from service.settings import get_settings

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
Marketer = Annotated[ApiKey, Depends(require(Scope.MARKETER))]
Ingest = Annotated[ApiKey, Depends(require(Scope.INGEST))]
Ref = Annotated[
    str,
    Path(description="A profile id, or an identity as `kind:value`, e.g. `email:ann@example.com`"),
]


def _profile(session: DbSession, ref: str) -> Customer:
    customer = service.find(session, ref=ref)
    if customer is None:
        raise ProblemError(404, "No profile matches this id or identity.")
    return customer


@router.get("/{ref}", response_model=ProfileOut, responses=problem_responses(401, 403, 404, 500))
def get_profile(ref: Ref, session: DbSession, _: Marketer) -> ProfileOut:
    """A profile with its traits, identities and computed traits (scope `marketer`)."""
    customer = _profile(session, ref)
    merges = repository.merges_of(session, customer.id)
    return ProfileOut(
        id=customer.id,
        created_at=customer.created_at,
        traits=customer.traits,
        identities=[IdentityOut(kind=k, value=v) for k, v in service.identities(session, customer)],
        orders_count=customer.orders_count,
        spend=[
            SpendOut(
                currency=s.currency,
                orders_count=s.orders_count,
                total_spent=format(s.total_spent.normalize(), "f"),
                average_order_value=str(
                    (s.total_spent / s.orders_count).quantize(Decimal("0.01"))
                    if s.orders_count
                    else Decimal(0)
                ),
            )
            for s in repository.spend(session, customer.id)
        ],
        first_order_at=customer.first_order_at,
        last_order_at=customer.last_order_at,
        last_seen_at=customer.last_seen_at,
        rfm=RfmOut(
            recency=customer.rfm_recency,
            frequency=customer.rfm_frequency or 0,
            monetary=customer.rfm_monetary or 0,
            computed_at=customer.rfm_computed_at,
        )
        if customer.rfm_recency and customer.rfm_computed_at
        else None,
        product_views=[
            ProductViewsOut(product_id=v.product_id, views=v.views, last_viewed_at=v.last_viewed_at)
            for v in repository.product_views(session, customer.id)[:100]
        ],
        merged_from=[
            m.loser_id for m in merges if m.outcome == "merged" and m.winner_id == customer.id
        ],
    )


def _cursor(value: str | None) -> tuple[datetime, int] | None:
    """The (occurred at, event id) a `next_cursor` holds; 422 naming the parameter when it
    holds none, or an id no event can have (beyond the bigints the database stores)."""
    if value is None:
        return None
    try:
        at, _, event_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        before = datetime.fromisoformat(at), int(event_id)
    except ValueError as exc:
        raise _invalid_cursor() from exc
    if not 0 <= before[1] <= MAX_ID:
        raise _invalid_cursor()
    return before


def _invalid_cursor() -> ProblemError:
    return ProblemError(
        422,
        "The cursor is not valid.",
        errors=[FieldError(field="query.cursor", message="not valid")],
    )


@router.get(
    "/{ref}/events", response_model=EventsPage, responses=problem_responses(401, 403, 404, 422, 500)
)
def get_profile_events(
    ref: Ref,
    session: DbSession,
    _: Marketer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> EventsPage:
    """The profile's events, newest first (by when they occurred), a page at a time."""
    customer = _profile(session, ref)
    rows = repository.events_page(
        session, customer_id=customer.id, before=_cursor(cursor), limit=limit
    )
    last = rows[-1] if len(rows) == limit else None
    next_cursor = (
        base64.urlsafe_b64encode(f"{last.occurred_at.isoformat()}|{last.id}".encode()).decode()
        if last
        else None
    )
    return EventsPage(
        events=[EventOut.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=next_cursor,
    )


@router.put(
    "/{ref}/consent",
    response_model=ConsentOut,
    responses=problem_responses(401, 403, 404, 422, 500),
)
def put_consent(ref: Ref, body: ConsentIn, session: DbSession, _: Ingest) -> ConsentOut:
    """Set consent per purpose (scope `ingest`), e.g. when the customer changes their
    preferences in the shop. Marketing actions check it again just before sending."""
    customer = _profile(session, ref)
    stored = service.set_consent(
        session, customer=customer, consent=body.root, now=datetime.now(UTC)
    )
    return ConsentOut(consent=stored, effective={**get_settings().consent_defaults, **stored})
