"""Sending events through the API and evaluating the rules over them, at a fixed now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service import flow
from tests.support import resolve_all

NOW = datetime.now(UTC).replace(microsecond=0)


def at(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def send(client: TestClient, keys, *events: dict) -> None:
    response = client.post("/v1/events", json={"batch": list(events)}, headers=keys["ingest"])
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events), response.json()


def evaluate(session: Session, *, now: datetime = NOW) -> int:
    resolve_all()
    total = 0
    while done := flow.evaluate_pending(session, now=now):
        total += done
    return total
