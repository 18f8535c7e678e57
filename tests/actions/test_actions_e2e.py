"""Actions end to end with real parts: the API, a Celery worker, the Celery beat
scheduler and the timers process as subprocesses on a real broker, a signed Shopify
webhook in, a real HTTP sink and a real SMTP server out. Faults: a worker killed
mid-delivery, a receiver failing, the broker unreachable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from service.events.platforms.shopify import sign_shopify
from tests import support
from tests.support.sinks import HttpSink, TcpProxy, http_sink, smtp_server
from tests.support.webhooks import fixture

pytestmark = [pytest.mark.worker, pytest.mark.slow]

RABBIT = ("127.0.0.1", 5672)
SHOPIFY_SECRET = "shpss_e2e_secret"
DELAY_S = 3

RULES = f"""
ruleset: e2e
version: 1
rules:
  - id: checkout_reminder
    description: A checkout not completed within {DELAY_S} seconds gets the offer.
    trigger: {{event: Checkout Started}}
    when:
      - absent: {{events: [Order Completed], within: {DELAY_S}s, same: [checkout_id]}}
    actions:
      - offer:
          channel: email
          offer: CHECKOUT5
          template: reminder
          expires_in: 1d
          params: {{checkout: "{{{{ event.properties.checkout_id }}}}"}}
      - offer:
          channel: webhook
          destination: sink
          offer: CHECKOUT5
          expires_in: 1d
          params: {{checkout: "{{{{ event.properties.checkout_id }}}}"}}
  - id: crm_ping
    trigger: {{event: Product Viewed}}
    actions:
      - webhook: {{destination: sink, params: {{product: "{{{{ event.properties.product_id }}}}"}}}}
  - id: segment_ping
    trigger:
      event: Segment Entered
      where:
        - event.properties.segment: e2e_browsers
    actions:
      - webhook:
          destination: sink
          params:
            segment: "{{{{ event.properties.segment }}}}"
            reason: "{{{{ event.properties.reason }}}}"
"""

SEGMENT = """
segment: e2e_browsers
version: 1
when:
  - count: {event: Product Viewed, within: 1h, at_least: 2}
"""

TEMPLATE = """
subject: "Your checkout is waiting"
text: |
  Use {{ offer.offer }} for checkout {{ params.checkout }}.
"""


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    base: str
    db: Engine
    sink: HttpSink
    mail: list[Any]
    proxy: TcpProxy | None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ingest: dict[str, str] = field(default_factory=dict)

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "service.cli", name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool: no warm shutdown
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(sql), params))

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture(scope="module")
def stack(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = make_database("e2e")
    tmp = tmp_path_factory.mktemp("e2e")
    rules_dir = tmp / "rules"
    (rules_dir / "templates").mkdir(parents=True)
    (rules_dir / "e2e.yaml").write_text(RULES)
    (rules_dir / "templates" / "reminder.yaml").write_text(TEMPLATE)
    (rules_dir / "segments").mkdir()
    (rules_dir / "segments" / "e2e_browsers.yaml").write_text(SEGMENT)
    logs = tmp / "logs"
    logs.mkdir()
    proxy = None
    if support.port_open(*RABBIT):
        proxy = TcpProxy(RABBIT)
        proxy.start()
    port = support.free_port()
    with http_sink() as sink, smtp_server() as (smtp_port, mail):
        env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
        env.update(
            DATABASE_URL=url,
            DATA_DIR=str(tmp / "data"),
            BROKER_QUEUE=f"e2e-{uuid.uuid4().hex[:8]}",
            PORT=str(port),
            RULES_DIR=str(rules_dir),
            RULES_WATCH="false",
            SMTP_PORT=str(smtp_port),
            ACTION_DESTINATIONS=json.dumps(
                {"sink": {"url": sink.url, "secret": sink.secret, "timeout_s": 10}}
            ),
            WEBHOOK_SECRETS=json.dumps({"shopify": [SHOPIFY_SECRET]}),
            CONSENT_DEFAULTS=json.dumps({"marketing": True}),
            QUIET_HOURS="",
            ACTION_LEASE_S="4",
            ACTION_REENQUEUE_S="2",
            ACTION_RETRY_BASE_S="0.2",
            ACTION_RETRY_MAX_S="1",
            RESOLVE_SWEEP_S="0.5",
            HEARTBEAT_INTERVAL_S="1",
        )
        if proxy:
            env["BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
        engine = create_engine(url)
        s = Stack(env, logs, f"http://127.0.0.1:{port}", engine, sink, mail, proxy)
        try:
            subprocess.run(
                [sys.executable, "-m", "service.cli", "migrate"], env=env, check=True, timeout=120
            )
            s.ingest = support.cli_key(env, "ingest", "marketer", name="e2e")
            for name in ("api", "worker", "scheduler", "timers"):
                s.start(name)
            support.wait_for(lambda: _live_worker(s), timeout=120, interval=0.5)
            yield s
        finally:
            s.stop_all()
            engine.dispose()
            if proxy:
                proxy.stop()


def _live_worker(s: Stack) -> bool | None:
    try:
        body = httpx.get(f"{s.base}/readyz", timeout=5).json()
    except httpx.HTTPError:
        return None
    return True if body.get("live_workers") else None


def _checkout(s: Stack, token: str, email: str) -> None:
    payload = fixture("shopify_checkouts_create.json")
    now = datetime.now(UTC).isoformat()
    payload.update(token=token, cart_token=f"cart-{token}", email=email, created_at=now)
    payload["customer"]["email"] = email
    payload["customer"]["id"] = abs(hash(email)) % 10**12
    _shopify(s, "checkouts/create", payload)


def _order(s: Stack, checkout: str, email: str) -> None:
    payload = fixture("shopify_orders_create.json")
    now = datetime.now(UTC).isoformat()
    payload.update(
        id=abs(hash(checkout)) % 10**15,
        checkout_token=checkout,
        email=email,
        created_at=now,
        processed_at=now,
    )
    if payload.get("customer"):
        payload["customer"]["email"] = email
        payload["customer"]["id"] = abs(hash(email)) % 10**12
    _shopify(s, "orders/create", payload)


def _shopify(s: Stack, topic: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    response = httpx.post(
        f"{s.base}/v1/webhooks/shopify",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign_shopify(body, SHOPIFY_SECRET),
            "X-Shopify-Shop-Domain": "e2e.myshopify.com",
            "X-Shopify-Event-Id": str(uuid.uuid4()),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text


def _view(s: Stack, user: str, product: str) -> None:
    event = {
        "type": "track",
        "event": "Product Viewed",
        "userId": user,
        "properties": {"product_id": product},
    }
    response = httpx.post(f"{s.base}/v1/events", json=event, headers=s.ingest, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1, response.text


def _to_sink(s: Stack, key: str, value: str) -> list[Any]:
    with s.sink.lock:
        return [r for r in s.sink.received if r.body["data"]["action"]["params"].get(key) == value]


def _action(s: Stack, param: str, value: str, channel: str = "webhook") -> Any:
    rows = s.query(
        "SELECT * FROM actions "
        "WHERE channel = :channel AND payload -> 'params' ->> :param = :value",
        channel=channel,
        param=param,
        value=value,
    )
    return rows[0] if rows else None


SETTLED = ("sent", "cancelled", "dead")


def _settled(s: Stack, param: str, value: str) -> list[Any] | None:
    """The actions carrying this parameter once every one is settled (a firing's actions
    are created together), else None. A settled action is never sent again, and one
    whose `attempts` is 1 was handed to a receiver once: nothing more can come."""
    rows = s.query(
        "SELECT * FROM actions WHERE payload -> 'params' ->> :param = :value ORDER BY id",
        param=param,
        value=value,
    )
    return rows if rows and all(r.status in SETTLED for r in rows) else None


def _attempts(s: Stack, action_id: int) -> list[str]:
    rows = s.query(
        "SELECT outcome FROM action_attempts WHERE action_id = :id ORDER BY attempt", id=action_id
    )
    return [r.outcome for r in rows]


def test_an_abandoned_checkout_gets_the_offer_by_webhook_and_email_once(stack: Stack) -> None:
    _checkout(stack, "tok-a1", "a1@shop.example")
    got = support.wait_for(lambda: _to_sink(stack, "checkout", "tok-a1") or None, timeout=60)
    assert got[0].signature_ok
    assert got[0].body["data"]["action"]["offer"] == "CHECKOUT5"
    actions = support.wait_for(lambda: _settled(stack, "checkout", "tok-a1"), timeout=60)
    assert sorted((a.channel, a.status, a.attempts) for a in actions) == [
        ("email", "sent", 1),
        ("webhook", "sent", 1),
    ], stack.tail()
    assert [_attempts(stack, a.id) for a in actions] == [["sent"], ["sent"]]
    # Settled after one attempt each: what was received is all that comes.
    assert len(_to_sink(stack, "checkout", "tok-a1")) == 1
    (message,) = [m for m in stack.mail if m["To"] == "a1@shop.example"]
    assert "Use CHECKOUT5 for checkout tok-a1." in message.get_content()
    (firing,) = stack.query("SELECT * FROM rule_firings WHERE rule_id = 'checkout_reminder'")
    assert firing.status == "fired"
    assert (firing.decided_at - firing.due_at).total_seconds() < 2, stack.tail()


def test_a_second_view_puts_the_customer_in_a_segment_and_its_rule_acts_once(
    stack: Stack,
) -> None:
    _view(stack, "seg-1", "p-seg-1")
    _view(stack, "seg-1", "p-seg-2")  # two views within the hour: e2e_browsers
    (delivery,) = support.wait_for(
        lambda: _to_sink(stack, "segment", "e2e_browsers") or None, timeout=60
    )
    assert delivery.body["data"]["action"]["params"]["reason"] == "event"
    (customer,) = stack.query(
        "SELECT DISTINCT customer_id FROM events WHERE properties ->> 'product_id' = 'p-seg-1'"
    )
    _view(stack, "seg-1", "p-seg-3")  # still in: no second entry, no second action

    def quiet() -> bool | None:
        # Every event of the customer evaluated (the third view, and any announcement
        # its segment update added) and every action of theirs settled: nothing is left
        # that could act.
        busy = stack.query(
            "SELECT 1 FROM events WHERE customer_id = :c AND evaluated_at IS NULL "
            "UNION ALL SELECT 1 FROM actions WHERE customer_id = :c "
            "AND status NOT IN ('sent', 'cancelled', 'dead')",
            c=customer.customer_id,
        )
        evaluated = stack.query(
            "SELECT 1 FROM events WHERE properties ->> 'product_id' = 'p-seg-3' "
            "AND evaluated_at IS NOT NULL"
        )
        return True if evaluated and not busy else None

    support.wait_for(quiet, timeout=60)
    (member,) = stack.query(
        "SELECT * FROM segment_memberships WHERE customer_id = :c", c=customer.customer_id
    )
    assert (member.segment, member.exited_at, member.version) == ("e2e_browsers", None, 1)
    entered = stack.query(
        "SELECT 1 FROM events WHERE customer_id = :c AND name = 'Segment Entered'",
        c=customer.customer_id,
    )
    assert len(entered) == 1
    actions = _settled(stack, "segment", "e2e_browsers") or []
    assert [(a.status, a.attempts) for a in actions] == [("sent", 1)]
    assert len(_to_sink(stack, "segment", "e2e_browsers")) == 1, stack.tail()


def test_a_refresh_started_over_the_api_is_walked_by_the_worker(stack: Stack) -> None:
    _view(stack, "seg-r", "p-r-1")  # at least one customer to walk
    support.wait_for(lambda: _to_sink(stack, "product", "p-r-1") or None, timeout=60)
    started = httpx.post(f"{stack.base}/v1/segment-runs", headers=stack.ingest, timeout=10)
    if started.status_code == 409:  # the scheduler's refresh is running: wait for it
        support.wait_for(
            lambda: not stack.query("SELECT 1 FROM segment_runs WHERE status = 'running'") or None,
            timeout=60,
        )
        started = httpx.post(f"{stack.base}/v1/segment-runs", headers=stack.ingest, timeout=10)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    def finished() -> dict[str, Any] | None:
        body = httpx.get(
            f"{stack.base}/v1/segment-runs/{run_id}", headers=stack.ingest, timeout=10
        ).json()
        return body if body["status"] == "done" else None

    run = support.wait_for(finished, timeout=60)
    assert run["kind"] == "refresh"
    assert run["done"] == run["total"] >= 1
    assert run["progress"] == 1.0


def test_an_order_before_the_delay_cancels_it_and_nothing_is_sent(stack: Stack) -> None:
    _checkout(stack, "tok-a2", "a2@shop.example")
    _order(stack, "tok-a2", "a2@shop.example")

    def decided() -> tuple[list[Any]] | None:
        evaluated = stack.query(
            "SELECT 1 FROM events WHERE properties ->> 'checkout_id' = 'tok-a2' "
            "AND evaluated_at IS NOT NULL"
        )
        rows = stack.query(
            "SELECT f.* FROM rule_firings f JOIN events e ON e.id = f.event_id "
            "WHERE f.rule_id = 'checkout_reminder' AND e.properties ->> 'checkout_id' = 'tok-a2'"
        )
        if len(evaluated) < 2 or any(r.status == "scheduled" for r in rows):
            return None
        return (rows,)  # (no firing at all is an answer too)

    # Evaluated one at a time, the checkout waits and the order cancels it; evaluated in
    # one batch (the worker was busy), the order is already there and nothing waits.
    (firings,) = support.wait_for(decided, timeout=60)
    assert [f.status for f in firings] in ([], ["cancelled"]), stack.tail()
    events = {
        e.name: e
        for e in stack.query(
            "SELECT name, occurred_at, evaluated_at FROM events "
            "WHERE properties ->> 'checkout_id' = 'tok-a2'"
        )
    }
    checkout, order = events["Checkout Started"], events["Order Completed"]
    assert checkout.occurred_at <= order.occurred_at
    if firings:
        (firing,) = firings
        assert "Order Completed for the same checkout_id" in firing.reason, firing.reason
    else:
        # Nothing waited only if the order was inside the checkout's window when the
        # checkout was evaluated (a checkout evaluated before the order came must wait).
        assert order.occurred_at <= checkout.evaluated_at, (order, checkout)
    # Both events evaluated and nothing waiting: no action exists, and none can come.
    assert _to_sink(stack, "checkout", "tok-a2") == []
    assert [m for m in stack.mail if m["To"] == "a2@shop.example"] == []
    assert (
        stack.query(
            "SELECT a.id FROM actions AS a JOIN rule_firings AS f ON f.id = a.firing_id "
            "JOIN events AS e ON e.id = f.event_id WHERE e.properties ->> 'checkout_id' = 'tok-a2'"
        )
        == []
    )


def test_a_receiver_failing_three_times_gets_it_once_on_the_fourth(stack: Stack) -> None:
    stack.sink.script = [500, 500, 500]
    _view(stack, "f3", "p-f3")
    action = support.wait_for(
        lambda: (a := _action(stack, "product", "p-f3")) and a.status == "sent" and a, timeout=60
    )
    assert [r.status for r in _to_sink(stack, "product", "p-f3")] == [500, 500, 500, 200]
    assert len({r.webhook_id for r in _to_sink(stack, "product", "p-f3")}) == 1
    assert _attempts(stack, action.id) == ["retry", "retry", "retry", "sent"]


def test_a_client_error_is_dead_and_not_retried(stack: Stack) -> None:
    stack.sink.script = [400]
    _view(stack, "f4", "p-f4")
    action = support.wait_for(
        lambda: (a := _action(stack, "product", "p-f4")) and a.status == "dead" and a, timeout=60
    )
    assert action.last_error == "HTTP 400"
    assert action.attempts == 1  # dead after one attempt: it is never handed out again
    assert len(_to_sink(stack, "product", "p-f4")) == 1
    assert _attempts(stack, action.id) == ["dead"]


def test_a_worker_killed_mid_delivery_still_delivers_once(stack: Stack) -> None:
    stack.sink.delay_s = 3  # the receiver is slow: the worker is killed while it waits
    _view(stack, "f5", "p-f5")
    support.wait_for(
        lambda: (a := _action(stack, "product", "p-f5")) and a.status == "sending" and a,
        timeout=60,
        interval=0.05,
    )
    stack.kill("worker")
    stack.sink.delay_s = 0
    stack.start("worker")
    action = support.wait_for(
        lambda: (a := _action(stack, "product", "p-f5")) and a.status == "sent" and a, timeout=90
    )
    received = _to_sink(stack, "product", "p-f5")
    assert len({r.webhook_id for r in received if r.status == 200}) == 1  # one effect
    assert _attempts(stack, action.id) == ["lost", "sent"]


def test_events_while_the_broker_is_unreachable_are_dispatched_once_it_is_back(
    stack: Stack,
) -> None:
    if stack.proxy is None:
        pytest.skip("needs RabbitMQ on 127.0.0.1:5672 (the PostgreSQL broker is the database)")
    api_log = stack.logs / "api.log"
    failed_before = api_log.read_text().count('"nudge_failed"')
    stack.proxy.stop()
    try:
        for i in range(5):
            _view(stack, "f6", f"p-f6-{i}")
        # The API could not reach the broker (its nudge after storing failed): the
        # outage is real, and nothing has been delivered.
        support.wait_for(
            lambda: api_log.read_text().count('"nudge_failed"') > failed_before or None,
            timeout=60,
        )
        assert [r for i in range(5) for r in _to_sink(stack, "product", f"p-f6-{i}")] == []
    finally:
        stack.proxy.start()
    for i in range(5):
        action = support.wait_for(
            lambda i=i: (a := _action(stack, "product", f"p-f6-{i}")) and a.status == "sent" and a,
            timeout=120,
        )
        # Sent after one attempt, however often it was handed to the broker: once.
        assert action.attempts == 1, stack.tail()
        assert len(_to_sink(stack, "product", f"p-f6-{i}")) == 1
