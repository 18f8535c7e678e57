"""SQL applying the effects of resolved events: last seen, product views, orders, and
the spend and RFM scores computed from them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.db import json_document


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


# A profile keeps at most this many categories viewed and bought: a storefront sending a
# category per product cannot grow a profile row without bound.
MAX_CATEGORIES = 200


def add_viewed_categories(session: Session, categories: dict[uuid.UUID, set[str]]) -> None:
    """Add categories to what each customer has viewed. A row already holding them all
    (most views) is not written."""
    if not categories:
        return
    session.execute(
        text(
            "UPDATE customers AS c SET categories_viewed = ARRAY("
            "  SELECT DISTINCT x FROM unnest(c.categories_viewed || v.categories) AS x"
            "  ORDER BY x LIMIT :cap) "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, categories text[]) "
            "WHERE c.id = v.id AND NOT v.categories <@ c.categories_viewed "
            "AND cardinality(c.categories_viewed) < :cap"
        ),
        {
            "rows": json_document(
                [{"id": c, "categories": sorted(found)} for c, found in sorted(categories.items())]
            ),
            "cap": MAX_CATEGORIES,
        },
    )


_UPSERT_ORDER = text(
    """
    INSERT INTO orders (source, order_id, customer_id, status, status_at, currency, total,
                        placed_at, refunded, refunded_cumulative, discounted, categories)
    VALUES (:source, :order_id, :customer_id, :status, :status_at, :currency, :total,
            :placed_at, :refunded, :refunded_cumulative, :discounted,
            CAST(:categories AS text[]))
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
      discounted = CASE WHEN excluded.discounted IS NOT NULL
                         AND (excluded.status_at >= orders.status_at OR orders.discounted IS NULL)
                        THEN excluded.discounted ELSE orders.discounted END,
      categories = CASE WHEN excluded.categories IS NOT NULL
                         AND (excluded.status_at >= orders.status_at OR orders.categories IS NULL)
                        THEN excluded.categories ELSE orders.categories END,
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
    SET orders_count = coalesce(o.n, 0), first_order_at = o.first_at, last_order_at = o.last_at,
        discount_orders = coalesce(o.discounted, 0),
        categories_bought = coalesce(k.categories[1:CAST(:cap AS int)], '{}')
    FROM unnest(CAST(:ids AS uuid[])) AS x(id)
    LEFT JOIN (
        SELECT customer_id, count(*) AS n, min(placed_at) AS first_at, max(placed_at) AS last_at,
               count(*) FILTER (WHERE discounted) AS discounted
        FROM orders WHERE customer_id = ANY(:ids) AND status <> 'cancelled'
        GROUP BY customer_id) AS o ON o.customer_id = x.id
    LEFT JOIN (
        SELECT o.customer_id, array_agg(DISTINCT u.category ORDER BY u.category) AS categories
        FROM orders AS o CROSS JOIN LATERAL unnest(o.categories) AS u(category)
        WHERE o.customer_id = ANY(:ids) AND o.status <> 'cancelled'
        GROUP BY o.customer_id) AS k ON k.customer_id = x.id
    WHERE c.id = x.id
    """
)


def recompute_spend(session: Session, customer_ids: Iterable[uuid.UUID]) -> None:
    """Orders count, money per currency, first/last order, orders with a discount and the
    categories bought, from the orders table (one statement: the spend rows of these
    customers are upserted, stale ones removed)."""
    ids = sorted(set(customer_ids))
    if ids:
        session.execute(_RECOMPUTE_SPEND, {"ids": ids, "cap": MAX_CATEGORIES})


# RFM scores from 1 to 5 by the share of customers with a strictly lower value:
# 1 + floor(5 * below / scored), where below = rank() - 1 (monetary within each
# currency). Equal values have the same rank, so tied customers share a score (six
# customers with one order each all get F = 1), where ntile(5) spread them over 1-5 in
# arbitrary order. A score of 5 means at least 80% of customers are below.
_RECOMPUTE_RFM = text(
    "WITH base AS ("
    "  SELECT c.id, c.last_order_at, c.orders_count, s.currency, s.total_spent "
    "  FROM customers c JOIN LATERAL ("
    "    SELECT currency, total_spent FROM customer_spend WHERE customer_id = c.id "
    "    ORDER BY orders_count DESC, currency LIMIT 1) s ON true "
    "  WHERE c.merged_into_id IS NULL AND c.orders_count > 0), "
    "ranked AS ("
    "  SELECT id, count(*) OVER () AS n, count(*) OVER (PARTITION BY currency) AS n_m, "
    "  rank() OVER (ORDER BY last_order_at) - 1 AS below_r, "
    "  rank() OVER (ORDER BY orders_count) - 1 AS below_f, "
    "  rank() OVER (PARTITION BY currency ORDER BY total_spent) - 1 AS below_m FROM base), "
    "scored AS ("
    "  SELECT id, (1 + floor(5 * below_r::numeric / n))::int AS r, "
    "  (1 + floor(5 * below_f::numeric / n))::int AS f, "
    "  (1 + floor(5 * below_m::numeric / n_m))::int AS m FROM ranked) "
    "UPDATE customers c SET rfm_recency = s.r, rfm_frequency = s.f, "
    "rfm_monetary = s.m, rfm_computed_at = :now FROM scored s WHERE c.id = s.id"
)


def recompute_rfm(session: Session, *, now: datetime) -> int:
    """RFM quintiles across all customers with orders (5 = most recent, most orders,
    most spent; ties share a score). Monetary ranks within each currency (amounts in
    different currencies are not comparable)."""
    result = session.execute(_RECOMPUTE_RFM, {"now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]
