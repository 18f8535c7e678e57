"""Profiles: resolve events to customers, and keep traits and computed traits current.

Events are stored first (with their identity keys, hashed and encrypted) and resolved
after the commit, in batches, by `service.events.service.resolve_pending`.

Resolution, per batch:
1. Every identity key the events carry is locked (advisory, sorted) and looked up.
2. Events are walked in time order. An event belongs to the profile matched by its
   strongest key, if that profile is compatible (holds no other value of a strong kind
   the event names); other compatible profiles it matches are merged into that one,
   unless two different strong ids forbid it (then the refusal is recorded). No match:
   a new profile.
3. New profiles and identities are written in bulk; merges move rows at once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from service import crypto
from service.events.canonical import (
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_REFUNDED,
    ORDER_UPDATED,
    PRODUCT_VIEWED,
)
from service.profiles import repository
from service.profiles.identity import CONTACT_KINDS, IdentityKey, is_strong, lookup_key
from service.profiles.models import Customer


@dataclass(frozen=True)
class PendingEvent:
    """A stored event waiting to be put on a profile."""

    id: int
    source: str
    message_id: str
    type: str
    name: str | None
    occurred_at: datetime
    properties: dict[str, Any]  # an identify's traits are its properties
    keys: list[IdentityKey]

    @property
    def traits(self) -> dict[str, Any]:
        return self.properties if self.type == "identify" else {}


@dataclass
class _Batch:
    """In-memory state of one resolution pass."""

    owner: dict[tuple[str, str], uuid.UUID]
    strong: dict[uuid.UUID, dict[str, set[str]]]
    new: set[uuid.UUID] = field(default_factory=set)
    merged: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # loser -> winner
    db_merges: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    attach: dict[tuple[str, str], IdentityKey] = field(default_factory=dict)

    def live(self, customer: uuid.UUID) -> uuid.UUID:
        while customer in self.merged:
            customer = self.merged[customer]
        return customer

    def compatible(self, customer: uuid.UUID, strong: dict[str, set[str]]) -> bool:
        mine = self.strong.get(customer, {})
        return all(not mine.get(kind) or mine[kind] == values for kind, values in strong.items())


def resolve(session: Session, events: Sequence[PendingEvent]) -> list[uuid.UUID]:
    """The customer id of each event (same order), creating and merging profiles."""
    event_keys = [e.keys for e in events]
    all_keys = [k for keys in event_keys for k in keys]
    repository.lock_keys(session, all_keys)
    owner = _lock_owners(session, all_keys)
    strong = repository.strong_ids(session, owner.values()) if owner else {}
    batch = _Batch(owner=owner, strong=strong)

    assigned: list[uuid.UUID] = [uuid.UUID(int=0)] * len(events)
    for i in sorted(range(len(events)), key=lambda i: events[i].occurred_at):
        assigned[i] = _resolve_one(batch, events[i], event_keys[i])

    survivors = {batch.live(c) for c in batch.new}
    repository.insert_customers(session, sorted(survivors & batch.new))
    for merge in batch.db_merges:
        winner, loser = batch.live(merge["winner"]), merge["loser"]
        if loser not in batch.new and winner != loser:
            session.flush()
            repository.merge(session, **{**merge, "winner": winner})
    for refusal in batch.refusals:
        repository.record_merge(
            session,
            **{
                **refusal,
                "winner": batch.live(refusal["winner"]),
                "loser": batch.live(refusal["loser"]),
            },
        )
    repository.insert_identities(
        session,
        [
            {
                "customer_id": batch.live(batch.owner[pair]),
                "kind": key.kind,
                "value": key.value,
                "encrypted": key.encrypted,
            }
            for pair, key in sorted(batch.attach.items())
        ],
    )
    return [batch.live(c) for c in assigned]


class ResolutionConflict(RuntimeError):
    """The profiles an event names kept changing under concurrent merges; the batch is
    left unresolved for the next run."""


def _lock_owners(session: Session, keys: Sequence[IdentityKey]) -> dict[tuple[str, str], uuid.UUID]:
    """The live profile owning each key, with those profiles' rows locked.

    A concurrent resolver may be merging one of them away: taking its row lock waits
    for that merge to commit, after which the keys are read again (they then point at
    the winner, whose row is locked in turn). Without this, an event could land on a
    profile that was merged away a moment before, and stay there.
    """
    owner = repository.owners(session, keys)
    for _ in range(5):
        repository.lock_customers(session, set(owner.values()))
        again = repository.owners(session, keys)
        if again == owner:
            return owner
        owner = again
    raise ResolutionConflict("identity owners kept changing")


def _resolve_one(batch: _Batch, event: PendingEvent, keys: list[IdentityKey]) -> uuid.UUID:
    strong: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        if is_strong(key.kind):
            strong[key.kind].add(key.value)

    matched: list[uuid.UUID] = []  # in order of the strength of the key that matched
    for key in keys:
        found = batch.owner.get((key.kind, key.value))
        if found is not None and batch.live(found) not in matched:
            matched.append(batch.live(found))
    candidates = [c for c in matched if batch.compatible(c, strong)]
    incompatible = [c for c in matched if c not in candidates]

    if candidates:
        customer = candidates[0]
    else:
        customer = uuid.uuid4()
        batch.new.add(customer)
    for other in candidates[1:]:
        reason = "identities shared by one event"
        record = {"loser": other, "source": event.source, "message_id": event.message_id}
        if batch.compatible(customer, batch.strong.get(other, {})):
            batch.merged[other] = customer
            for kind, values in batch.strong.pop(other, {}).items():
                batch.strong.setdefault(customer, defaultdict(set))[kind] |= values
            batch.db_merges.append({**record, "winner": customer, "reason": reason})
        else:
            batch.refusals.append(
                {
                    **record,
                    "winner": customer,
                    "outcome": "refused",
                    "reason": "different ids of the same kind",
                }
            )

    for other in incompatible:  # e.g. a shared device already tied to another account
        batch.refusals.append(
            {
                "loser": other,
                "source": event.source,
                "message_id": event.message_id,
                "winner": customer,
                "outcome": "refused",
                "reason": "the event names another id of the same kind",
            }
        )

    for key in keys:
        pair = (key.kind, key.value)
        if pair not in batch.owner:
            batch.owner[pair] = customer
            batch.attach[pair] = key
            if is_strong(key.kind):
                batch.strong.setdefault(customer, defaultdict(set))[key.kind].add(key.value)
    return customer


# --- effects of stored events -----------------------------------------------------


def apply(session: Session, events: Sequence[tuple[PendingEvent, uuid.UUID]]) -> None:
    """Apply newly stored events (each exactly once) to their profiles, oldest first."""
    ordered = sorted(events, key=lambda pair: pair[0].occurred_at)
    seen: dict[uuid.UUID, datetime] = {}
    views: dict[tuple[uuid.UUID, str], tuple[int, datetime]] = {}
    orders: list[dict[str, Any]] = []
    traits: dict[uuid.UUID, list[PendingEvent]] = defaultdict(list)

    for event, customer in ordered:
        seen[customer] = max(seen.get(customer, event.occurred_at), event.occurred_at)
        if event.traits:
            traits[customer].append(event)
        if event.name == PRODUCT_VIEWED and (product := event.properties.get("product_id")):
            count, _ = views.get((customer, str(product)), (0, event.occurred_at))
            views[(customer, str(product))] = (count + 1, event.occurred_at)
        if row := _order_row(event, customer):
            orders.append(row)

    repository.touch_last_seen(session, seen)
    repository.add_product_views(session, views)
    if traits:
        _apply_traits(session, traits)
    if orders:
        repository.upsert_orders(session, orders)
        repository.recompute_spend(session, {row["customer_id"] for row in orders})


def _apply_traits(session: Session, by_customer: dict[uuid.UUID, list[PendingEvent]]) -> None:
    customers = repository.customers_for_update(session, by_customer)
    for customer_id, events in by_customer.items():
        customer = customers[customer_id]
        values, times = dict(customer.traits), dict(customer.trait_times)
        for event in events:
            # Compared as text: always UTC, whatever the database session's time zone.
            at = event.occurred_at.astimezone(UTC).isoformat()
            for trait, value in event.traits.items():
                if at >= times.get(trait, ""):
                    values[trait], times[trait] = value, at
        customer.traits, customer.trait_times = values, times


_ORDER_STATUS = {
    ORDER_COMPLETED: "completed",
    ORDER_UPDATED: "updated",
    ORDER_CANCELLED: "cancelled",
    ORDER_REFUNDED: "refunded",
}


def order_key(name: str | None, properties: dict[str, Any]) -> str | None:
    """The order id an order event names, which joins it to its order's profile."""
    order_id = properties.get("order_id") if name in _ORDER_STATUS else None
    return str(order_id) if order_id else None


def _order_row(event: PendingEvent, customer: uuid.UUID) -> dict[str, Any] | None:
    status = _ORDER_STATUS.get(event.name or "")
    order_id = event.properties.get("order_id")
    if status is None or not order_id:
        return None
    props = event.properties
    if event.name == ORDER_UPDATED and props.get("status"):
        status = str(props["status"])[:32]
    amount = money(props.get("total", props.get("revenue")))
    currency = props.get("currency")
    refund = (amount or Decimal(0)) if event.name == ORDER_REFUNDED else Decimal(0)
    return {
        "source": event.source,
        "order_id": str(order_id),
        "customer_id": customer,
        "status": status,
        "status_at": event.occurred_at,
        "currency": str(currency).upper()[:3] if currency else None,
        "total": None if event.name == ORDER_REFUNDED else amount,
        "placed_at": event.occurred_at if event.name == ORDER_COMPLETED else None,
        "refunded": refund if not props.get("cumulative") else Decimal(0),
        "refunded_cumulative": refund if props.get("cumulative") else Decimal(0),
    }


def money(value: Any) -> Decimal | None:
    """A decimal amount from a string or a JSON number, never through float arithmetic."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


# --- reading profiles -------------------------------------------------------------


def find(session: Session, *, ref: str) -> Customer | None:
    """A profile by its id or by any identity, written `kind:value`
    (`email:ann@example.com`, `user_id:42`, `shopify_customer:7`, `anonymous_id:…`)."""
    if "\x00" in ref:  # no stored id holds a NUL, and the database rejects it in text
        return None
    try:
        customer_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        kind, sep, value = ref.partition(":")
        key = lookup_key(kind, value) if sep and value else None
        customer_id = (
            repository.customer_by_identity(session, kind=key.kind, value=key.value)
            if key
            else None
        )
    return repository.get_customer(session, customer_id) if customer_id else None


def mask(kind: str, value: str) -> str:
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{value[-2:]}"


def identities(session: Session, customer: Customer) -> list[tuple[str, str]]:
    result = []
    for identity in repository.identities_of(session, customer.id):
        if identity.kind in CONTACT_KINDS:
            raw = crypto.decrypt(identity.encrypted) if identity.encrypted else ""
            result.append((identity.kind, mask(identity.kind, raw)))
        else:
            result.append((identity.kind, identity.value))
    return result


def rfm_job(session: Session) -> int:
    return repository.recompute_rfm(session, now=datetime.now(UTC))


def set_consent(
    session: Session, *, customer: Customer, consent: dict[str, bool], now: datetime
) -> dict[str, bool]:
    """Merge consent per purpose into `traits.consent`, as of `now`: an identify that
    happened before this call and is delivered after it does not undo it."""
    (locked,) = repository.customers_for_update(session, [customer.id]).values()
    current = locked.traits.get("consent")
    merged = {**(current if isinstance(current, dict) else {}), **consent}
    locked.traits = {**locked.traits, "consent": merged}
    at = now.astimezone(UTC).isoformat()
    locked.trait_times = {
        **locked.trait_times,
        "consent": max(at, locked.trait_times.get("consent", "")),
    }
    return {k: v for k, v in merged.items() if isinstance(v, bool)}
