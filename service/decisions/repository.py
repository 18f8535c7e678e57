"""The decision endpoint's one read, and the decision log's batch writes.

The read runs on its own connection pool whose connections carry a server-side
`statement_timeout` of the decision budget, so a locked or slow database cancels the
query instead of holding a connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from service import db
from service.decisions.models import Decision, Exposure
from service.rules.facts import Profile
from service.rules.repository import profile_from_row
from service.settings import get_settings


@lru_cache
def reader() -> sessionmaker[Session]:
    settings = get_settings()
    engine = create_engine(
        db.database_url(),
        pool_size=settings.decision_max_reads,
        max_overflow=0,
        pool_timeout=settings.decision_budget_ms / 1000,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 1,  # libpq's smallest; the budget bounds the wait anyway
            "options": f"-c statement_timeout={settings.decision_budget_ms}",
        },
    )
    return sessionmaker(bind=engine, expire_on_commit=False)


@dataclass(frozen=True)
class InboxEntry:
    id: int
    kind: str  # offer | content
    name: str
    placement: str | None
    params: dict[str, Any]
    expires_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    deployment_id: int | None
    profile: Profile | None
    inbox: list[InboxEntry]


# One statement: the active deployment, and the customer (by id or identity, followed
# through a merge) with their spend, segments and unexpired inbox for the placements.
_SNAPSHOT = text(
    "WITH ref AS ("
    "  SELECT CAST(:customer_id AS uuid) AS id WHERE CAST(:customer_id AS uuid) IS NOT NULL"
    "  UNION ALL"
    "  SELECT customer_id FROM identities WHERE kind = :kind AND value = :value"
    "  LIMIT 1"
    "), target AS ("
    "  SELECT coalesce(c.merged_into_id, c.id) AS id FROM customers AS c JOIN ref ON c.id = ref.id"
    ") "
    "SELECT d.deployment_id, c.id, c.orders_count, c.first_order_at, c.last_order_at,"
    " c.last_seen_at, c.rfm_recency, c.rfm_frequency, c.rfm_monetary, c.traits,"
    " coalesce(s.total_spent, 0) AS total_spent,"
    " coalesce((SELECT array_agg(m.segment ORDER BY m.segment) FROM segment_memberships AS m"
    "   WHERE m.customer_id = c.id), '{}') AS segments,"
    " coalesce((SELECT json_agg(json_build_object('id', x.id, 'kind', x.kind, 'name', x.name,"
    "   'placement', x.placement, 'params', x.params, 'expires_at', x.expires_at)"
    "   ORDER BY x.created_at DESC, x.id DESC) FROM inbox_items AS x"
    "   WHERE x.customer_id = c.id AND x.used_at IS NULL AND x.expires_at > now()"
    "   AND x.placement = ANY(CAST(:placements AS text[]))), '[]') AS inbox "
    "FROM (SELECT max(id) AS deployment_id FROM rule_deployments WHERE status = 'active') AS d"
    " LEFT JOIN target AS t ON true"
    " LEFT JOIN customers AS c ON c.id = t.id"
    " LEFT JOIN customer_spend AS s ON s.customer_id = c.id AND s.currency = :currency"
)


def snapshot(
    session: Session,
    *,
    customer_id: uuid.UUID | None,
    identity: tuple[str, str] | None,
    placements: Sequence[str],
    currency: str,
) -> Snapshot:
    kind, value = identity or (None, None)
    row = session.execute(
        _SNAPSHOT,
        {
            "customer_id": str(customer_id) if customer_id else None,
            "kind": kind,
            "value": value,
            "placements": list(placements),
            "currency": currency,
        },
    ).one()
    if row.id is None:
        return Snapshot(row.deployment_id, None, [])
    inbox = [
        InboxEntry(
            id=x["id"],
            kind=x["kind"],
            name=x["name"],
            placement=x["placement"],
            params=x["params"] or {},
            expires_at=datetime.fromisoformat(x["expires_at"]) if x["expires_at"] else None,
        )
        for x in row.inbox
    ]
    return Snapshot(row.deployment_id, profile_from_row(row), inbox)


def write_log(
    session: Session, decisions: list[dict[str, Any]], exposures: list[dict[str, Any]]
) -> None:
    if decisions:
        session.execute(insert(Decision), decisions)
    if exposures:
        session.execute(insert(Exposure), exposures)
