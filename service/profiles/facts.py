"""SQL: the profile facts that rules, segments and decisions read (computed traits,
traits, consent, spend, orders and spend in recent windows, current segments), and the
per-customer lock that evaluations take so that a customer is evaluated by one
transaction at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.db import advisory_xact_locks
from service.language.facts import WINDOW_DAYS, Profile


def lock_for_evaluation(session: Session, customers: Iterable[uuid.UUID]) -> None:
    """Limits and memberships are read then written: one evaluation per customer at a
    time (rules, segment runs and re-checks alike)."""
    advisory_xact_locks(session, (f"rules:{c}" for c in customers))


_ORDERS_IN = ", ".join(f"w.orders_{days}d" for days in WINDOW_DAYS)
_SPENT_IN = ", ".join(f"w.spent_{days}d" for days in WINDOW_DAYS)

# A profile row's columns, for the customer `c` joined to `s` and `w` (`profile_joins`).
PROFILE_SELECT = (
    "c.id, c.orders_count, c.first_order_at, "  # noqa: S608 (constant text)
    "c.last_order_at, c.last_seen_at, c.rfm_recency, c.rfm_frequency, c.rfm_monetary, "
    "c.traits, c.discount_orders, c.categories_viewed, c.categories_bought, "
    "coalesce(s.total_spent, 0) AS total_spent, "
    f"ARRAY[{_ORDERS_IN}] AS orders_in, ARRAY[{_SPENT_IN}] AS spent_in, "
    "coalesce((SELECT array_agg(m.segment ORDER BY m.segment) "
    "          FROM segment_memberships AS m "
    "          WHERE m.customer_id = c.id AND m.exited_at IS NULL), '{}') AS segments"
)


def profile_joins(*, now: str, currency: str) -> str:
    """What PROFILE_SELECT reads beside the customer `c`: their spend in the shop's
    currency, and their orders and spend in the last WINDOW_DAYS days before `now`, in
    SQL whose parameters are written `now` and `currency` (each driver has its style).

    The windows slide with time, so they are summed at read time, in the statement that
    reads the profile: one index range scan per customer over the orders of the longest
    window (`ix_orders_customer_placed`), skipped for those whose last order is older.
    Amounts are summed as exact numerics, then given as float8: they are only compared.
    No customer: zeros."""
    longest = max(WINDOW_DAYS)
    net = "coalesce(o.total, 0) - GREATEST(o.refunded, o.refunded_cumulative)"
    windows = []
    for days in WINDOW_DAYS:
        since = f"o.placed_at >= {now} - interval '{days} days'"
        windows.append(f"count(*) FILTER (WHERE {since}) AS orders_{days}d")
        windows.append(
            f"CAST(coalesce(sum({net}) FILTER (WHERE {since} AND o.currency = {currency}), 0)"
            f" AS float8) AS spent_{days}d"
        )
    return (
        " LEFT JOIN customer_spend AS s"  # noqa: S608 (constant text)
        f" ON s.customer_id = c.id AND s.currency = {currency}"
        f" LEFT JOIN LATERAL (SELECT {', '.join(windows)} FROM orders AS o"
        # A customer whose last order is older than the longest window has none in it:
        # their orders are not scanned.
        f" WHERE c.last_order_at >= {now} - interval '{longest} days'"
        f" AND o.customer_id = c.id AND o.placed_at >= {now} - interval '{longest} days'"
        " AND o.status <> 'cancelled') AS w ON true"
    )


_READ = text(
    f"SELECT {PROFILE_SELECT} FROM customers AS c"  # noqa: S608 (constant text)
    + profile_joins(now="CAST(:now AS timestamptz)", currency=":currency")
    + " WHERE c.id = ANY(CAST(:ids AS uuid[]))"
)


def read(
    session: Session, customers: Iterable[uuid.UUID], *, currency: str, now: datetime
) -> dict[uuid.UUID, Profile]:
    """These customers' profiles, with their orders and spend in the windows that end
    at `now` (the time they are evaluated at): one statement."""
    rows = session.execute(
        _READ, {"ids": [str(c) for c in set(customers)], "currency": currency, "now": now}
    )
    return {row.id: profile_from_row(row) for row in rows}


def profile_from_row(row: Any) -> Profile:
    """A profile from a row with the columns PROFILE_SELECT names."""
    traits = dict(row.traits or {})
    consent = traits.get("consent")
    return Profile(
        customer_id=row.id,
        orders_count=row.orders_count,
        total_spent=row.total_spent,
        first_order_at=row.first_order_at,
        last_order_at=row.last_order_at,
        last_seen_at=row.last_seen_at,
        orders_in=tuple(row.orders_in),
        spent_in=tuple(row.spent_in),
        discount_orders=row.discount_orders,
        categories_viewed=tuple(row.categories_viewed or ()),
        categories_bought=tuple(row.categories_bought or ()),
        rfm=(row.rfm_recency, row.rfm_frequency, row.rfm_monetary),
        traits=traits,
        segments=tuple(row.segments),
        consent={k: v for k, v in consent.items() if isinstance(v, bool)}
        if isinstance(consent, dict)
        else {},
    )
