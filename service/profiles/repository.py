"""SQL for profiles: identities, merges, and the reads of the profile API (the writes that
apply events' effects are in `effects_repository.py`)."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from service.db import advisory_xact_locks, json_document
from service.events.identity import IdentityKey, is_strong
from service.events.models import Event
from service.profiles.effects_repository import MAX_CATEGORIES, recompute_spend
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
    viewed = set(winner_row.categories_viewed) | set(loser_row.categories_viewed)
    winner_row.categories_viewed = sorted(viewed)[:MAX_CATEGORIES]
    loser_row.merged_into_id = winner
    session.flush()
    # The loser's orders now count for the winner (spend, discounts, categories bought).
    recompute_spend(session, [winner])
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


def product_views(session: Session, customer_id: uuid.UUID) -> Sequence[ProductView]:
    return session.scalars(
        select(ProductView)
        .where(ProductView.customer_id == customer_id)
        .order_by(ProductView.views.desc(), ProductView.product_id)
    ).all()


def spend(session: Session, customer_id: uuid.UUID) -> Sequence[CustomerSpend]:
    return session.scalars(
        select(CustomerSpend)
        .where(CustomerSpend.customer_id == customer_id)
        .order_by(CustomerSpend.currency)
    ).all()


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


# --- customers in id order, for passes over all of them (segment runs) ----------------


def customers_after(session: Session, after: uuid.UUID | None, *, limit: int) -> list[uuid.UUID]:
    """The next customers in id order (not merged into another)."""
    statement = (
        select(Customer.id)
        .where(Customer.merged_into_id.is_(None))
        .order_by(Customer.id)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(Customer.id > after)
    return list(session.scalars(statement))


def count_customers(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))
        )
        or 0
    )


def lock_unmerged(session: Session, customers: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `customers` not merged into another profile, their rows share-locked
    (as inserting a period that references them does anyway): a merge under way is
    waited for, and a profile it merged away is left out."""
    wanted = sorted(set(customers))
    if not wanted:
        return set()
    return set(
        session.scalars(
            text(
                "SELECT id FROM customers WHERE id = ANY(CAST(:ids AS uuid[])) "
                "AND merged_into_id IS NULL ORDER BY id FOR KEY SHARE"
            ),
            {"ids": [str(c) for c in wanted]},
        )
    )


def survivors(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each profile's survivor: itself, or the profile it was merged into (a merge
    points every earlier loser at the newest winner, so one step is enough). The ids go
    as one array: an experiment's units are tens of thousands, past the 65,535 parameters
    of a statement that binds each id."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.execute(
        text(
            "SELECT id, coalesce(merged_into_id, id) FROM customers"
            " WHERE id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": wanted},
    )
    return {row[0]: row[1] for row in rows}


def spend_within(
    session: Session,
    *,
    customers: Sequence[uuid.UUID],
    since: Sequence[datetime],
    until: Sequence[datetime],
    upper_open: bool = False,
) -> list[float]:
    """For each (customer, since, until), the total of the orders they placed in
    [since, until] ([since, until) with `upper_open`), less refunds, cancelled ones left
    out, as `customer_spend` counts them (amounts in any currency add up: an experiment
    is read in the shop's one currency): one query."""
    if not customers:
        return []
    upper = "<" if upper_open else "<="
    rows = session.execute(
        text(
            "SELECT w.i, coalesce(sum("  # noqa: S608 (constant text)
            "coalesce(o.total, 0) - GREATEST(o.refunded, o.refunded_cumulative)), 0)"
            " FROM unnest(CAST(:customers AS uuid[]), CAST(:since AS timestamptz[]),"
            " CAST(:until AS timestamptz[])) WITH ORDINALITY AS w(customer, since, until, i)"
            " JOIN orders o ON o.customer_id = w.customer AND o.placed_at >= w.since"
            f" AND o.placed_at {upper} w.until AND o.status <> 'cancelled' GROUP BY w.i"
        ),
        {"customers": list(customers), "since": list(since), "until": list(until)},
    )
    totals: dict[int, Any] = {i: total for i, total in rows}
    return [float(totals.get(i + 1, 0)) for i in range(len(customers))]
