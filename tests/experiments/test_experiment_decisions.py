"""An experiment on placements, through the decision endpoint on PostgreSQL: visitors see
their variant's content (held-out ones the default), each shown variant is an exposure
once the decision log is written, and the results API counts units, conversions and
revenue per variant with the statistics scipy and statsmodels give on the same numbers.
Stopping is a change to the rule file.

The endpoint reads on a pool of its own, so these tests commit, to a database of their
own; each test uses its own visitors."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import select, text
from statsmodels.stats.proportion import proportions_ztest

from service import db, flow
from service.app import create_app
from service.auth.service import Scope, create_key
from service.cli import main
from service.experiments import results
from service.experiments.declared import HOLDOUT, catalogue
from service.experiments.models import ExperimentExposure
from service.rules import deployments
from service.ruleset.runtime import RUNTIME
from tests.support import clear_caches, resolve_all
from tests.support.events import track

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
EXPERIMENTS = """
experiments:
  - key: hero_test
    description: Does the premium collection sell more than the season's?
    target: {placement: homepage_hero}
    holdout: {share: 0.1}
    variants:
      - {name: control}
      - {name: premium, content: premium_collection, params: {from: experiment}}
  - key: drawer_copy
    target: {placement: cart_drawer}
    unit: anonymous
    variants:
      - {name: control}
      - {name: urgency, content: cart_urgency}
"""


@dataclass
class Shop:
    client: TestClient
    keys: dict[str, dict[str, str]]
    rules: Path


@pytest.fixture(scope="module")
def shop(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    url = make_database("experiments")
    directory = tmp_path_factory.mktemp("experiments") / "rules"
    shutil.copytree(SHIPPED, directory)
    placements = directory / "placements.yaml"
    before, tests = placements.read_text().split("\ntests:\n")
    placements.write_text(before + EXPERIMENTS + "\ntests:\n" + tests)
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "RULES_DIR")}
    os.environ.update(DATABASE_URL=url, RULES_DIR=str(directory))
    clear_caches()
    try:
        with db.transaction() as session:
            assert deployments.reload(session, directory=directory, origin="cli").status == "active"
            keys = {}
            for scope in (Scope.INGEST, Scope.STOREFRONT, Scope.MARKETER):
                new = create_key(session, name=scope.value, scopes=[scope])
                keys[scope.value] = {"Authorization": f"Bearer {new.key}"}
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield Shop(client, keys, directory)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        clear_caches()


def send(shop: Shop, *events: dict) -> None:
    response = shop.client.post(
        "/v1/events", json={"batch": list(events)}, headers=shop.keys["ingest"]
    )
    assert response.status_code == 200, response.text
    resolve_all()
    with db.transaction() as session:
        while flow.evaluate_pending(session):
            pass


def decide(shop: Shop, **body: object) -> dict:
    response = shop.client.post("/v1/decisions", json=body, headers=shop.keys["storefront"])
    assert response.status_code == 200, response.text
    return response.json()


def declared(key: str):  # type: ignore[no-untyped-def]
    with db.transaction() as session:
        return catalogue(RUNTIME.active(session).rulesets).by_key[key]


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def exposures(key: str) -> list[ExperimentExposure]:
    with db.transaction() as session:
        found = session.scalars(
            select(ExperimentExposure).where(ExperimentExposure.experiment == key)
        ).all()
        session.expunge_all()
    return list(found)


def test_an_anonymous_unit_is_bucketed_by_its_anonymous_id_and_sees_its_variant(
    shop: Shop,
) -> None:
    log = shop.client.app.state.decision_log
    drawer = declared("drawer_copy")
    hero = declared("hero_test")
    visitors = [f"anon-{i}" for i in range(40)]
    for visitor in visitors:
        body = decide(shop, anonymous_id=visitor, placements=["homepage_hero", "cart_drawer"])
        expected = drawer.arm(visitor, segments=[], now=datetime.now(UTC))
        assert expected is not None
        shown = body["placements"]["cart_drawer"]
        assert shown["experiments"] == [{"experiment": "drawer_copy", "variant": expected.variant}]
        content = "cart_urgency" if expected.variant == "urgency" else "cart_reassurance"
        assert shown["content"]["id"] == content
        # hero_test's unit is the customer: a visitor without a profile is not in it.
        assert body["placements"]["homepage_hero"]["experiments"] == []
    assert hero.spec.unit == "customer"
    log.flush()
    rows = exposures("drawer_copy")
    assert sorted(r.unit for r in rows) == sorted(visitors)
    assert all(r.source == "decision" and r.customer_id is None for r in rows)
    # Asked again: one row per unit and variant, counted.
    decide(shop, anonymous_id=visitors[0], placements=["cart_drawer"])
    log.flush()
    (again,) = [r for r in exposures("drawer_copy") if r.unit == visitors[0]]
    assert again.exposures == 2


def test_results_per_variant_match_scipy_and_statsmodels_on_the_same_numbers(
    shop: Shop,
) -> None:
    log = shop.client.app.state.decision_log
    hero = declared("hero_test")
    users = [f"res-{i}" for i in range(120)]
    send(
        shop,
        *[
            {
                "type": "identify",
                "userId": user,
                "timestamp": stamp(datetime.now(UTC)),
                "traits": {"consent": {"marketing": True}},
            }
            for user in users
        ],
    )
    with db.transaction() as session:
        customers = dict(
            session.execute(
                text("SELECT value, customer_id FROM identities WHERE kind = 'user_id'")
            ).all()
        )
    variant_of: dict[str, str] = {}
    for user in users:
        body = decide(shop, user_id=user, placements=["homepage_hero"])
        arm = hero.arm(str(customers[user]), segments=body["segments"], now=datetime.now(UTC))
        assert arm is not None
        variant_of[user] = arm.variant
        hero_shown = body["placements"]["homepage_hero"]
        assert hero_shown["experiments"] == [{"experiment": "hero_test", "variant": arm.variant}]
        if arm.variant == "premium":
            assert hero_shown["content"] == {
                "id": "premium_collection",
                "params": {"from": "experiment"},
                "source": "experiment",
                "rule": None,
            }
        elif arm.variant == HOLDOUT:
            assert hero_shown["content"]["source"] == "default"
    log.flush()
    # A third of the customers order once after they were shown the hero, a few twice.
    rng = np.random.default_rng(7)
    spent = {user: 0.0 for user in users}
    orders = []
    for n, user in enumerate(users):
        for k in range(int(rng.choice([0, 0, 1, 2], p=[0.4, 0.27, 0.28, 0.05]))):
            total = float(rng.integers(10, 200))
            spent[user] += total
            orders.append(
                track(
                    "Order Completed",
                    user=user,
                    order_id=f"o-{n}-{k}",
                    total=f"{total:.2f}",
                    currency="USD",
                    timestamp=stamp(datetime.now(UTC)),
                )
            )
    send(shop, *orders)

    response = shop.client.get("/v1/experiments/hero_test", headers=shop.keys["marketer"])
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["status"] == "running"
    assert got["units"] == len(users)
    names = ["control", "premium"]
    units = {v: [u for u in users if variant_of[u] == v] for v in [*names, HOLDOUT]}
    by_name = {v["name"]: v for v in got["variants"]}
    for name in names:
        assert by_name[name]["units"] == len(units[name])
        assert by_name[name]["conversions"] == sum(spent[u] > 0 for u in units[name])
        assert by_name[name]["revenue"] == pytest.approx(sum(spent[u] for u in units[name]))
    (treatment,) = got["results"]["treatments"]
    counts = np.array([sum(spent[u] > 0 for u in units[n]) for n in ("premium", "control")])
    sizes = np.array([len(units["premium"]), len(units["control"])])
    _, p_z = proportions_ztest(counts, sizes)
    assert treatment["conversion"]["p_value"] == pytest.approx(p_z, abs=1e-6)
    table = np.array([counts, sizes - counts]).T
    p_chi = stats.chi2_contingency(table, correction=False)[1]
    assert treatment["conversion"]["chi_square_p_value"] == pytest.approx(p_chi, abs=1e-6)
    revenue = [np.array([spent[u] for u in units[n]]) for n in ("premium", "control")]
    welch = stats.ttest_ind(revenue[0], revenue[1], equal_var=False)
    # CUPED leaves revenue as it is when nobody spent before the experiment (theta 0).
    assert treatment["revenue_per_unit"]["p_value"] == pytest.approx(welch.pvalue, abs=1e-6)
    boot = stats.bootstrap(
        (revenue[0], revenue[1]),
        lambda t, c, axis: np.mean(t, axis=axis) - np.mean(c, axis=axis),
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    interval = treatment["revenue_per_unit"]["bootstrap"]
    assert (interval["low"], interval["high"]) == pytest.approx((boot.low, boot.high), abs=1e-6)
    assert got["results"]["sample_ratio"]["mismatch"] is False
    assert got["holdout"]["control"] == HOLDOUT
    assert got["power"]["units_needed_per_variant"] > len(users)
    assert got["verdict"]

    listed = shop.client.get("/v1/experiments", headers=shop.keys["marketer"]).json()
    assert {e["key"]: e["status"] for e in listed} == {
        "hero_test": "running",
        "drawer_copy": "running",
    }
    segments = shop.client.get(
        "/v1/experiments/hero_test/segments", headers=shop.keys["marketer"]
    ).json()
    assert "Holm" in segments["caveat"]
    # The CLI shows the same document, and lists what the API lists.
    shown = CliRunner().invoke(main, ["experiments", "show", "hero_test"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["variants"] == got["variants"]
    listing = CliRunner().invoke(main, ["experiments", "list"])
    assert "hero_test" in listing.output
    assert "running" in listing.output
    missing = CliRunner().invoke(main, ["experiments", "show", "nope"])
    assert missing.exit_code == 1


def test_a_merged_visitors_exposure_follows_them_to_their_profile(shop: Shop) -> None:
    log = shop.client.app.state.decision_log
    send(shop, track("Page Viewed", anon="merge-anon", timestamp=stamp(datetime.now(UTC))))
    body = decide(shop, anonymous_id="merge-anon", placements=["homepage_hero"])
    (arm,) = body["placements"]["homepage_hero"]["experiments"]
    anonymous_profile = body["customer_id"]
    log.flush()
    send(
        shop,
        {"type": "identify", "userId": "merge-user", "timestamp": stamp(datetime.now(UTC))},
        {
            "type": "identify",
            "userId": "merge-user",
            "anonymousId": "merge-anon",
            "timestamp": stamp(datetime.now(UTC)),
        },
        track(
            "Order Completed",
            user="merge-user",
            order_id="merge-o1",
            total="40.00",
            currency="USD",
            timestamp=stamp(datetime.now(UTC)),
        ),
    )
    with db.transaction() as session:
        owner = session.scalar(
            text(
                "SELECT customer_id FROM identities WHERE kind = 'user_id' AND value = 'merge-user'"
            )
        )
        merged = session.scalar(
            text("SELECT merged_into_id FROM customers WHERE id = :c"), {"c": anonymous_profile}
        )
    assert merged == owner or str(owner) == anonymous_profile  # one profile now
    survivor = owner if merged == owner else merged or owner
    with db.transaction() as session:
        data, _ = results.read(session, declared("hero_test"))
    (index,) = [i for i, u in enumerate(data.units) if u.customer_id == survivor]
    assert data.units[index].variant == arm["variant"]
    assert data.converted[index]
    assert data.revenue[index] == 40.0


def test_stopping_writes_the_file_and_once_deployed_nobody_is_bucketed(shop: Shop) -> None:
    log = shop.client.app.state.decision_log
    run = CliRunner().invoke(main, ["experiments", "stop", "drawer_copy", "--dir", str(shop.rules)])
    assert run.exit_code == 0, run.output
    assert "+    stop: " in run.output
    assert "rules reload" in run.output
    # Not deployed yet: nothing changed silently.
    assert decide(shop, anonymous_id="late", placements=["cart_drawer"])["placements"][
        "cart_drawer"
    ]["experiments"]
    with db.transaction() as session:
        assert deployments.reload(session, directory=shop.rules, origin="cli").status == "active"
    body = decide(shop, anonymous_id="later", placements=["cart_drawer"])
    assert body["placements"]["cart_drawer"]["experiments"] == []
    assert body["placements"]["cart_drawer"]["content"]["id"] == "cart_reassurance"
    log.flush()
    got = shop.client.get("/v1/experiments/drawer_copy", headers=shop.keys["marketer"]).json()
    assert got["status"] == "stopped"
    assert got["units"] == len({r.unit for r in exposures("drawer_copy")}) >= 2


def test_an_unknown_experiment_is_a_404_problem(shop: Shop) -> None:
    response = shop.client.get("/v1/experiments/nope", headers=shop.keys["marketer"])
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "nope" in response.json()["detail"]
    assert shop.client.get("/v1/experiments", headers=shop.keys["storefront"]).status_code == 403
