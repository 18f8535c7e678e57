"""What segment files on disk would hold now, before they go live: every customer is
matched as the service matches them (`service.matching`), nothing is written. Beside each
segment: how many are in it live now, how many would enter and leave, and the first
members (in id order, paged by `after`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from service.language.engine import Engine
from service.language.segments import CompiledSegments
from service.profiles import repository as profiles
from service.segments import repository
from service.segments.service import matching

BATCH = 1000


@dataclass
class Preview:
    segment: str
    would_hold: int = 0
    live: int = 0
    entering: int = 0
    leaving: int = 0
    members: list[uuid.UUID] = field(default_factory=list)  # the first ones after `after`


def preview(
    session: Session,
    *,
    engine: Engine,
    compiled: CompiledSegments,
    now: datetime,
    limit: int = 20,
    after: uuid.UUID | None = None,
) -> list[Preview]:
    """Each segment of `compiled` as it would be now, over every customer."""
    found = {name: Preview(segment=name) for name in compiled.segments}
    live = repository.sizes(session)
    for name, item in found.items():
        item.live = live.get(name, 0)
    last: uuid.UUID | None = None
    while batch := profiles.customers_after(session, last, limit=BATCH):
        last = batch[-1]
        inside = matching(session, engine=engine, compiled=compiled, customers=batch, now=now)
        current = repository.open_memberships(session, batch, found)
        for customer in batch:
            now_in = inside.get(customer, set())
            was_in = set(current.get(customer, {}))
            for name in now_in:
                item = found[name]
                item.would_hold += 1
                if (after is None or customer > after) and len(item.members) < limit:
                    item.members.append(customer)
            for name in now_in - was_in:
                found[name].entering += 1
            for name in was_in - now_in:
                found[name].leaving += 1
    return list(found.values())
