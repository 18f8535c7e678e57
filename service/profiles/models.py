"""Customer profiles: identities, traits, orders and the traits computed from them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base

MONEY = Numeric(18, 4)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # A profile merged into another keeps its row, pointing at the one it became.
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    traits: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # For each trait, when the event that set it occurred: an older update never
    # overwrites a newer one, whatever order deliveries arrive in.
    trait_times: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    # Computed traits, kept current on every event.
    orders_count: Mapped[int] = mapped_column(Integer, server_default="0")
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Orders that used a discount (cancelled ones left out), the categories of the
    # products in them, and the categories of the products viewed: kept current on every
    # event, so rules, segments and decisions read them with the profile's row.
    discount_orders: Mapped[int] = mapped_column(Integer, server_default="0")
    categories_bought: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    categories_viewed: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    # RFM quintiles (1-5), recomputed by a scheduled job across the customer base.
    rfm_recency: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_frequency: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_monetary: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_computed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Identity(Base):
    """Something that identifies a customer. Email and phone values are keyed hashes;
    their raw value is kept encrypted for sending, never used for matching."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(255))
    encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProfileMerge(Base):
    """Why two profiles became one (or were kept apart)."""

    __tablename__ = "profile_merges"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    winner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    loser_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # merged | refused
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255))
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(Base):
    """Latest known state of each order; computed traits are sums over these rows, so
    redeliveries and out-of-order updates converge on the same totals."""

    __tablename__ = "orders"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str | None] = mapped_column(String(3))
    total: Mapped[Decimal | None] = mapped_column(MONEY)
    # Refunds reported one by one add up in `refunded`; platforms that report the
    # running total (WooCommerce, Stripe) set `refunded_cumulative` to the largest seen.
    refunded: Mapped[Decimal] = mapped_column(MONEY, server_default="0")
    refunded_cumulative: Mapped[Decimal] = mapped_column(MONEY, server_default="0")
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Whether it used a discount (a discount amount above 0 or a coupon), and the
    # categories of its products, as its newest event with products says.
    discounted: Mapped[bool | None] = mapped_column(Boolean)
    categories: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # occurred_at of the event whose status is current.
    status_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerSpend(Base):
    """Orders and money per customer and currency (amounts are never converted)."""

    __tablename__ = "customer_spend"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders_count: Mapped[int] = mapped_column(Integer)
    total_spent: Mapped[Decimal] = mapped_column(MONEY)


class ProductView(Base):
    __tablename__ = "product_views"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    views: Mapped[int] = mapped_column(Integer)
    last_viewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ix_orders_customer_placed", Order.customer_id, Order.placed_at)
