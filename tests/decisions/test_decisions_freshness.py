"""The decision endpoint right after the rules change, with the API as a process: the
first request after a deployment is authenticated and answered with it.

The rule set is large enough that compiling it takes longer than the budget (as a
shop's real rules may): the answer must wait for the new rules, not fall back to the
previous ones, and never skip the key check on the way."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests import support
from tests.support.api_process import ApiProcess, Setup, database_name, setup, until

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
BUDGET_MS = 300  # the read itself takes a few ms; compiling the rules here about 1 s
EXTRA_RULESETS = 40


def _extra(i: int) -> str:
    rules = "\n".join(
        f"""  - id: extra_{i}_{j}
    trigger: {{event: Product Viewed}}
    when:
      - profile.orders_count: {{gte: {j}}}
      - event.properties.price: {{gt: {j * 10}}}
    actions:
      - segment: {{add: viewers_{i}_{j}}}"""
        for j in range(10)
    )
    return f"ruleset: extra_{i}\nversion: 1\nrules:\n{rules}\n"


def _placement_file(name: str) -> str:
    return f"""ruleset: {name}_page
version: 1
placements:
  {name}: {{content: {name}_default}}
rules:
  - id: {name}_for_buyers
    trigger: {{placement: {name}}}
    when:
      - profile.orders_count: {{gte: 1}}
    actions:
      - content: {{placement: {name}, content: {name}_for_buyers}}
"""


@dataclass
class Shop:
    setup: Setup
    api: ApiProcess
    key: dict[str, str]
    rules_dir: Path

    def deploy(self, placement: str) -> None:
        (self.rules_dir / f"{placement}.yaml").write_text(_placement_file(placement))
        done = self.setup.cli("rules", "reload")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("active"), done.stdout


@pytest.fixture(scope="module")
def shop(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("freshness")
    rules_dir = tmp / "rules"
    shutil.copytree(SHIPPED, rules_dir)
    for i in range(EXTRA_RULESETS):
        (rules_dir / f"extra_{i}.yaml").write_text(_extra(i))
    url = make_database("freshness")
    # Snapshots are kept long here: a cached one must not outlive the rules it was read
    # under.
    s = setup(
        url,
        tmp,
        rules_dir=rules_dir,
        DECISION_BUDGET_MS=str(BUDGET_MS),
        DECISION_CACHE_TTL_S="30",
    )
    assert s.cli("rules", "reload").returncode == 0
    key = s.key("storefront")
    api = s.start_api(tmp)
    shop = Shop(s, api, key, rules_dir)
    try:
        support.wait_for(lambda: _healthy(shop), timeout=60)
        yield shop
    finally:
        s.stop()


def _healthy(shop: Shop) -> bool:
    response = shop.api.decide(shop.key, user_id="warm-up")
    return response.status_code == 200 and not response.json()["degraded"]


def test_the_first_request_after_a_deployment_checks_its_key(shop: Shop) -> None:
    shop.deploy("spot_a")
    stranger = shop.api.decide({"Authorization": "Bearer pk_00000000_not-a-key"})
    assert stranger.status_code == 401, (stranger.text, shop.api.tail())
    assert stranger.headers["www-authenticate"] == "Bearer"
    again = shop.api.decide({"Authorization": "Bearer pk_00000000_not-a-key"})
    assert again.status_code == 401


def test_the_first_request_after_a_deployment_is_answered_with_it(shop: Shop) -> None:
    regular = shop.api.decide(shop.key, user_id="regular")  # this snapshot is now cached
    assert regular.status_code == 200
    shop.deploy("spot_b")
    cached = shop.api.decide(shop.key, user_id="regular", placements=["spot_b"])
    assert cached.status_code == 200, (cached.text, shop.api.tail())
    assert cached.json()["degraded"] is False
    assert cached.json()["placements"]["spot_b"]["content"]["id"] == "spot_b_default"
    assert "spot_b_page" in {v["ruleset"] for v in cached.json()["rule_versions"]}
    newcomer = shop.api.decide(shop.key, user_id="newcomer", placements=["spot_b"])
    assert newcomer.status_code == 200, newcomer.text
    assert newcomer.json()["degraded"] is False


def test_a_key_that_cannot_be_checked_is_not_served(shop: Shop, server_url: str) -> None:
    """With the database unreachable, a key this process has checked before gets the
    defaults; one it has never checked gets 503 with Retry-After, never an answer."""
    until(lambda: _healthy(shop), deadline_s=30, interval=0.2)
    name = database_name(shop.setup.url)
    with psycopg.connect(support.libpq_url(server_url), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            known = shop.api.decide(shop.key, user_id="someone")
            assert known.status_code == 200, known.text
            assert known.json()["degraded"] is True
            stranger = shop.api.decide({"Authorization": "Bearer pk_00000000_unseen"})
            assert stranger.status_code == 503, stranger.text
            assert stranger.headers["content-type"] == "application/problem+json"
            assert int(stranger.headers["retry-after"]) >= 1
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    until(lambda: _healthy(shop), deadline_s=30, interval=0.2)
    unknown = shop.api.decide({"Authorization": "Bearer pk_00000000_unseen"})
    assert unknown.status_code == 401
