"""The synthetic store: its personas file, its distributions against that file, its
determinism, and its traffic through the real intake of a running API."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from service.events.identity import normalise_phone
from service.language.parse import RulesInvalid
from service.synthetic import behaviour, catalogue, deliveries, history, live, personas, population
from service.synthetic.behaviour import Kind
from service.synthetic.sender import Sender, Target
from service.synthetic.truth import Truth, read
from tests import support
from tests.support import api_process

END = datetime(2030, 3, 1, tzinfo=UTC)
SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"


def store(customers: int, *, seed: int = 11, days: int = 60) -> tuple[list, list]:
    model = personas.load()
    shop = catalogue.build(model, seed=seed)
    start = END - timedelta(days=days)
    drawn = [
        population.draw(model, seed=seed, index=i, start=start, end=END) for i in range(customers)
    ]
    planned = [
        a for c in drawn for a in behaviour.acts(model, shop, c, start=start, end=END, planned=True)
    ]
    return drawn, planned


@pytest.fixture(scope="module")
def big() -> tuple[list, list]:
    return store(2000, days=45)


# --- the personas file -------------------------------------------------------------------------


def test_the_shipped_personas_file_is_valid_and_shares_add_up() -> None:
    model = personas.load()
    assert abs(sum(p.share for p in model.personas.values()) - 1) < 1e-9
    assert len(model.personas) >= 5


@pytest.mark.parametrize(
    ("change", "line", "expected"),
    [
        (("visits_per_week: 3.0", "vists_per_week: 3.0"), 35, "unknown field 'vists_per_week'"),
        (("add_to_cart: 0.25", "add_to_cart: 1.25"), 37, "add_to_cart: Input should be less"),
        (("share: 0.10\n    visits", "share: 0.5\n    visits"), 4, "add up to 1.4, not 1"),
        (("{electronics: 6, home: 4, sports: 2}", "{electronix: 6}"), 4, "'electronix'"),
        (("store: demo", "store: demo\nstore: again"), 5, "'store' is given twice"),
    ],
)
def test_a_wrong_personas_file_names_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], line: int, expected: str
) -> None:
    source = personas.DEFAULT.read_text()
    assert change[0] in source
    path = tmp_path / "store.yaml"
    path.write_text(source.replace(change[0], change[1], 1))
    with pytest.raises(RulesInvalid) as raised:
        personas.load(path)
    found = [e for e in raised.value.errors if expected in e.message]
    assert found, [str(e) for e in raised.value.errors]
    assert (found[0].file, found[0].line) == ("store.yaml", line)


# --- distributions against the file --------------------------------------------------------


def test_persona_shares_follow_the_file(big) -> None:
    drawn, _ = big
    model = personas.load()
    counts = Counter(c.persona for c in drawn)
    for name, persona in model.personas.items():
        sd = (persona.share * (1 - persona.share) / len(drawn)) ** 0.5
        assert abs(counts[name] / len(drawn) - persona.share) < 4 * sd, name


def test_cart_abandonment_order_values_and_discounts_follow_the_file(big) -> None:
    _, planned = big
    model = personas.load()
    carts: dict[str, list[bool]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    discounted: dict[str, list[bool]] = defaultdict(list)
    for act in planned:
        if act.kind == Kind.CHECKOUT:
            carts[act.customer.persona].append(behaviour.bought(act))
        if act.kind == Kind.ORDER and behaviour.bought(act):
            values[act.customer.persona].append(float(act.subtotal))
            discounted[act.customer.persona].append(act.discount > 0)
    for name, persona in model.personas.items():
        bought = carts[name]
        assert len(bought) >= 50, name
        left = 1 - sum(bought) / len(bought)
        sd = (persona.cart_abandonment * (1 - persona.cart_abandonment) / len(bought)) ** 0.5
        assert abs(left - persona.cart_abandonment) < 4 * sd + 0.01, (name, left)
        median = statistics.median(values[name])
        assert abs(median / persona.order_value.median - 1) < 0.2, (name, median)
        used = sum(discounted[name]) / len(discounted[name])
        sd = (persona.discount_use * (1 - persona.discount_use) / len(discounted[name])) ** 0.5
        assert abs(used - persona.discount_use) < 4 * sd + 0.01, (name, used)


def test_sessions_follow_the_daily_rhythm_in_local_time(big) -> None:
    _, planned = big
    model = personas.load()
    hours = Counter(
        a.at.astimezone(ZoneInfo(a.customer.timezone)).hour for a in planned if a.kind == Kind.PAGE
    )
    seen = np.array([hours[h] for h in range(24)], dtype=float)
    assert np.corrcoef(seen, np.array(model.rhythm.hours))[0, 1] > 0.95


def test_window_shoppers_view_more_and_buy_less_than_loyal_big_spenders(big) -> None:
    _, planned = big
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for act in planned:
        if behaviour.bought(act):
            per[act.customer.persona][act.kind] += 1
    shoppers, loyal = per["window_shopper"], per["loyal_big_spender"]
    assert shoppers[Kind.VIEW] / shoppers[Kind.PAGE] > 2 * loyal[Kind.VIEW] / loyal[Kind.PAGE]
    assert shoppers[Kind.ORDER] / shoppers[Kind.PAGE] < loyal[Kind.ORDER] / loyal[Kind.PAGE] / 3


def test_anonymous_sessions_sign_in_before_anything_known_is_sent() -> None:
    _, planned = store(300)
    by_customer = defaultdict(list)
    for act in planned:
        by_customer[act.customer.index].append(act)
    signed = 0
    for acts in by_customer.values():
        known = [a for a in acts if a.known]
        if known and any(not a.known for a in acts):
            first_known = min(known, key=lambda a: a.at)
            assert first_known.kind == Kind.SIGN_IN
            signed += 1
    assert signed > 50


# --- determinism ---------------------------------------------------------------------------


def _messages(seed: int) -> list[tuple[str, str, str]]:
    _, planned = store(60, seed=seed, days=20)
    events = [deliveries.segment_event(a, currency="USD") for a in planned]
    return [(e["messageId"], e["timestamp"], e.get("event") or e["type"]) for e in events]


def test_the_same_seed_makes_the_same_traffic_and_another_seed_another() -> None:
    first = _messages(5)
    assert first == _messages(5)
    other = _messages(6)
    assert len(set(first) & set(other)) == 0


def test_customer_i_is_the_same_in_a_small_and_a_large_store() -> None:
    model = personas.load()
    start = END - timedelta(days=30)
    small = population.draw(model, seed=2, index=17, start=start, end=END)
    again = population.draw(model, seed=2, index=17, start=start, end=END)
    assert (small.email, small.persona, small.first_visit) == (
        again.email,
        again.persona,
        again.first_visit,
    )


def test_customers_share_a_phone_only_as_a_household_and_never_an_email(big) -> None:
    customers, _ = big
    phones = [normalise_phone(c.phone) for c in customers]
    assert None not in phones  # each one a possible number of its country
    shared = len(customers) - len(set(phones))
    # 2% of households give the phone of the customer before them: 40 of 2,000 expected
    assert 20 <= shared <= 60, shared
    assert all(phones[i] == phones[i - 1] for i in range(1, len(phones)) if phones[i] in phones[:i])
    assert len({c.email for c in customers}) == len(customers)


# --- through the real intake ------------------------------------------------------------------


def test_history_and_live_traffic_are_stored_one_for_one_with_signed_webhooks_verified(
    make_database, tmp_path: Path
) -> None:
    url = make_database("synthetic")
    setup = api_process.setup(url, tmp_path, rules_dir=SHIPPED_RULES)
    api = setup.start_api(tmp_path)
    try:
        ingest = setup.key("ingest")["Authorization"].removeprefix("Bearer ")
        storefront = setup.key("storefront")["Authorization"].removeprefix("Bearer ")
        target = Target(
            api.base,
            ingest,
            storefront,
            secrets={"shopify": "shpss_test_secret", "woocommerce": "wc_test_secret"},
        )
        model = personas.load()
        shop = catalogue.build(model, seed=4)
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = now - timedelta(days=7), now + timedelta(hours=6)
        truth = Truth(tmp_path / "truth.jsonl", header={"seed": 4})

        async def send() -> Sender:
            sender = Sender(target, concurrency=4)
            await history.run(
                model, shop, sender, seed=4, customers=range(40), start=start, end=now, truth=truth
            )
            runner = live.Live(model, shop, sender, truth)
            await live.run(
                runner,
                seed=4,
                customers=range(40),
                start=start,
                now=now,
                end=end,
                speed=None,
                rate=None,
                stop=asyncio.Event(),
            )
            await sender.close()
            return sender

        tally = asyncio.run(send()).tally
        truth.close()
    finally:
        setup.stop()

    webhooks = tally.sent["shopify"] + tally.sent["woocommerce"]
    storefront_events = tally.sent["segment"] + tally.sent["events"]
    assert webhooks > 0, tally
    assert tally.failed == 0
    assert tally.rejected == 0
    # A fresh database: every delivery is new (ids come from the acts, not the clock:
    # two acts sent in one second once shared an id, and one was dropped as a duplicate).
    assert tally.duplicates == 0
    assert tally.accepted == webhooks + storefront_events
    with psycopg.connect(support.libpq_url(url)) as conn:
        stored_events = conn.execute(
            "SELECT count(*) FROM events WHERE delivery_id IS NULL"
        ).fetchone()
        processed = conn.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'processed'"
        ).fetchone()
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    assert stored_events is not None
    assert stored_events[0] == storefront_events
    assert processed == (webhooks,)
    assert quarantined == (0,)
    rows = read(tmp_path / "truth.jsonl")
    assert sum(1 for r in rows if r["kind"] == "customer") == 40
    assert any(r["kind"] == "exposure" and "placement" in r for r in rows)
    assert tally.decisions == sum(1 for r in rows if r["kind"] == "exposure" and "placement" in r)
