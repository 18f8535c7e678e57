"""Limits on what a request may carry: integers in paths and queries that fit the
database's 64-bit ids, a key checked before the body is read, and bodies capped per
route while they stream."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.auth.service import Scope

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
