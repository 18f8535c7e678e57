"""The baselines for bench/decisions.py: a bare FastAPI endpoint at the same path that
returns a constant the size of a decision, served the same way (uvicorn, same workers),
and the same with the decision's one database read before it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request

app = FastAPI()

ANSWER: dict[str, Any] = {
    "decision_id": "00000000-0000-0000-0000-000000000000",
    "customer_id": None,
    "segments": [],
    "degraded": False,
    "rule_versions": [
        {"ruleset": "placements", "version": 1, "version_id": 1, "content_hash": "0" * 64}
    ],
    "placements": {
        "homepage_hero": {
            "content": {
                "id": "seasonal_collection",
                "params": {},
                "source": "default",
                "rule": None,
            },
            "offers": [],
            "explain": None,
        }
    },
}


@app.post("/v1/decisions")
async def constant() -> dict[str, Any]:
    return ANSWER


# The second baseline: the same bare endpoint, plus the one read a decision makes (the
# customer's snapshot, on a pool like the service's). What is left between it and the
# decision endpoint is choosing, logging and the service's own plumbing.
@asynccontextmanager
async def _pool(app: FastAPI) -> AsyncIterator[None]:
    from service import db
    from service.decisions import repository

    app.state.pool = repository.open_pool(url=db.database_url(), budget_ms=1000, size=4)
    await app.state.pool.open()
    yield
    await app.state.pool.close()


read_app = FastAPI(lifespan=_pool)


@read_app.post("/v1/decisions")
async def read_then_constant(request: Request) -> dict[str, Any]:
    from service.decisions import repository
    from service.events.identity import ANONYMOUS_ID, USER_ID, lookup_key

    body = orjson.loads(await request.body())
    user = body.get("user_id")
    key = lookup_key(USER_ID, user) if user else lookup_key(ANONYMOUS_ID, body["anonymous_id"])
    async with request.app.state.pool.connection() as conn:
        await repository.snapshot(
            conn, customer_id=None, identity=(key.kind, key.value) if key else None, currency="USD"
        )
    return ANSWER
