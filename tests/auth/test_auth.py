from __future__ import annotations

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.cli import main

PROBLEM = "application/problem+json"


def test_missing_key_is_401_problem(client: TestClient) -> None:
    response = client.get("/v1/api-keys")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


def test_unknown_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/api-keys", headers={"Authorization": "Bearer pk_nope_nope"})
    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["detail"]


def test_wrong_scope_is_403_naming_the_scope(client: TestClient, api_key) -> None:
    response = client.get("/v1/api-keys", headers=api_key(Scope.STOREFRONT))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert "'admin'" in response.json()["detail"]


def test_admin_key_lists_keys_without_secrets(client: TestClient, api_key) -> None:
    headers = api_key(Scope.ADMIN, name="ops")
    response = client.get("/v1/api-keys", headers=headers)
    assert response.status_code == 200
    keys = response.json()
    assert [k["name"] for k in keys] == ["ops"]
    secret = headers["Authorization"].removeprefix("Bearer ")
    assert secret not in response.text
    assert set(keys[0]) == {"name", "prefix", "scopes", "created_at", "revoked_at"}


def test_me_shows_the_calling_key(client: TestClient, api_key) -> None:
    response = client.get("/v1/api-keys/me", headers=api_key(Scope.INGEST, Scope.MARKETER))
    assert response.status_code == 200
    assert response.json()["scopes"] == ["ingest", "marketer"]


def test_key_is_stored_only_as_a_digest(client: TestClient, api_key, session: Session) -> None:
    secret = api_key(Scope.INGEST)["Authorization"].removeprefix("Bearer ")
    stored = session.execute(text("SELECT prefix, key_hash FROM api_keys")).one()
    assert secret.startswith(stored.prefix + "_")
    assert secret not in stored.key_hash
    dump = session.execute(text("SELECT row_to_json(k)::text FROM api_keys k")).scalar_one()
    assert secret.split("_")[-1] not in dump


def test_cli_creates_a_working_key_and_revokes_it(client: TestClient) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["create-api-key", "--name", "shop", "--scope", "storefront"])
    assert created.exit_code == 0, created.output
    key = created.output.strip()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/api-keys/me", headers=headers).json()["name"] == "shop"

    listed = runner.invoke(main, ["list-api-keys"])
    prefix = key.rsplit("_", 1)[0]
    assert f"{prefix}\tactive\tstorefront\tshop" in listed.output

    revoked = runner.invoke(main, ["revoke-api-key", prefix])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/v1/api-keys/me", headers=headers).status_code == 401
    assert runner.invoke(main, ["revoke-api-key", prefix]).exit_code != 0


def test_cli_rejects_an_unknown_scope() -> None:
    result = CliRunner().invoke(main, ["create-api-key", "--name", "x", "--scope", "root"])
    assert result.exit_code == 2
    assert "root" in result.output
