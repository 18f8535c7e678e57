"""Resolution: stored events put on profiles, creating and merging profiles.

Events are stored first by intake (with their identity keys, hashed and encrypted) and
resolved after the commit, in batches, by `resolve_pending`, which also applies their
effects (`effects.apply`).

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
from typing import Any

import structlog
from sqlalchemy.orm import Session

from service.events import repository as events
from service.events.identity import IdentityKey, is_strong
from service.events.quarantine import SET_ASIDE_TOPIC
from service.pipeline.isolation import isolated
from service.profiles import repository
from service.profiles.effects import PendingEvent, apply

log = structlog.get_logger(__name__)


def resolve_pending(session: Session, *, limit: int = 1000) -> int:
    """Put up to `limit` stored events on profiles (creating and merging profiles, and
    applying their effects); returns how many. Concurrent callers take disjoint events."""
    rows = events.claim_unresolved(session, limit=limit)
    if not rows:
        return 0
    pending = [
        PendingEvent(
            id=r.id,
            source=r.source,
            message_id=r.message_id,
            type=r.type,
            name=r.name,
            occurred_at=r.occurred_at,
            properties=r.properties,
            keys=[IdentityKey.from_json(k) for k in r.identity_keys or []],
        )
        for r in rows
    ]
    # One bad event must not hold back the rest: it is set aside (with the reason, in
    # the quarantine) and the others are resolved.
    failed = isolated(session, pending, lambda batch: _resolve(session, batch), stage="resolve")
    for event, error in failed:
        _set_aside(session, event, error=type(error).__name__)
    return len(rows)


def _resolve(session: Session, pending: Sequence[PendingEvent]) -> None:
    customers = resolve(session, pending)
    events.assign_customers(session, [(e.id, c) for e, c in zip(pending, customers, strict=True)])
    apply(session, list(zip(pending, customers, strict=True)))


def _set_aside(session: Session, event: PendingEvent, *, error: str) -> None:
    reason = f"could not be put on a profile ({error})"
    events.mark_unresolvable(session, event=event.id, error=reason)
    events.quarantine(
        session,
        source=event.source,
        topic=SET_ASIDE_TOPIC,
        reason=reason,
        field=None,
        payload={"event_id": event.id, "message_id": event.message_id},
    )
    log.error("event_set_aside", event_id=event.id, error_type=error)


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
