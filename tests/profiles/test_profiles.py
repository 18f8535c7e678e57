from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from scipy.stats import rankdata
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import crypto
from service.auth.service import Scope
from service.profiles import service as profiles
from tests.support import resolve_all
from tests.support import webhooks as send
from tests.support.events import track
from tests.support.webhooks import fixture


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST), "marketer": api_key(Scope.MARKETER)}


def post(client: TestClient, keys, *events: dict) -> dict:
    response = client.post("/v1/events", json={"batch": list(events)}, headers=keys["ingest"])
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0, response.json()
    return response.json()


def profile(client: TestClient, keys, ref: str) -> dict:
    resolve_all()
    response = client.get(f"/v1/profiles/{ref}", headers=keys["marketer"])
    assert response.status_code == 200, response.text
    return response.json()


def identify(
    *, user: str | None = None, anon: str | None = None, ts: str = "2026-11-20T12:00:00Z", **traits
) -> dict:
    body: dict = {"type": "identify", "timestamp": ts, "traits": traits}
    if user:
        body["userId"] = user
    if anon:
        body["anonymousId"] = anon
    return body


def live_customers(session: Session) -> int:
    resolve_all()
    return session.execute(
        text("SELECT count(*) FROM customers WHERE merged_into_id IS NULL")
    ).scalar_one()


def test_anonymous_visitor_who_identifies_keeps_all_events_on_one_profile(
    client: TestClient, session: Session, keys
) -> None:
    post(
        client,
        keys,
        track("Product Viewed", anon="anon-1", product_id="p1"),
        track("Product Viewed", anon="anon-1", product_id="p1"),
    )
    post(
        client, keys, identify(user="u-1", anon="anon-1", email="Ann@Example.com", first_name="Ann")
    )
    # A Shopify order with the same email lands on the same profile.
    order = fixture("shopify_orders_create.json")
    order["email"] = order["customer"]["email"] = "ann@example.com"
    send.shopify(client, "orders/create", order)

    ann = profile(client, keys, "email:ANN@example.com")
    assert (
        ann == profile(client, keys, "user_id:u-1") == profile(client, keys, "anonymous_id:anon-1")
    )
    assert ann["traits"]["first_name"] == "Ann"
    assert ann["orders_count"] == 1
    assert ann["product_views"][0] == {**ann["product_views"][0], "product_id": "p1", "views": 2}
    kinds = {i["kind"] for i in ann["identities"]}
    assert {"user_id", "anonymous_id", "email", "shopify_customer"} <= kinds
    assert live_customers(session) == 1
    events = client.get(f"/v1/profiles/{ann['id']}/events", headers=keys["marketer"]).json()
    assert len(events["events"]) == 4


def test_two_existing_profiles_are_merged_with_a_record(
    client: TestClient, session: Session, keys
) -> None:
    post(client, keys, track("Product Viewed", anon="device-9", product_id="p1"))
    post(client, keys, identify(user="u-9", email="bo@example.com"))
    anonymous = profile(client, keys, "anonymous_id:device-9")["id"]
    known = profile(client, keys, "user_id:u-9")["id"]
    assert anonymous != known

    post(client, keys, identify(user="u-9", anon="device-9", ts="2026-11-21T00:00:00Z"))
    merged = profile(client, keys, "anonymous_id:device-9")
    assert merged["id"] == known
    assert merged["merged_from"] == [anonymous]
    assert profile(client, keys, anonymous)["id"] == known  # old id follows the merge
    record = session.execute(
        text("SELECT outcome, source FROM profile_merges WHERE loser_id = :l"), {"l": anonymous}
    ).one()
    assert tuple(record) == ("merged", "api")
    assert live_customers(session) == 1


def test_a_blocked_email_never_merges(client: TestClient, session: Session, keys) -> None:
    post(
        client,
        keys,
        identify(user="u-1", email="test@example.com"),
        identify(user="u-2", email="test@example.com"),
    )
    assert live_customers(session) == 2
    assert (
        session.execute(text("SELECT count(*) FROM identities WHERE kind = 'email'")).scalar() == 0
    )


def test_a_shared_device_does_not_merge_two_accounts(
    client: TestClient, session: Session, keys
) -> None:
    post(client, keys, identify(user="alice", anon="family-tablet"))
    post(client, keys, identify(user="bob", anon="family-tablet", ts="2026-11-21T00:00:00Z"))
    assert (
        profile(client, keys, "user_id:alice")["id"] != profile(client, keys, "user_id:bob")["id"]
    )
    assert live_customers(session) == 2


def test_emails_are_stored_as_keyed_hashes_and_encrypted(
    client: TestClient, session: Session, keys
) -> None:
    post(client, keys, identify(user="u-5", email=" Cy@Example.COM ", phone="+1 (415) 555-2671"))
    resolve_all()
    rows = session.execute(
        text("SELECT kind, value, encrypted FROM identities WHERE kind IN ('email', 'phone')")
    ).all()
    stored = {r.kind: r for r in rows}
    assert stored["email"].value == crypto.keyed_hash("email", "cy@example.com")
    assert crypto.decrypt(stored["email"].encrypted) == "cy@example.com"
    assert crypto.decrypt(stored["phone"].encrypted) == "+14155552671"
    dump = session.execute(
        text(
            "SELECT string_agg(row_to_json(t)::text, '') FROM "
            "(SELECT * FROM identities UNION ALL SELECT NULL, NULL, "
            "NULL, NULL, NULL, NULL) t"
        )
    ).scalar()
    assert "cy@example.com" not in dump.lower()
    shown = {i["kind"]: i["value"] for i in profile(client, keys, "user_id:u-5")["identities"]}
    assert shown["email"] == "c***@example.com"
    assert shown["phone"] == "***71"
    traits = session.execute(text("SELECT traits::text FROM customers")).scalar()
    assert "example" not in traits.lower()


def test_computed_traits_use_decimals_per_currency_and_converge_out_of_order(
    client: TestClient, keys
) -> None:
    def order(event: str, order_id: str, ts: str, **props) -> dict:
        return track(event, user="buyer", order_id=order_id, timestamp=ts, **props)

    post(
        client,
        keys,
        order("Order Completed", "o1", "2026-11-01T10:00:00Z", total=10.10, currency="usd"),
        order("Order Completed", "o2", "2026-11-02T10:00:00Z", total="20.20", currency="USD"),
        order("Order Completed", "o3", "2026-11-03T10:00:00Z", total="0.30", currency="USD"),
        order("Order Completed", "e1", "2026-11-04T10:00:00Z", total="5", currency="EUR"),
        order("Order Refunded", "o2", "2026-11-05T10:00:00Z", total="0.20", currency="USD"),
    )
    # A cancellation that happened before an update arrives after it: the newest wins.
    post(client, keys, order("Order Updated", "o3", "2026-11-06T10:00:00Z", status="completed"))
    post(client, keys, order("Order Cancelled", "o3", "2026-11-05T12:00:00Z"))

    buyer = profile(client, keys, "user_id:buyer")
    assert buyer["orders_count"] == 4
    spend = {s["currency"]: s for s in buyer["spend"]}
    assert spend["USD"]["total_spent"] == "30.4"  # 10.10 + 20.20 - 0.20 + 0.30
    assert spend["USD"]["average_order_value"] == str(
        (Decimal("30.40") / 3).quantize(Decimal("0.01"))
    )
    assert spend["EUR"] == {**spend["EUR"], "total_spent": "5", "orders_count": 1}
    assert buyer["first_order_at"].startswith("2026-11-01")
    assert buyer["last_order_at"].startswith("2026-11-04")


def test_a_refund_naming_no_customer_joins_its_order_profile(
    client: TestClient, session: Session, keys
) -> None:
    order = fixture("shopify_orders_create.json")
    send.shopify(client, "orders/create", order)
    refund = fixture("shopify_refunds_create.json")
    refund["order_id"] = order["id"]
    send.shopify(client, "refunds/create", refund)
    assert live_customers(session) == 1


def test_rfm_quintiles_rank_the_customer_base(client: TestClient, session: Session, keys) -> None:
    events = [
        track(
            "Order Completed",
            user=f"c{i}",
            order_id=f"o{i}-{n}",
            total=str(10 * i),
            currency="USD",
            timestamp=f"2026-10-{i:02d}T10:00:00Z",
        )
        for i in range(1, 11)
        for n in range(i)
    ]
    post(client, keys, *events)
    resolve_all()
    assert profiles.rfm_job(session) == 10
    best, worst = profile(client, keys, "user_id:c10"), profile(client, keys, "user_id:c1")
    assert (best["rfm"]["recency"], best["rfm"]["frequency"], best["rfm"]["monetary"]) == (5, 5, 5)
    assert (worst["rfm"]["recency"], worst["rfm"]["frequency"], worst["rfm"]["monetary"]) == (
        1,
        1,
        1,
    )


def _rfm(client: TestClient, keys, user: str) -> tuple[int, int, int]:
    rfm = profile(client, keys, f"user_id:{user}")["rfm"]
    return rfm["recency"], rfm["frequency"], rfm["monetary"]


def test_rfm_ties_share_a_score_six_customers_with_one_order_each(
    client: TestClient, session: Session, keys
) -> None:
    events = [
        track(
            "Order Completed",
            user=f"one{i}",
            order_id=f"one{i}",
            total="10",
            currency="USD",
            timestamp=f"2026-10-0{i + 1}T10:00:00Z",
        )
        for i in range(6)
    ]
    post(client, keys, *events)
    resolve_all()
    assert profiles.rfm_job(session) == 6
    scores = [_rfm(client, keys, f"one{i}") for i in range(6)]
    assert {f for _, f, _ in scores} == {1}  # ntile(5) gave 5, 4, 3, 2, 1, 1
    assert {m for _, _, m in scores} == {1}  # the same spend too
    assert [r for r, _, _ in scores] == [1, 1, 2, 3, 4, 5]  # distinct days: ranked


def test_rfm_scores_are_the_share_of_customers_strictly_below(
    client: TestClient, session: Session, keys
) -> None:
    """score = 1 + floor(5 * (rank - 1) / n) with rank the lowest rank of the tie
    (scipy's rankdata, method "min"), on ten customers with ties in each of R, F, M."""
    orders = [1, 1, 1, 1, 2, 2, 3, 3, 3, 6]
    per_order = [10, 10, 20, 20, 10, 15, 10, 10, 20, 10]
    last_day = [1, 1, 1, 2, 2, 3, 3, 3, 3, 4]
    events = [
        track(
            "Order Completed",
            user=f"c{i}",
            order_id=f"c{i}-{n}",
            total=str(per_order[i]),
            currency="USD",
            timestamp=(
                f"2026-10-0{last_day[i]}T10:00:00Z"
                if n == orders[i] - 1
                else f"2026-09-1{n}T10:00:00Z"
            ),
        )
        for i in range(10)
        for n in range(orders[i])
    ]
    post(client, keys, *events)
    resolve_all()
    assert profiles.rfm_job(session) == 10
    totals = [o * t for o, t in zip(orders, per_order, strict=True)]

    def expected(values: list[int]) -> list[int]:
        ranks = rankdata(values, method="min").astype(int)
        return [1 + (5 * (int(r) - 1)) // len(values) for r in ranks]

    got = [_rfm(client, keys, f"c{i}") for i in range(10)]
    assert [r for r, _, _ in got] == expected(last_day)
    assert [f for _, f, _ in got] == expected(orders)
    assert [m for _, _, m in got] == expected(totals)
    assert [f for _, f, _ in got] == [1, 1, 1, 1, 3, 3, 4, 4, 4, 5]  # ties share


def test_profile_events_page_with_a_cursor(client: TestClient, keys) -> None:
    post(
        client,
        keys,
        *[
            track(
                "Product Viewed",
                user="pager",
                product_id=str(i),
                timestamp=f"2026-11-01T10:{i:02d}:00Z",
            )
            for i in range(5)
        ],
    )
    resolve_all()
    first = client.get("/v1/profiles/user_id:pager/events?limit=2", headers=keys["marketer"]).json()
    assert [e["properties"]["product_id"] for e in first["events"]] == ["4", "3"]
    rest = client.get(
        f"/v1/profiles/user_id:pager/events?limit=10&cursor={first['next_cursor']}",
        headers=keys["marketer"],
    ).json()
    assert [e["properties"]["product_id"] for e in rest["events"]] == ["2", "1", "0"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        "99999999999999999999",
        base64.urlsafe_b64encode(b"2026-11-01T10:00:00+00:00|99999999999999999999").decode(),
        base64.urlsafe_b64encode(b"2026-11-01T10:00:00+00:00|-99999999999999999999").decode(),
    ],
    ids=["not-a-cursor", "id-beyond-64-bits", "id-below-64-bits"],
)
def test_a_cursor_beyond_the_ids_is_a_problem_naming_it(
    client: TestClient, keys, cursor: str
) -> None:
    post(client, keys, track("Product Viewed", user="far", product_id="1"))
    resolve_all()
    response = client.get(
        f"/v1/profiles/user_id:far/events?cursor={cursor}", headers=keys["marketer"]
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["query.cursor"]


def test_unknown_profile_is_404(client: TestClient, keys) -> None:
    response = client.get("/v1/profiles/email:nobody@example.com", headers=keys["marketer"])
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_merge_recomputes_the_winners_orders_and_spend(
    client: TestClient, session: Session, keys
) -> None:
    post(client, keys, identify(user="u-1", anon="a-A", ts="2026-11-20T09:00:00Z"))
    post(
        client,
        keys,
        track(
            "Order Completed",
            anon="a-B",
            order_id="o-1",
            total="50.00",
            currency="EUR",
            timestamp="2026-11-20T10:00:00Z",
        ),
    )
    assert profile(client, keys, "anonymous_id:a-B")["orders_count"] == 1
    post(client, keys, identify(user="u-1", anon="a-B", ts="2026-11-20T11:00:00Z"))
    merged = profile(client, keys, "user_id:u-1")
    assert merged["orders_count"] == 1
    assert merged["spend"] == [
        {"currency": "EUR", "orders_count": 1, "total_spent": "50", "average_order_value": "50.00"}
    ]


def test_a_cancelled_order_stays_cancelled_when_a_plain_update_follows(
    client: TestClient, keys
) -> None:
    order = fixture("shopify_orders_create.json")
    order["created_at"] = "2022-01-01T10:00:00-05:00"
    order["cancelled_at"] = order["updated_at"] = "2022-01-02T10:00:00-05:00"
    send.shopify(client, "orders/create", order)
    send.shopify(client, "orders/cancelled", order)
    send.shopify(client, "orders/updated", order)  # Shopify sends both for a cancellation
    customer = f"shopify_customer:{order['customer']['id']}"
    assert profile(client, keys, customer)["orders_count"] == 0


def test_a_refused_merge_is_recorded_once(client: TestClient, session: Session, keys) -> None:
    post(client, keys, identify(user="alice", anon="family-tablet"))
    for ts in ("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"):
        post(client, keys, identify(user="bob", anon="family-tablet", ts=ts))
    assert live_customers(session) == 2
    refusals = session.execute(
        text("SELECT count(*) FROM profile_merges WHERE outcome = 'refused'")
    ).scalar_one()
    assert refusals == 1


def test_spend_is_written_as_a_plain_decimal(client: TestClient, keys) -> None:
    post(
        client,
        keys,
        track("Order Completed", user="round", order_id="r1", total="100.00", currency="USD"),
    )
    assert profile(client, keys, "user_id:round")["spend"][0]["total_spent"] == "100"


def test_newest_trait_wins_across_a_dst_change_in_a_non_utc_session(
    client: TestClient, session: Session, keys
) -> None:
    """At the end of summer time in Berlin, 01:15Z is 02:15+01:00 and the earlier 00:50Z
    is 02:50+02:00: compared as local text, the older would look newer."""
    session.execute(text("SET TIME ZONE 'Europe/Berlin'"))
    post(client, keys, identify(user="tz", ts="2026-10-25T01:15:00Z", plan="newer"))
    resolve_all()
    post(client, keys, identify(user="tz", ts="2026-10-25T00:50:00Z", plan="older"))
    assert profile(client, keys, "user_id:tz")["traits"]["plan"] == "newer"
