"""SQL: the profile facts that rules, segments and decisions read (computed traits,
traits, consent, spend, current segments), and the per-customer lock that evaluations
take so that a customer is evaluated by one transaction at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.db import advisory_xact_locks
from service.language.facts import Profile


def lock_for_evaluation(session: Session, customers: Iterable[uuid.UUID]) -> None:
    """Limits and memberships are read then written: one evaluation per customer at a
    time (rules, segment runs and re-checks alike)."""
    advisory_xact_locks(session, (f"rules:{c}" for c in customers))


def read(
    session: Session, customers: Iterable[uuid.UUID], *, currency: str
) -> dict[uuid.UUID, Profile]:
    rows = session.execute(
        text(
            "SELECT c.id, c.orders_count, c.first_order_at, c.last_order_at, c.last_seen_at, "
            "c.rfm_recency, c.rfm_frequency, c.rfm_monetary, c.traits, "
            "coalesce(s.total_spent, 0) AS total_spent, "
            "coalesce((SELECT array_agg(m.segment ORDER BY m.segment) "
            "          FROM segment_memberships AS m "
            "          WHERE m.customer_id = c.id AND m.exited_at IS NULL), '{}') AS segments "
            "FROM customers AS c LEFT JOIN customer_spend AS s "
            "  ON s.customer_id = c.id AND s.currency = :currency "
            "WHERE c.id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": [str(c) for c in set(customers)], "currency": currency},
    )
    return {row.id: profile_from_row(row) for row in rows}


def profile_from_row(row: Any) -> Profile:
    """A profile from a row with the columns `read` selects."""
    traits = dict(row.traits or {})
    consent = traits.get("consent")
    return Profile(
        customer_id=row.id,
        orders_count=row.orders_count,
        total_spent=row.total_spent,
        first_order_at=row.first_order_at,
        last_order_at=row.last_order_at,
        last_seen_at=row.last_seen_at,
        rfm=(row.rfm_recency, row.rfm_frequency, row.rfm_monetary),
        traits=traits,
        segments=tuple(row.segments),
        consent={k: v for k, v in consent.items() if isinstance(v, bool)}
        if isinstance(consent, dict)
        else {},
    )
