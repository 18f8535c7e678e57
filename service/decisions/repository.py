"""The decision endpoint's one read, and the decision log's batch writes.

The read is async, on a pool of its own (psycopg_pool) whose connections carry a
server-side `statement_timeout` of the decision budget, so a locked or slow database
cancels the query on the server too, and the statement is prepared once per
connection. The log is written with COPY, the cheapest way in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.language.facts import Profile
from service.profiles.facts import PROFILE_SELECT, profile_from_row, profile_joins


def open_pool(*, url: str, budget_ms: int, size: int) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """Not opened yet: `await pool.open()` in the app's lifespan."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return AsyncConnectionPool(
        libpq,
        min_size=1,
        max_size=size,
        open=False,
        kwargs={
            "options": f"-c statement_timeout={budget_ms}",
            "connect_timeout": 1,  # libpq's smallest; the budget bounds the wait anyway
            "autocommit": True,  # one read: no BEGIN and COMMIT round trips
            "prepare_threshold": 0,  # prepared on first use on each connection
        },
        timeout=budget_ms / 1000,
        reconnect_timeout=0,  # keep trying while the database is away
        name="decisions",
    )


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
# through a merge) with their profile facts (spend, orders and spend in the windows that
# end now, segments) and unexpired inbox entries for placements (all of them: one
# snapshot serves any request for the customer, see reader.py).
_SNAPSHOT = (
    "WITH ref AS ("  # noqa: S608 (constant text)
    "  SELECT %(customer_id)s::uuid AS id WHERE %(customer_id)s::uuid IS NOT NULL"
    "  UNION ALL"
    "  SELECT customer_id FROM identities WHERE kind = %(kind)s AND value = %(value)s"
    "  LIMIT 1"
    "), target AS ("
    "  SELECT coalesce(c.merged_into_id, c.id) AS id FROM customers AS c JOIN ref ON c.id = ref.id"
    ") "
    "SELECT d.deployment_id, " + PROFILE_SELECT + ","
    " coalesce((SELECT json_agg(json_build_object('id', x.id, 'kind', x.kind, 'name', x.name,"
    "   'placement', x.placement, 'params', x.params, 'expires_at', x.expires_at)"
    "   ORDER BY x.created_at DESC, x.id DESC) FROM inbox_items AS x"
    "   WHERE x.customer_id = c.id AND x.used_at IS NULL AND x.expires_at > now()"
    "   AND x.placement IS NOT NULL), '[]') AS inbox "
    "FROM (SELECT max(id) AS deployment_id FROM rule_deployments WHERE status = 'active') AS d"
    " LEFT JOIN target AS t ON true"
    " LEFT JOIN customers AS c ON c.id = t.id" + profile_joins(now="now()", currency="%(currency)s")
)

_KEY = "SELECT scopes FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"


async def key_scopes(conn: AsyncConnection[Any], key_hash: str) -> frozenset[str]:
    """The key's scopes; empty when it is unknown or revoked."""
    row = await (await conn.execute(_KEY, (key_hash,), prepare=True)).fetchone()
    return frozenset(row[0]) if row else frozenset()


async def snapshot(
    conn: AsyncConnection[Any],
    *,
    customer_id: uuid.UUID | None,
    identity: tuple[str, str] | None,
    currency: str,
) -> Snapshot:
    kind, value = identity or (None, None)
    cursor = conn.cursor(row_factory=namedtuple_row)
    await cursor.execute(
        _SNAPSHOT,
        {
            "customer_id": customer_id,
            "kind": kind,
            "value": value,
            "currency": currency,
        },
        prepare=True,
    )
    row: Any = await cursor.fetchone()  # one, always: the deployment subquery's
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


_DECISION_COLUMNS = (
    "id",
    "decided_at",
    "customer_id",
    "degraded",
    "context",
    "placements",
    "rule_versions",
)
_EXPOSURE_COLUMNS = (
    "decision_id",
    "decided_at",
    "customer_id",
    "placement",
    "kind",
    "item",
    "source",
    "rule",
)
_JSON = {"context", "placements", "rule_versions"}


def write_log(
    session: Session, decisions: list[dict[str, Any]], exposures: list[dict[str, Any]]
) -> None:
    """COPY the rows in, on the session's connection (and so in its transaction)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        for table, columns, rows in (
            ("decisions", _DECISION_COLUMNS, decisions),
            ("exposures", _EXPOSURE_COLUMNS, exposures),
        ):
            if not rows:
                continue
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(
                        [orjson.dumps(row[c]).decode() if c in _JSON else row[c] for c in columns]
                    )
