"""Limits on what a request may carry: integers in paths and queries that fit the
database's 64-bit ids, a key checked before the body is read, and bodies capped per
route while they stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.app import create_app
from service.auth.service import Scope
from service.events import repository
from service.settings import get_settings
from tests.support import api_process

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"

PROBLEM = "application/problem+json"
BEYOND_64_BITS = str(2**64 + 7)
NEGATIVE = "-1"

# Every integer path or query parameter of the API that names a row or a cursor.
ID_PARAMETERS = [
    ("POST", "/v1/actions/{}/retry", "path.action_id"),
    ("POST", "/v1/quarantine/{}/replay", "path.item_id"),
    ("GET", "/v1/segment-runs/{}", "path.run_id"),
    ("POST", "/v1/set-aside/{}/replay", "path.row_id"),
    ("GET", "/v1/actions?after={}", "query.after"),
    ("GET", "/v1/quarantine?after={}", "query.after"),
    ("GET", "/v1/rules/firings?before={}", "query.before"),
    ("GET", "/v1/set-aside?after={}", "query.after"),
]


@pytest.mark.parametrize("value", [BEYOND_64_BITS, NEGATIVE])
@pytest.mark.parametrize(("method", "template", "field"), ID_PARAMETERS)
def test_an_id_out_of_range_is_a_422_naming_the_parameter(
    client: TestClient, api_key, method: str, template: str, field: str, value: str
) -> None:
    admin = api_key(Scope.ADMIN)
    response = client.request(method, template.format(value), headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(("method", "template", "field"), ID_PARAMETERS)
def test_the_largest_id_is_an_ordinary_answer(
    client: TestClient, api_key, method: str, template: str, field: str
) -> None:
    admin = api_key(Scope.ADMIN)
    response = client.request(method, template.format(2**63 - 1), headers=admin)
    assert response.status_code in (200, 404), response.text


def test_every_integer_parameter_is_bounded(client: TestClient) -> None:
    """A new integer parameter without bounds would take the database's error (500) for
    a value beyond 64 bits; the schema must say how large it may be."""
    unbounded = []
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                for option in schema.get("anyOf", [schema]):
                    if option.get("type") == "integer" and (
                        "maximum" not in option or "minimum" not in option
                    ):
                        unbounded.append(f"{method.upper()} {path} {parameter['name']}")
    assert unbounded == []


# --- bodies: the key before the body, and a cap while it streams -----------------

MB = 1 << 20


class Upload:
    """An ASGI request whose body is made as it is read, counting what the app read."""

    def __init__(self, size: int, *, declare: bool = True, chunk: int = 64 * 1024) -> None:
        self.size = size
        self.declare = declare
        self.chunk = chunk
        self.read = 0
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.read >= self.size:
            await anyio.sleep_forever()  # the client waits for the answer
        take = min(self.chunk, self.size - self.read)
        self.read += take
        return {"type": "http.request", "body": b" " * take, "more_body": self.read < self.size}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def call(self, app: Any, method: str, path: str, headers: dict[str, str]) -> Response:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-type", b"application/json"))
        if self.declare:
            raw.append((b"content-length", str(self.size).encode()))
        else:
            raw.append((b"transfer-encoding", b"chunked"))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "app": app,
        }

        async def run() -> None:
            with anyio.fail_after(30):
                await app(scope, self.receive, self.send)

        anyio.run(run)
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        body = b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )
        return Response(start["status"], headers=start["headers"], content=body)


@pytest.fixture
def app(connection: Connection) -> Any:
    """The app without its lifespan: nothing here reaches a route that needs it."""
    return create_app()


GUARDED = [
    ("POST", "/v1/rules/rollback"),
    ("PUT", "/v1/profiles/x/consent"),
    ("POST", "/v1/events"),
]


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer pk_unknown_key"}], ids=["no key", "unknown key"]
)
def test_a_body_without_a_valid_key_is_refused_before_it_is_read(
    app: Any, method: str, path: str, headers: dict[str, str], declare: bool
) -> None:
    upload = Upload(20 * MB, declare=declare)
    response = upload.call(app, method, path, headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert upload.read == 0


@pytest.mark.parametrize(
    ("method", "path", "scope", "limit"),
    [
        ("POST", "/v1/rules/rollback", Scope.MARKETER, 64 * 1024),
        ("PUT", "/v1/profiles/x/consent", Scope.INGEST, 64 * 1024),
        ("POST", "/v1/events", Scope.INGEST, 512_000),
        ("POST", "/v1/webhooks/shopify", None, 1_048_576),
        ("POST", "/v1/batch", None, 512_000),
        ("POST", "/v1/decisions", Scope.STOREFRONT, 64 * 1024),
    ],
)
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_its_routes_limit_is_a_413_read_no_further(
    app: Any, api_key, method: str, path: str, scope: Scope | None, limit: int, declare: bool
) -> None:
    headers = api_key(scope) if scope else {}
    upload = Upload(20 * MB, declare=declare)
    response = upload.call(app, method, path, headers)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert str(limit) in response.json()["detail"]
    # A declared length over the limit is refused unread; a streamed body is read up
    # to the limit and one chunk, no further.
    assert upload.read == (0 if declare else limit - limit % upload.chunk + upload.chunk)


@pytest.mark.parametrize(
    ("path", "scope", "limit"),
    [("/v1/events", Scope.INGEST, 512_000), ("/v1/rules/rollback", Scope.MARKETER, 64 * 1024)],
)
def test_a_body_at_its_routes_limit_reaches_the_route(
    client: TestClient, api_key, path: str, scope: Scope, limit: int
) -> None:
    body = b'{"deployment_id": 1}'.ljust(limit)
    response = client.post(path, content=body, headers=api_key(scope))
    assert response.status_code not in (401, 413), response.text


# --- the same, measured on the API as a process ------------------------------------


@dataclass
class Api:
    base: str
    process: psutil.Process
    key: dict[str, str]
    log: Path

    def rss(self) -> int:
        return int(self.process.memory_info().rss)


@pytest.fixture(scope="module")
def api(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("limits")
    setup = api_process.setup(make_database("limits"), tmp, rules_dir=SHIPPED_RULES)
    key = setup.key("admin", name="limits")
    started = setup.start_api(tmp)
    try:
        yield Api(started.base, psutil.Process(started.process.pid), key, started.log)
    finally:
        setup.stop()


def _stream(size: int, chunk: int = MB) -> Iterator[bytes]:
    """A JSON document of `size` bytes, made as it is sent."""
    yield b'{"marketing": "'
    sent = 15
    while sent < size - 2:
        part = min(chunk, size - 2 - sent)
        yield b"x" * part
        sent += part
    yield b'"}'


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/rules/rollback"), ("PUT", "/v1/profiles/x/consent")]
)
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_an_unauthenticated_100_mb_body_costs_the_api_no_memory(
    api: Api, method: str, path: str, declare: bool
) -> None:
    size = 100 * MB
    headers = {"Content-Type": "application/json"}
    if declare:
        headers["Content-Length"] = str(size)
    with httpx.Client(base_url=api.base, timeout=60) as client:
        client.request(method, path, headers=api.key, json={"marketing": True})  # warm
        before = api.rss()
        response = client.request(method, path, headers=headers, content=_stream(size))
        after = api.rss()
        authorised = client.request(
            method, path, headers={**headers, **api.key}, content=_stream(size)
        )
        after_authorised = api.rss()
    print(
        f"{method} {path}: RSS {before / MB:.1f} MB, +{(after - before) / MB:.1f} MB "
        f"after the 401, +{(after_authorised - before) / MB:.1f} MB after the 413"
    )
    assert after - before < 10 * MB
    assert response.status_code == 401, response.text
    assert after_authorised - before < 10 * MB
    assert authorised.status_code == 413, authorised.text
    assert authorised.headers["content-type"] == PROBLEM


# --- the quarantine: pages bounded in bytes, contact data masked -------------------


def _quarantine(session: Session, count: int, *, padding: int = 8_000) -> list[int]:
    """`count` quarantined API events with contact data, about `padding` bytes each."""
    ids = []
    for i in range(count):
        payload = {
            "type": "track",
            "event": "Order Completed",
            "userId": f"ann{i}@example.com",
            "properties": {"email": f"ann{i}@example.com", "notes": "n" * padding},
            "context": {"traits": {"phone": f"+1 415 555 {i:04d}", "Email": f"bo{i}@shop.io"}},
        }
        ids.append(
            repository.quarantine(
                session, source="api", reason="not valid", field="type", payload=payload
            )
        )
    session.flush()
    return ids


def _pages(client: TestClient, headers: dict[str, str], url: str) -> list[httpx.Response]:
    pages = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response)
        next_url = response.links.get("next", {}).get("url")
        assert len(pages) < 100
    return pages


def test_quarantine_pages_stay_within_their_byte_budget_and_continue(
    client: TestClient, api_key, session: Session
) -> None:
    admin = api_key(Scope.ADMIN)
    ids = _quarantine(session, 120)
    budget = get_settings().quarantine_page_max_bytes
    pages = _pages(client, admin, "/v1/quarantine?limit=500")
    print(f"quarantine pages (bytes): {[len(p.content) for p in pages]}")
    assert len(pages) > 1
    assert max(len(p.content) for p in pages) <= budget
    listed = [item["id"] for p in pages for item in p.json()]
    assert listed == ids  # each once, in order: nothing skipped at a page's end
    by_count = client.get("/v1/quarantine?limit=10", headers=admin)
    assert [i["id"] for i in by_count.json()] == ids[:10]
    assert "next" in by_count.links


def test_quarantine_lists_show_contact_data_masked(
    client: TestClient, api_key, session: Session
) -> None:
    admin = api_key(Scope.ADMIN)
    (item_id,) = _quarantine(session, 1, padding=10)
    for response in (
        client.get("/v1/quarantine", headers=admin),
        client.get(f"/v1/quarantine/{item_id}", headers=admin),
    ):
        assert response.status_code == 200, response.text
        text = response.text
        assert "ann0@example.com" not in text
        assert "bo0@shop.io" not in text
        assert "555 0000" not in text
        assert "a***@example.com" in text
        assert "b***@shop.io" in text


def test_an_item_larger_than_a_page_is_listed_without_its_payload(
    client: TestClient, api_key, session: Session
) -> None:
    admin = api_key(Scope.ADMIN)
    budget = get_settings().quarantine_page_max_bytes
    small, large, after = (
        _quarantine(session, 1, padding=10)[0],
        _quarantine(session, 1, padding=budget)[0],
        _quarantine(session, 1, padding=10)[0],
    )
    pages = _pages(client, admin, "/v1/quarantine")
    items = [item for p in pages for item in p.json()]
    assert [i["id"] for i in items] == [small, large, after]
    assert max(len(p.content) for p in pages) <= budget
    big = next(i for i in items if i["id"] == large)
    assert big["payload"] is None
    assert big["payload_omitted"] is True
    whole = client.get(f"/v1/quarantine/{large}", headers=admin).json()
    assert len(whole["payload"]["properties"]["notes"]) == budget
    assert whole["payload_omitted"] is False
