from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service import errors
from service.logging import RequestLogMiddleware

PROBLEM = "application/problem+json"


class Item(BaseModel):
    name: str
    quantity: int


def probe_app() -> FastAPI:
    """A throwaway app with the service's error handling, to provoke each error kind."""
    app = FastAPI()
    errors.install(app)
    app.add_middleware(RequestLogMiddleware)

    @app.post("/items")
    def create(item: Item) -> Item:
        return item

    @app.get("/boom")
    def boom() -> None:
        email = "-".join(["alice", "example"])  # data, not source text
        raise RuntimeError(f"could not store {email}")

    @app.get("/conflict")
    def conflict() -> None:
        raise errors.ProblemError(
            409, "Already exists", errors=[errors.FieldError(field="id", message="taken")]
        )

    return app


@pytest.fixture
def probe() -> TestClient:
    return TestClient(probe_app(), raise_server_exceptions=False)


def test_validation_error_names_each_field(probe: TestClient) -> None:
    response = probe.post("/items", json={"name": "x", "quantity": "many"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["errors"] == [{"field": "body.quantity", "message": body["errors"][0]["message"]}]
    assert "body.quantity" in body["detail"]


def test_malformed_json_is_a_422_problem(probe: TestClient) -> None:
    response = probe.post(
        "/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
        "instance": "/nowhere",
    }


def test_wrong_method_is_a_405_problem(client: TestClient) -> None:
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM


def test_problem_error_keeps_its_fields(probe: TestClient) -> None:
    response = probe.get("/conflict")
    assert response.status_code == 409
    assert response.json()["errors"] == [{"field": "id", "message": "taken"}]


def test_unhandled_error_is_500_without_internals(
    probe: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = probe.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "alice" not in response.text
    assert "RuntimeError" not in response.text
    # The log keeps the frames and the type, never the exception's message.
    events = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    failure = next(e for e in events if e.get("event") == "unhandled_error")
    assert failure["error_type"] == "RuntimeError"
    assert "in boom" in failure["exception"]
    assert failure["exception"].endswith("RuntimeError (message withheld)")
    assert "alice" not in str(failure)


def test_request_log_has_request_id_and_route_template_not_raw_path(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = client.get("/v1/profiles/alice@example.com", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    request_line = next(e for e in lines if e.get("event") == "request")
    assert request_line["request_id"] == "req-42"
    assert request_line["status"] == 401
    assert request_line["route"] == "/v1/profiles/{ref}"
    assert all("alice@example.com" not in str(line) for line in lines)


def test_request_id_is_generated_when_absent_or_unsafe(client: TestClient) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    unsafe = client.get("/healthz", headers={"X-Request-ID": "a b\nc"}).headers["x-request-id"]
    assert unsafe != "a b\nc"
    assert len(unsafe) == 32


def test_a_body_that_is_not_utf8_is_a_422_problem_naming_it(probe: TestClient) -> None:
    """(The framework answered its own undocumented 400 for bytes it cannot decode.)"""
    response = probe.post("/items", content=b"\xe3", headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"] == [{"field": "body", "message": "not valid UTF-8 JSON"}]


@pytest.mark.parametrize("field", ["deployment_id", "version_id"])
def test_a_rollback_id_beyond_64_bits_is_a_422_naming_it(
    client: TestClient, api_key, field
) -> None:
    """(It reached the database and came back a 500, bigint out of range.)"""
    from service.auth.service import Scope

    response = client.post("/v1/rules/rollback", json={field: 2**63}, headers=api_key(Scope.ADMIN))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == f"body.{field}"
