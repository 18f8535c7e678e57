"""What the service would have stored for a synthetic store's traffic had it gone through
the intake (the Segment endpoints or the events API, as history mode sends it) and
identity resolution: the events, resolved and evaluated; one profile per customer with
the traits and computed traits resolution keeps (orders count, first and last order,
last seen, spend per currency, product views); its identities, made by the service's
own `keys_for` (emails and phones hashed and encrypted); its orders. Rows come in
PostgreSQL's COPY text format, for bulk mode (`bulk.py`).

A customer with no act in the span gets no row, as no event would have made one. The
owner of an email or phone that two customers give is decided when the rows are
written (`bulk.py`): the first keeps it, the others record a refused merge, as
resolution does for a contact shared by two user ids."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO
from typing import Any

import orjson

from service.events.canonical import Identifiers
from service.events.identity import CONTACT_KINDS, IdentityKey, keys_for
from service.profiles.effects import category_of, money, order_categories, order_discounted
from service.profiles.effects_repository import MAX_CATEGORIES
from service.synthetic import behaviour, population
from service.synthetic.behaviour import Act
from service.synthetic.catalogue import Catalogue
from service.synthetic.deliveries import segment_event
from service.synthetic.personas import PersonasFile
from service.synthetic.truth import Truth
from service.vocabulary import EventName

SOURCE = "synthetic"  # events.source, orders.source: bulk-loaded, never received
NAMESPACE = uuid.UUID("0d7e8a5c-3f4b-4e3a-9c1e-6b2f0a9d4c17")
# As resolution records a contact that names a profile holding another user id.
REFUSED = "the event names another id of the same kind"

# Columns of each table, in COPY order; the others keep their defaults (ids from their
# sequences, created_at and received_at the load's transaction time).
COLUMNS = {
    "customers": "id, traits, trait_times, orders_count, first_order_at, last_order_at, "
    "last_seen_at, discount_orders, categories_bought, categories_viewed",
    "identities": "customer_id, kind, value, encrypted",
    "events": "source, message_id, customer_id, type, name, occurred_at, properties, context, "
    "evaluated_at",
    "orders": "source, order_id, customer_id, status, currency, total, refunded, "
    "refunded_cumulative, placed_at, status_at, discounted, categories",
    "customer_spend": "customer_id, currency, orders_count, total_spent",
    "product_views": "customer_id, product_id, views, last_viewed_at",
    "profile_merges": "winner_id, loser_id, outcome, reason, source, message_id",
}
TABLES = tuple(COLUMNS)  # in an order the foreign keys allow
NULL = "\\N"


def customer_id(seed: int, index: int) -> uuid.UUID:
    """Customer `index`'s profile id: the same for the same seed, in every load."""
    return uuid.uuid5(NAMESPACE, f"{seed}/{index}")


def _json(value: Any) -> str:
    # COPY text format: a backslash is the escape character (JSON has no raw tab or newline).
    return orjson.dumps(value).decode().replace("\\", "\\\\")


def _time(at: datetime | None) -> str:
    return at.isoformat() if at is not None else NULL


def _array(values: list[str] | None) -> str:
    """A text[] in COPY text format: each element double-quoted (a backslash or a quote
    in it escaped for the array), then escaped for COPY as a whole."""
    if values is None:
        return NULL
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    literal = "{" + ",".join(quoted) + "}"
    for raw, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        literal = literal.replace(raw, escaped)
    return literal


def identity_line(customer: str, key: IdentityKey) -> str:
    secret = "\\\\x" + key.encrypted.hex() if key.encrypted else NULL
    return f"{customer}\t{key.kind}\t{key.value}\t{secret}\n"


def refusal_line(*, winner: str, loser: str, message_id: str) -> str:
    return f"{winner}\t{loser}\trefused\t{REFUSED}\t{SOURCE}\t{message_id}\n"


@dataclass(frozen=True)
class Contact:
    """An email or phone a customer gave, with the first identify that gave it."""

    customer: str
    key: IdentityKey
    message_id: str


@dataclass
class Rows:
    """A range of customers' rows: COPY text per table, rows per table, and the
    contacts whose owner is decided when they are written."""

    drawn: int = 0
    text: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TABLES})
    contacts: list[Contact] = field(default_factory=list)
    truth: bytes = b""  # the ground truth's customer lines
    personas: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # the generating process's CPU time for these rows

    def counts(self) -> dict[str, int]:
        return {table: len(lines) for table, lines in self.text.items()}

    def data(self, table: str) -> bytes:
        return "".join(self.text[table]).encode()


class _TruthLines(Truth):
    """The ground truth's customer lines, kept in memory (one range of customers)."""

    def __init__(self) -> None:
        self._file = BytesIO()
        self.personas = Counter()

    def value(self) -> bytes:
        assert isinstance(self._file, BytesIO)
        return self._file.getvalue()


@dataclass(frozen=True)
class Generator:
    model: PersonasFile
    catalogue: Catalogue
    seed: int
    start: datetime
    end: datetime
    evaluated_at: datetime

    def rows(self, first: int, stop: int) -> Rows:
        """The rows of customers [first, stop); events in time order across them."""
        began = time.process_time()
        out, truth = Rows(drawn=stop - first), _TruthLines()
        events: list[tuple[datetime, str]] = []
        for index in range(first, stop):
            customer = population.draw(
                self.model, seed=self.seed, index=index, start=self.start, end=self.end
            )
            truth.customer(customer)
            acts = behaviour.acts(
                self.model, self.catalogue, customer, start=self.start, end=self.end
            )
            if acts:
                self._customer(out, events, customer, acts)
        events.sort(key=lambda pair: pair[0])  # stable: customers in index order at a tie
        out.text["events"] = [line for _, line in events]
        out.truth, out.personas = truth.value(), truth.personas
        out.cpu_seconds = time.process_time() - began
        return out

    def _customer(
        self,
        out: Rows,
        events: list[tuple[datetime, str]],
        customer: population.Customer,
        acts: list[Act],
    ) -> None:
        cid = str(customer_id(self.seed, customer.index))
        evaluated = self.evaluated_at.isoformat()
        context = _json({"locale": customer.locale, "timezone": customer.timezone})
        traits: dict[str, Any] = {}
        times: dict[str, str] = {}
        orders: dict[str, dict[str, Any]] = {}
        views: dict[str, tuple[int, datetime]] = {}
        viewed: set[str] = set()
        known, identify = False, None
        for act in acts:  # in time order, as resolution applies them
            event = segment_event(act, currency=self.model.currency)
            kind, name, properties = _stored(event)
            known = known or "userId" in event
            at = act.at
            events.append(
                (
                    at,
                    f"{SOURCE}\t{event['messageId']}\t{cid}\t{kind}\t{name or NULL}\t"
                    f"{at.isoformat()}\t{_json(properties)}\t{context}\t{evaluated}\n",
                )
            )
            if kind == "identify":
                identify = identify or event["messageId"]
                stamp = at.astimezone(UTC).isoformat()
                for trait, value in properties.items():
                    if stamp >= times.get(trait, ""):
                        traits[trait], times[trait] = value, stamp
            elif name == EventName.PRODUCT_VIEWED:
                if product := properties.get("product_id"):
                    count, _ = views.get(str(product), (0, at))
                    views[str(product)] = (count + 1, at)
                if category := category_of(properties.get("category")):
                    viewed.add(category)
            elif name in (EventName.ORDER_COMPLETED, EventName.ORDER_REFUNDED) and properties.get(
                "order_id"
            ):
                _order(orders, name, properties, at)
        last_seen = max(act.at for act in acts)
        self._identities(out, cid, customer, known=known, identify=identify, orders=orders)
        placed = [o["placed_at"] for o in orders.values() if o["placed_at"] is not None]
        bought = sorted({c for o in orders.values() for c in o["categories"] or ()})
        out.text["customers"].append(
            f"{cid}\t{_json(traits)}\t{_json(times)}\t{len(orders)}\t"
            f"{_time(min(placed, default=None))}\t{_time(max(placed, default=None))}\t"
            f"{_time(last_seen)}\t{sum(1 for o in orders.values() if o['discounted'])}\t"
            f"{_array(bought[:MAX_CATEGORIES])}\t{_array(sorted(viewed)[:MAX_CATEGORIES])}\n"
        )
        spend: dict[str, list[Any]] = {}
        for order_id, o in sorted(orders.items()):
            out.text["orders"].append(
                f"{SOURCE}\t{order_id}\t{cid}\t{o['status']}\t{o['currency'] or NULL}\t"
                f"{NULL if o['total'] is None else o['total']}\t{o['refunded']}\t0\t"
                f"{_time(o['placed_at'])}\t{_time(o['status_at'])}\t"
                f"{NULL if o['discounted'] is None else 't' if o['discounted'] else 'f'}\t"
                f"{_array(o['categories'])}\n"
            )
            if o["currency"]:
                totals = spend.setdefault(o["currency"], [0, Decimal(0)])
                totals[0] += 1
                totals[1] += (o["total"] or Decimal(0)) - o["refunded"]
        for currency, (count, spent) in sorted(spend.items()):
            out.text["customer_spend"].append(f"{cid}\t{currency}\t{count}\t{spent}\n")
        for product, (count, at) in sorted(views.items()):
            out.text["product_views"].append(f"{cid}\t{product}\t{count}\t{at.isoformat()}\n")

    def _identities(
        self,
        out: Rows,
        cid: str,
        customer: population.Customer,
        *,
        known: bool,
        identify: str | None,
        orders: dict[str, dict[str, Any]],
    ) -> None:
        """The keys resolution attaches: every key some event carried, made by the
        service's `keys_for`. Emails and phones go to `contacts`."""
        ids = Identifiers(
            user_id=customer.user_id if known else None,
            anonymous_id=customer.anonymous_id,
            email=customer.email if identify else None,
            phone=customer.phone if identify else None,
        )
        keys = keys_for(ids, source=SOURCE)
        for order_id in sorted(orders):
            keys += keys_for(Identifiers(), source=SOURCE, order_id=order_id)
        for key in keys:
            if key.kind in CONTACT_KINDS:
                assert identify is not None
                out.contacts.append(Contact(cid, key, identify))
            else:
                out.text["identities"].append(identity_line(cid, key))


def _stored(event: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(type, name, properties) as the intake stores a Segment message
    (`events.api_events.to_canonical`, `events.intake.event_rows`): an identify's properties are its
    traits without email and phone (those are identity keys only), a track's name is
    its `event`, a page's its `name`; an `email` property is an identity key only."""
    kind = event["type"]
    if kind == "identify":
        traits = event.get("traits", {})
        return kind, None, {k: v for k, v in traits.items() if k not in ("email", "phone")}
    properties = {k: v for k, v in event.get("properties", {}).items() if k != "email"}
    return kind, event.get("event") if kind == "track" else event.get("name"), properties


def _order(
    orders: dict[str, dict[str, Any]], name: str, props: dict[str, Any], at: datetime
) -> None:
    """An order event applied as `profiles.effects_repository.upsert_orders` does: the newest
    status wins, a refund's amount adds to `refunded` and keeps the order's total, its
    discount and its categories."""
    amount = money(props.get("total", props.get("revenue")))
    currency = str(props["currency"]).upper()[:3] if props.get("currency") else None
    refund = name == EventName.ORDER_REFUNDED
    row = orders.setdefault(
        str(props["order_id"]),
        {
            "status": None,
            "status_at": at,
            "currency": None,
            "total": None,
            "placed_at": None,
            "refunded": Decimal(0),
            "discounted": None,
            "categories": None,
        },
    )
    newer = at >= row["status_at"]
    if not refund:
        for key, value in (
            ("discounted", order_discounted(props)),
            ("categories", order_categories(props)),
        ):
            if value is not None and (newer or row[key] is None):
                row[key] = value
    if newer or row["status"] is None:
        row["status"] = "refunded" if refund else "completed"
    if not refund and amount is not None and (newer or row["total"] is None):
        row["total"] = amount
    if currency is not None and (newer or row["currency"] is None):
        row["currency"] = currency
    if not refund and row["placed_at"] is None:
        row["placed_at"] = at
    if refund:
        row["refunded"] += amount or Decimal(0)
    row["status_at"] = max(row["status_at"], at)
