from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from service import db
from tests.support import clear_caches


def test_healthz_answers_without_dependencies(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_the_database_when_it_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    monkeypatch.setattr(db, "get_sessionmaker", lambda: sessionmaker(bind=unreachable))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["checks"] == {"database": "unreachable", "broker": "ok"}
    assert body["detail"] == "Not ready: database unreachable"


def test_readyz_names_the_broker_when_it_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:1//")
        patch.setenv("READINESS_TIMEOUT_S", "1")
        clear_caches()
        try:
            response = client.get("/readyz")
        finally:
            patch.undo()
            clear_caches()
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] in {"unreachable", "timeout"}
    assert response.json()["checks"]["database"] == "ok"
