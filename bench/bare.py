"""The baseline for bench/decisions.py: a bare FastAPI endpoint at the same path that
returns a constant the size of a decision, served the same way (uvicorn, same workers)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

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
