"""What every platform mapping shares: a typed view of the JSON body that names the
dotted path of a missing or malformed field, decimal money, timestamps, and the table
runner. Pure functions: no database, no HTTP.

Money is read with `Decimal(str(value))` and emitted as a fixed-point decimal string
("29.35"); sums are done in `Decimal`, never in floats. Every event's message id is
`f"{delivery_id}:{name or type}"`: a redelivery maps to the same ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from service.events.canonical import (
    MONEY_FIELDS,
    CanonicalEvent,
    Identifiers,
    IgnoredTopic,
    MappingError,
)
from service.events.checks import check_time, text_problem
from service.vocabulary import EventType

# Plain decimal notation only: `Decimal()` would also take "NaN", "Infinity", "1_000"
# and surrounding spaces, none of which is a price.
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Money is below 10**12 in size (a trillion in any currency): orders keep amounts as
# NUMERIC(18, 4), below 10**14, so a customer's spend adds up to a hundred such orders
# before it would overflow. The bounds also keep formatting cheap ("1e999999999" would
# print a gigabyte) and sums exact under `SUM_PRECISION`; real amounts are far inside
# them (WooCommerce's float prices carry up to 17 significant digits).
MAX_AMOUNT = 10**12
_MAX_ADJUSTED_EXPONENT = 11  # below 10**12
_MIN_EXPONENT = -28
SUM_PRECISION = 100


@dataclass(frozen=True)
class Node:
    """A JSON object and its dotted path from the payload root, so that every
    `MappingError` names the field it is about."""

    data: Mapping[str, Any]
    path: str = ""

    def field(self, key: str | int) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def child(self, key: str) -> Node:
        node = self.opt_child(key)
        if node is None:
            raise MappingError("missing object", field=self.field(key))
        return node

    def opt_child(self, key: str) -> Node | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise MappingError("expected an object", field=self.field(key))
        return Node(value, self.field(key))

    def child_or_empty(self, key: str) -> Node:
        """An optional object, as an empty one when absent: its fields read as None."""
        return self.opt_child(key) or Node({}, self.field(key))

    def children(self, key: str) -> list[Node]:
        """A list of objects; absent or null is an empty list."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise MappingError("expected a list", field=self.field(key))
        nodes = []
        for index, item in enumerate(value):
            path = f"{self.field(key)}.{index}"
            if not isinstance(item, Mapping):
                raise MappingError("expected an object", field=path)
            nodes.append(Node(item, path))
        return nodes

    def id(self, key: str) -> str:
        value = self.opt_id(key)
        if value is None:
            raise MappingError("missing id", field=self.field(key))
        return value

    def opt_id(self, key: str) -> str | None:
        """An id sent as a string or an integer, returned as a string."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise MappingError("expected a string or integer id", field=self.field(key))
        return text_problem(value, field=self.field(key)) if isinstance(value, str) else str(value)

    def text(self, key: str) -> str | None:
        """A string; absent, null and empty are all None."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MappingError("expected a string", field=self.field(key))
        return text_problem(value, field=self.field(key)) or None

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise MappingError("expected an integer", field=self.field(key))
        return value

    def opt_bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise MappingError("expected true or false", field=self.field(key))
        return value

    def amount(self, key: str) -> Decimal:
        value = self.opt_amount(key)
        if value is None:
            raise MappingError("missing amount", field=self.field(key))
        return value

    def opt_amount(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        return None if value is None else parse_decimal(value, field=self.field(key))

    def money(self, key: str) -> str:
        return money_text(self.amount(key))

    def opt_money(self, key: str) -> str | None:
        value = self.opt_amount(key)
        return None if value is None else money_text(value)

    def iso_time(self, *keys: str, naive_is_utc: bool = False, when: bool = True) -> datetime:
        """The first of `keys` present, as an aware UTC datetime. By default it is when
        the event happened, so it must lie in the accepted window (`checks.check_time`);
        `when=False` reads a time that is only a value (a customer's `created_at` trait)."""
        for key in keys:
            if self.has(key):
                moment = parse_iso(self.data[key], self.field(key), naive_is_utc=naive_is_utc)
                return check_time(moment, field=self.field(key)) if when else moment
        raise MappingError("missing timestamp", field=self.field(keys[0]))

    def unix_time(self, key: str, *, when: bool = True) -> datetime:
        """As `iso_time`, from Unix seconds."""
        value = self.data.get(key)
        if value is None:
            raise MappingError("missing timestamp", field=self.field(key))
        moment = parse_unix(value, self.field(key))
        return check_time(moment, field=self.field(key)) if when else moment


def parse_decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MappingError("expected a decimal number", field=field)
    text = str(value)  # a float's shortest repr: 89.99 reads as exactly "89.99"
    if not _DECIMAL_TEXT.fullmatch(text):
        raise MappingError("expected a decimal number", field=field)
    try:
        number = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid text
        raise MappingError("expected a decimal number", field=field) from exc
    return bounded(number, field=field)


def bounded(number: Decimal, *, field: str) -> Decimal:
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the pattern admits no NaN or Infinity
    if number.adjusted() > _MAX_ADJUSTED_EXPONENT or exponent < _MIN_EXPONENT:
        raise MappingError(
            "amount out of range: money is below 10^12 in size, to 28 decimals at most",
            field=field,
        )
    return number


def check_amounts(properties: Mapping[str, Any], *, path: str = "properties") -> None:
    """Money fields (`MONEY_FIELDS`, on the event and on each of its `products`) hold a
    finite decimal within the bounds, as a JSON number or decimal text; absent or null
    is fine. For senders whose values are kept as sent (the events API)."""
    _check_money(properties, path)
    products = properties.get("products")
    if isinstance(products, list):
        for index, product in enumerate(products):
            if isinstance(product, Mapping):
                _check_money(product, f"{path}.products.{index}")


def _check_money(values: Mapping[str, Any], path: str) -> None:
    for key in MONEY_FIELDS:
        value = values.get(key)
        if value is not None:
            parse_decimal(value, field=f"{path}.{key}")


def money_text(number: Decimal) -> str:
    # Fixed point keeps the sender's scale ("10.00" stays "10.00") and never prints an
    # exponent; `copy_abs` turns "-0.00" into "0.00".
    return format(number.copy_abs() if number.is_zero() else number, "f")


def decimal_sum(numbers: Iterable[Decimal]) -> Decimal:
    with localcontext(prec=SUM_PRECISION):
        return sum(numbers, Decimal(0))


def parse_iso(value: object, field: str, *, naive_is_utc: bool) -> datetime:
    if not isinstance(value, str):
        raise MappingError("expected an ISO 8601 timestamp", field=field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MappingError("expected an ISO 8601 timestamp", field=field) from exc
    if moment.tzinfo is None:
        if not naive_is_utc:
            raise MappingError("timestamp has no UTC offset", field=field)
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise MappingError("timestamp out of range", field=field) from exc


def parse_unix(value: object, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError("expected a Unix timestamp in seconds", field=field)
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MappingError("timestamp out of range", field=field) from exc


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop absent values: an event states only what the payload said."""
    return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Payload:
    """A webhook body as a platform maps it: where it came from, its topic and id."""

    source: str
    topic: str
    delivery_id: str
    body: Node

    def event(
        self,
        *,
        type: EventType = EventType.TRACK,
        name: str | None,
        occurred_at: datetime,
        identifiers: Identifiers,
        properties: Mapping[str, Any] | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> CanonicalEvent:
        return CanonicalEvent(
            source=self.source,
            message_id=f"{self.delivery_id}:{name or type}",
            type=type,
            name=name,
            occurred_at=occurred_at,
            identifiers=identifiers,
            properties=dict(properties or {}),
            traits=dict(traits or {}),
            context=dict(context or {}),
        )


Mapper = Callable[[Payload], list[CanonicalEvent]]


def ignored(delivery: Payload) -> list[CanonicalEvent]:
    raise IgnoredTopic(delivery.topic)


def root(payload: object) -> Node:
    # The signature says dict, but the body is whatever JSON the sender posted.
    if not isinstance(payload, Mapping):
        raise MappingError("payload is not a JSON object")
    return Node(payload)


def run_table(
    table: Mapping[str, Mapper], *, source: str, topic: str, payload: object, delivery_id: str
) -> list[CanonicalEvent]:
    mapper = table.get(topic, ignored)
    return mapper(Payload(source, topic, delivery_id, root(payload)))
