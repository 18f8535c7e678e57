"""profile facts: orders with a discount, categories viewed and bought

Revision ID: bcf3e5eb6a22
Revises: d8a80a71281a
Create Date: 2026-12-03 18:10:00.000000

Orders keep whether they used a discount and their products' categories; customers keep
how many of their orders used one and the categories they viewed and bought. Existing
rows are filled from the stored events, as the intake would have filled them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "bcf3e5eb6a22"
down_revision: str | None = "d8a80a71281a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What service.profiles.effects records, for the events stored before: an order's
# discount and categories from its newest event that says them (Order Completed, Updated
# or Cancelled), a category trimmed and cut to 100 characters, at most 200 a profile.
FILL = [
    r"""
    UPDATE orders AS o SET discounted = d.discounted FROM (
      SELECT DISTINCT ON (e.source, e.properties->>'order_id') e.source,
             e.properties->>'order_id' AS order_id,
             coalesce((e.properties->>'discount')::numeric > 0, false)
             OR (jsonb_typeof(e.properties->'coupon') = 'string'
                 AND btrim(e.properties->>'coupon', E' \t\n\r') <> '') AS discounted
      FROM events AS e
      WHERE e.type = 'track'
        AND e.name IN ('Order Completed', 'Order Updated', 'Order Cancelled')
        AND (e.properties ? 'discount' OR e.properties ? 'coupon')
      ORDER BY e.source, e.properties->>'order_id', e.occurred_at DESC, e.id DESC) AS d
    WHERE o.source = d.source AND o.order_id = d.order_id
    """,
    r"""
    UPDATE orders AS o SET categories = d.categories FROM (
      SELECT DISTINCT ON (e.source, e.properties->>'order_id') e.source,
             e.properties->>'order_id' AS order_id,
             ARRAY(SELECT DISTINCT left(btrim(p->>'category', E' \t\n\r'), 100)
                   FROM jsonb_array_elements(e.properties->'products') AS p
                   WHERE jsonb_typeof(p) = 'object'
                     AND jsonb_typeof(p->'category') = 'string'
                     AND btrim(p->>'category', E' \t\n\r') <> ''
                   ORDER BY 1) AS categories
      FROM events AS e
      WHERE e.type = 'track'
        AND e.name IN ('Order Completed', 'Order Updated', 'Order Cancelled')
        AND jsonb_typeof(e.properties->'products') = 'array'
      ORDER BY e.source, e.properties->>'order_id', e.occurred_at DESC, e.id DESC) AS d
    WHERE o.source = d.source AND o.order_id = d.order_id
    """,
    """
    UPDATE customers AS c SET discount_orders = d.n FROM (
      SELECT customer_id, count(*) AS n FROM orders
      WHERE status <> 'cancelled' AND discounted GROUP BY customer_id) AS d
    WHERE c.id = d.customer_id
    """,
    """
    UPDATE customers AS c SET categories_bought = d.categories FROM (
      SELECT o.customer_id,
             (array_agg(DISTINCT u.category ORDER BY u.category))[1:200] AS categories
      FROM orders AS o CROSS JOIN LATERAL unnest(o.categories) AS u(category)
      WHERE o.status <> 'cancelled' GROUP BY o.customer_id) AS d
    WHERE c.id = d.customer_id
    """,
    r"""
    UPDATE customers AS c SET categories_viewed = d.categories FROM (
      SELECT customer_id, (array_agg(DISTINCT v.category ORDER BY v.category))[1:200]
             AS categories
      FROM (SELECT customer_id, left(btrim(properties->>'category', E' \t\n\r'), 100)
                   AS category
            FROM events
            WHERE type = 'track' AND name = 'Product Viewed' AND customer_id IS NOT NULL
              AND jsonb_typeof(properties->'category') = 'string') AS v
      WHERE v.category <> '' GROUP BY customer_id) AS d
    WHERE c.id = d.customer_id
    """,
]


def upgrade() -> None:
    op.add_column(
        "customers", sa.Column("discount_orders", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "customers",
        sa.Column(
            "categories_bought", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False
        ),
    )
    op.add_column(
        "customers",
        sa.Column(
            "categories_viewed", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False
        ),
    )
    op.add_column("orders", sa.Column("discounted", sa.Boolean(), nullable=True))
    op.add_column("orders", sa.Column("categories", postgresql.ARRAY(sa.Text()), nullable=True))
    _fill()


def _fill() -> None:
    for statement in FILL:
        op.execute(statement)


def downgrade() -> None:
    op.drop_column("orders", "categories")
    op.drop_column("orders", "discounted")
    op.drop_column("customers", "categories_viewed")
    op.drop_column("customers", "categories_bought")
    op.drop_column("customers", "discount_orders")
