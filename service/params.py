"""Integer path and query parameters that name rows: PostgreSQL bigints.

An unbounded `int` lets a value beyond 64 bits through to the database, which refuses
it (a 500); bounded in the schema it is a 422 naming the parameter, and documented.
"""

from __future__ import annotations

from typing import Any

from fastapi import Path, Query

MAX_ID = 2**63 - 1


def row_id(description: str | None = None) -> Any:
    """A row's id in the path: 1 to 2**63 - 1."""
    return Path(ge=1, le=MAX_ID, description=description)


def id_cursor(description: str) -> Any:
    """A page cursor that is a row id (`after`, `before`): 0 to 2**63 - 1."""
    return Query(ge=0, le=MAX_ID, description=description)
