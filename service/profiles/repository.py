"""SQL for profiles: identities, merges, traits, orders and computed traits."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from service.db import advisory_xact_locks, json_document
from service.events.models import Event
from service.profiles.identity import IdentityKey, is_strong
from service.profiles.models import (
    Customer,
    CustomerSpend,
    Identity,
    Order,
    ProductView,
    ProfileMerge,
)

# --- identities -------------------------------------------------------------------


def lock_keys(session: Session, keys: Iterable[IdentityKey]) -> None:
    """Serialise resolution of the same identities across concurrent transactions.

    Locks are taken in one sorted pass, so two batches sharing keys cannot deadlock.
    """
    advisory_xact_locks(session, (f"{k.kind}:{k.value}" for k in keys))


def owners(session: Session, keys: Iterable[IdentityKey]) -> dict[tuple[str, str], uuid.UUID]:
    """The live profile owning each key (following a merge to the profile it became)."""
    pairs = sorted({(k.kind, k.value) for k in keys})
    if not pairs:
        return {}
    kinds, values = zip(*pairs, strict=True)
    rows = session.execute(
        text(
            "SELECT i.kind, i.value, coalesce(c.merged_into_id, c.id) AS customer_id "
            "FROM identities AS i JOIN unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) "
            "AS k(kind, value) ON i.kind = k.kind AND i.value = k.value "
            "JOIN customers AS c ON c.id = i.customer_id"
        ),
        {"kinds": list(kinds), "values": list(values)},
    )
    return {(r.kind, r.value): r.customer_id for r in rows}


def lock_customers(session: Session, ids: Iterable[uuid.UUID]) -> None:
    """Row locks on these profiles, taken in id order (so two resolvers cannot deadlock
    on them)."""
    wanted = sorted(set(ids))
    if wanted:
        session.execute(
            text("SELECT id FROM customers WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
            {"ids": wanted},
        )


def strong_ids(
    session: Session, customer_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, set[str]]]:
    ids = list(set(customer_ids))
    result: dict[uuid.UUID, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    if not ids:
        return result
    rows = session.execute(
        select(Identity.customer_id, Identity.kind, Identity.value).where(
            Identity.customer_id.in_(ids)
        )
    )
    for r in rows:
        if is_strong(r.kind):
            result[r.customer_id][r.kind].add(r.value)
    return result


def insert_customers(session: Session, ids: Iterable[uuid.UUID]) -> None:
    new = list(ids)
    if new:
        session.execute(
            text("INSERT INTO customers (id) SELECT unnest(CAST(:ids AS uuid[]))"), {"ids": new}
        )


def insert_identities(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    document = [
        {
            **row,
            "encrypted": base64.b64encode(row["encrypted"]).decode() if row["encrypted"] else None,
        }
        for row in rows
    ]
    session.execute(
        text(
            "INSERT INTO identities (customer_id, kind, value, encrypted) "
            "SELECT customer_id, kind, value, decode(encrypted, 'base64') "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(customer_id uuid, kind text, "
            "value text, encrypted text) ON CONFLICT (kind, value) DO NOTHING"
        ),
        {"rows": json_document(document)},
    )


def customer_by_identity(session: Session, *, kind: str, value: str) -> uuid.UUID | None:
    return session.scalar(
        select(Identity.customer_id).where(Identity.kind == kind, Identity.value == value)
    )


def identities_of(session: Session, customer_id: uuid.UUID) -> Sequence[Identity]:
    return session.scalars(
        select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.id)
    ).all()


def get_customer(session: Session, customer_id: uuid.UUID) -> Customer | None:
    """The customer, following a merge to the profile it became."""
    customer = session.get(Customer, customer_id)
    seen = set()
    while customer is not None and customer.merged_into_id and customer.id not in seen:
        seen.add(customer.id)
        customer = session.get(Customer, customer.merged_into_id)
    return customer


# --- merges -----------------------------------------------------------------------


def merge(
    session: Session,
    *,
    winner: uuid.UUID,
    loser: uuid.UUID,
    reason: str,
    source: str,
    message_id: str,
) -> None:
    """Move everything of `loser` onto `winner`, and record why."""
    for model in (Identity, Event, Order):
        session.execute(update(model).where(model.customer_id == loser).values(customer_id=winner))
    # Views add up; a plain UPDATE would collide on (customer, product).
    session.execute(
        text(
            "INSERT INTO product_views (customer_id, product_id, views, last_viewed_at) "
            "SELECT :winner, product_id, views, last_viewed_at FROM product_views "
            "WHERE customer_id = :loser "
            "ON CONFLICT (customer_id, product_id) DO UPDATE SET "
            "views = product_views.views + excluded.views, "
            "last_viewed_at = GREATEST(product_views.last_viewed_at, excluded.last_viewed_at)"
        ),
        {"winner": winner, "loser": loser},
    )
    session.execute(text("DELETE FROM product_views WHERE customer_id = :l"), {"l": loser})
    session.execute(text("DELETE FROM customer_spend WHERE customer_id = :l"), {"l": loser})
    # Segments a rule or the API put the loser in go with them; computed ones are
    # recomputed for the winner, whose events now include the loser's.
    session.execute(
        text(
            "UPDATE segment_memberships AS m SET customer_id = :winner"
            " WHERE m.customer_id = :loser AND m.exited_at IS NULL"
            " AND m.added_by <> 'definition' AND NOT EXISTS (SELECT 1 FROM segment_memberships"
            "  AS w WHERE w.customer_id = :winner AND w.segment = m.segment"
            "  AND w.exited_at IS NULL)"
        ),
        {"winner": winner, "loser": loser},
    )
    session.execute(
        text(
            "UPDATE segment_memberships SET exited_at = now(), exited_by = 'merged'"
            " WHERE customer_id = :loser AND exited_at IS NULL"
        ),
        {"loser": loser},
    )
    session.execute(
        update(Customer).where(Customer.merged_into_id == loser).values(merged_into_id=winner)
    )
    winner_row, loser_row = session.get_one(Customer, winner), session.get_one(Customer, loser)
    for trait, at in loser_row.trait_times.items():
        if at > winner_row.trait_times.get(trait, ""):
            winner_row.traits = {**winner_row.traits, trait: loser_row.traits.get(trait)}
            winner_row.trait_times = {**winner_row.trait_times, trait: at}
    winner_row.last_seen_at = max(
        (t for t in (winner_row.last_seen_at, loser_row.last_seen_at) if t), default=None
    )
    loser_row.merged_into_id = winner
    session.flush()
    recompute_spend(session, [winner])  # the loser's orders now count for the winner
    record_merge(
        session,
        winner=winner,
        loser=loser,
        outcome="merged",
        reason=reason,
        source=source,
        message_id=message_id,
    )


def record_merge(
    session: Session,
    *,
    winner: uuid.UUID,
    loser: uuid.UUID,
    outcome: str,
    reason: str,
    source: str,
    message_id: str,
) -> None:
    if outcome == "refused" and session.scalar(
        select(ProfileMerge.id).where(
            ProfileMerge.winner_id == winner,
            ProfileMerge.loser_id == loser,
            ProfileMerge.outcome == "refused",
        )
    ):
        return  # a refusal is recorded once per pair of profiles, not per event
    session.add(
        ProfileMerge(
            winner_id=winner,
            loser_id=loser,
            outcome=outcome,
            reason=reason,
            source=source,
            message_id=message_id,
        )
    )


def merges_of(session: Session, customer_id: uuid.UUID) -> Sequence[ProfileMerge]:
    return session.scalars(
        select(ProfileMerge)
        .where(or_(ProfileMerge.winner_id == customer_id, ProfileMerge.loser_id == customer_id))
        .order_by(ProfileMerge.id)
    ).all()


# --- traits and computed traits ---------------------------------------------------


def customers_for_update(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Customer]:
    rows = session.scalars(
        select(Customer).where(Customer.id.in_(list(set(ids)))).with_for_update()
    )
    return {c.id: c for c in rows}


def touch_last_seen(session: Session, seen: dict[uuid.UUID, datetime]) -> None:
    if not seen:
        return
    session.execute(
        text(
            "UPDATE customers AS c SET last_seen_at = GREATEST(c.last_seen_at, v.seen) "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, seen timestamptz) "
            "WHERE c.id = v.id"
        ),
        {"rows": json_document([{"id": c, "seen": at} for c, at in sorted(seen.items())])},
    )


def add_product_views(
    session: Session, views: dict[tuple[uuid.UUID, str], tuple[int, datetime]]
) -> None:
    if not views:
        return
    session.execute(
        text(
            "INSERT INTO product_views (customer_id, product_id, views, last_viewed_at) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(customer_id uuid, "
            "product_id text, views int, last_viewed_at timestamptz) "
            "ON CONFLICT (customer_id, product_id) DO UPDATE SET "
            "views = product_views.views + excluded.views, "
            "last_viewed_at = GREATEST(product_views.last_viewed_at, excluded.last_viewed_at)"
        ),
        {
            "rows": json_document(
                [
                    {"customer_id": c, "product_id": p, "views": n, "last_viewed_at": at}
                    for (c, p), (n, at) in sorted(views.items())
                ]
            )
        },
    )


def product_views(session: Session, customer_id: uuid.UUID) -> Sequence[ProductView]:
    return session.scalars(
        select(ProductView)
        .where(ProductView.customer_id == customer_id)
        .order_by(ProductView.views.desc(), ProductView.product_id)
    ).all()


_UPSERT_ORDER = text(
    """
    INSERT INTO orders (source, order_id, customer_id, status, status_at, currency, total,
                        placed_at, refunded, refunded_cumulative)
    VALUES (:source, :order_id, :customer_id, :status, :status_at, :currency, :total,
            :placed_at, :refunded, :refunded_cumulative)
    ON CONFLICT (source, order_id) DO UPDATE SET
      -- The newest status wins, but a generic update or a refund never undoes a
      -- cancellation (platforms send an update beside the cancellation itself).
      status = CASE WHEN excluded.status_at >= orders.status_at
                     AND NOT (orders.status = 'cancelled'
                              AND excluded.status IN ('updated', 'refunded'))
                    THEN excluded.status ELSE orders.status END,
      total = CASE WHEN excluded.total IS NOT NULL
                    AND (excluded.status_at >= orders.status_at OR orders.total IS NULL)
                   THEN excluded.total ELSE orders.total END,
      currency = CASE WHEN excluded.currency IS NOT NULL
                       AND (excluded.status_at >= orders.status_at OR orders.currency IS NULL)
                      THEN excluded.currency ELSE orders.currency END,
      placed_at = COALESCE(orders.placed_at, excluded.placed_at),
      refunded = orders.refunded + excluded.refunded,
      refunded_cumulative = GREATEST(orders.refunded_cumulative, excluded.refunded_cumulative),
      status_at = GREATEST(orders.status_at, excluded.status_at)
    """
)


def upsert_orders(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Apply order events, oldest first. The newest status wins whatever the arrival
    order; a total or currency is replaced only by a newer event's; refunds add up
    (each refund event is applied once: events are deduplicated before this)."""
    for row in rows:
        session.execute(_UPSERT_ORDER, row)


_RECOMPUTE_SPEND = text(
    """
    WITH agg AS (
        SELECT customer_id, currency, count(*) AS n,
               sum(coalesce(total, 0) - GREATEST(refunded, refunded_cumulative)) AS spent
        FROM orders
        WHERE customer_id = ANY(:ids) AND status <> 'cancelled' AND currency IS NOT NULL
        GROUP BY customer_id, currency),
    upserted AS (
        INSERT INTO customer_spend (customer_id, currency, orders_count, total_spent)
        SELECT customer_id, currency, n, spent FROM agg
        ON CONFLICT (customer_id, currency) DO UPDATE
        SET orders_count = excluded.orders_count, total_spent = excluded.total_spent),
    stale AS (
        DELETE FROM customer_spend AS cs
        WHERE cs.customer_id = ANY(:ids) AND NOT EXISTS (
            SELECT 1 FROM agg WHERE agg.customer_id = cs.customer_id
                              AND agg.currency = cs.currency))
    UPDATE customers AS c
    SET orders_count = coalesce(o.n, 0), first_order_at = o.first_at, last_order_at = o.last_at
    FROM unnest(CAST(:ids AS uuid[])) AS x(id)
    LEFT JOIN (
        SELECT customer_id, count(*) AS n, min(placed_at) AS first_at, max(placed_at) AS last_at
        FROM orders WHERE customer_id = ANY(:ids) AND status <> 'cancelled'
        GROUP BY customer_id) AS o ON o.customer_id = x.id
    WHERE c.id = x.id
    """
)


def recompute_spend(session: Session, customer_ids: Iterable[uuid.UUID]) -> None:
    """Orders count, money per currency and first/last order, from the orders table (one
    statement: the spend rows of these customers are upserted, stale ones removed)."""
    ids = sorted(set(customer_ids))
    if ids:
        session.execute(_RECOMPUTE_SPEND, {"ids": ids})


def spend(session: Session, customer_id: uuid.UUID) -> Sequence[CustomerSpend]:
    return session.scalars(
        select(CustomerSpend)
        .where(CustomerSpend.customer_id == customer_id)
        .order_by(CustomerSpend.currency)
    ).all()


def recompute_rfm(session: Session, *, now: datetime) -> int:
    """RFM quintiles across all customers with orders. Monetary ranks within each
    currency (amounts in different currencies are not comparable)."""
    result = session.execute(
        text(
            "WITH base AS ("
            "  SELECT c.id, c.last_order_at, c.orders_count, s.currency, s.total_spent "
            "  FROM customers c JOIN LATERAL ("
            "    SELECT currency, total_spent FROM customer_spend WHERE customer_id = c.id "
            "    ORDER BY orders_count DESC, currency LIMIT 1) s ON true "
            "  WHERE c.merged_into_id IS NULL AND c.orders_count > 0), "
            "scored AS ("
            "  SELECT id, ntile(5) OVER (ORDER BY last_order_at) AS r, "
            "  ntile(5) OVER (ORDER BY orders_count) AS f, "
            "  ntile(5) OVER (PARTITION BY currency ORDER BY total_spent) AS m FROM base) "
            "UPDATE customers c SET rfm_recency = s.r, rfm_frequency = s.f, "
            "rfm_monetary = s.m, rfm_computed_at = :now FROM scored s WHERE c.id = s.id"
        ),
        {"now": now},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def events_page(
    session: Session,
    *,
    customer_id: uuid.UUID,
    before: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[Event]:
    """A profile's events, newest first, `limit` at a time after the `before` cursor."""
    query = select(Event).where(Event.customer_id == customer_id)
    if before is not None:
        query = query.where(tuple_(Event.occurred_at, Event.id) < tuple_(*before))
    return session.scalars(
        query.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)
    ).all()
