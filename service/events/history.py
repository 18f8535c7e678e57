"""A customer's events read back for the rules and the segments: how many of an event in
a window, the first of some events in a window, and window counts for a batch of
customers in one scan. Events are named as stored: (type, name or None for any)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Uuid, and_, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from service.db import json_document
from service.events.models import Event
from service.vocabulary import EventType

# Events with the trigger's value for each `same` key (given as one JSON object), in
# their properties or in an item of their `products` list (an order that contains the
# viewed product).
_SAME = (
    " AND NOT EXISTS (SELECT 1 FROM jsonb_each(CAST(:same AS jsonb)) AS s(k, v)"
    " WHERE properties -> s.k IS DISTINCT FROM s.v AND NOT EXISTS ("
    "  SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(properties -> 'products')"
    "    WHEN 'array' THEN properties -> 'products' ELSE '[]'::jsonb END) AS p(item)"
    "  WHERE p.item -> s.k = s.v))"
)


def count(
    session: Session,
    *,
    customer: uuid.UUID,
    type_: str,
    name: str | None,
    since: datetime,
    until: datetime,
    same: dict[str, Any] | None,
) -> int:
    """How many such events the customer has in [since, until]."""
    count: int = session.execute(
        text(
            "SELECT count(*) FROM events WHERE customer_id = :customer AND type = :type "  # noqa: S608 (constant text)
            "AND (CAST(:name AS text) IS NULL OR name = :name) "
            "AND occurred_at >= :since AND occurred_at <= :until" + _SAME
        ),
        {
            "customer": customer,
            "type": type_,
            "name": name,
            "since": since,
            "until": until,
            "same": json_document(same or {}),
        },
    ).scalar_one()
    return count


def first_of(
    session: Session,
    *,
    customer: uuid.UUID,
    stored: Sequence[tuple[str, str | None]],
    since: datetime,
    until: datetime,
    same: dict[str, Any] | None,
    exclude: int,
) -> tuple[str, str | None, datetime] | None:
    """(type, name, when) of the first of these events in [since, until], `exclude` aside."""
    tracks = [name for type_, name in stored if type_ == EventType.TRACK]
    types = [type_ for type_, _ in stored if type_ != EventType.TRACK]
    row = session.execute(
        text(
            "SELECT type, name, occurred_at FROM events WHERE customer_id = :customer "  # noqa: S608 (constant text)
            "AND ((type = 'track' AND name = ANY(:names)) OR type = ANY(:types)) "
            "AND occurred_at >= :since AND occurred_at <= :until AND id <> :exclude"
            + _SAME
            + " ORDER BY occurred_at, id LIMIT 1"
        ),
        {
            "customer": customer,
            "names": tracks,
            "types": types,
            "since": since,
            "until": until,
            "exclude": exclude,
            "same": json_document(same or {}),
        },
    ).first()
    if row is None:
        return None
    return row.type, row.name, row.occurred_at


def window_counts(
    session: Session,
    customers: Sequence[uuid.UUID],
    bounds: Sequence[tuple[str, str, str | None, datetime]],
) -> dict[uuid.UUID, dict[str, int]]:
    """For each customer, how many of their events fall in each window: one grouped scan
    of their events since the earliest window start. `bounds` are (key, type, name or
    None for any, since); a key given twice (an absence of several events) adds up."""
    if not customers or not bounds:
        return {}
    columns = []
    for i, (_key, type_, name, since) in enumerate(bounds):
        condition = and_(Event.type == type_, Event.occurred_at >= since)
        if name is not None:
            condition = and_(condition, Event.name == name)
        columns.append(func.count().filter(condition).label(f"w{i}"))
    rows = session.execute(
        select(Event.customer_id, *columns)
        # One array parameter: a plan that holds whatever the table's statistics.
        .where(Event.customer_id == any_(bindparam("ids", list(customers), type_=ARRAY(Uuid))))
        # No upper bound: an event committed after `now` was read (a batch that waited
        # for a customer's lock, a client clock ahead) still counts.
        .where(Event.occurred_at >= min(b[3] for b in bounds))
        .group_by(Event.customer_id)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {}
    for customer, *values in rows:
        found = counts.setdefault(cast(uuid.UUID, customer), {})
        for (key, *_rest), value in zip(bounds, values, strict=True):
            found[key] = found.get(key, 0) + int(value)
    return counts


def did_within(
    session: Session,
    *,
    type_: str,
    name: str | None,
    customers: Sequence[uuid.UUID],
    since: Sequence[datetime],
    until: Sequence[datetime],
) -> list[bool]:
    """For each (customer, since, until), whether the customer has such an event in
    [since, until]: one query over the three lists (an experiment's conversions)."""
    if not customers:
        return []
    rows = session.execute(
        text(
            "SELECT w.i FROM unnest(CAST(:customers AS uuid[]), CAST(:since AS timestamptz[]),"
            " CAST(:until AS timestamptz[])) WITH ORDINALITY AS w(customer, since, until, i)"
            " WHERE EXISTS (SELECT 1 FROM events e WHERE e.customer_id = w.customer"
            " AND e.type = :type AND (CAST(:name AS text) IS NULL OR e.name = :name)"
            " AND e.occurred_at >= w.since AND e.occurred_at <= w.until)"
        ),
        {
            "customers": list(customers),
            "since": list(since),
            "until": list(until),
            "type": type_,
            "name": name,
        },
    ).scalars()
    found = set(rows)
    return [i + 1 in found for i in range(len(customers))]
