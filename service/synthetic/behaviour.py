"""A customer's traffic over a span: sessions on the store's daily and weekly rhythm,
product views by category interest and popularity, carts, checkouts, orders with the
persona's order values and discounts, refunds, and the anonymous sessions before a
customer signs in. Pure and deterministic: the same seed gives the same events.

Events come out as `Act`s, what the customer did; `senders` turns them into the
deliveries a storefront and a platform would make."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from service.synthetic.catalogue import Catalogue, Product
from service.synthetic.personas import Persona, PersonasFile
from service.synthetic.population import Customer, rng_for

CENT = Decimal("0.01")
DISCOUNT = Decimal("0.10")  # a discount code takes 10% off


class Kind(StrEnum):
    PAGE = "page"  # the home page: where a storefront asks for its hero placement
    VIEW = "view"  # a product page
    ADD = "add"  # a product put in the cart
    SIGN_IN = "sign_in"  # identify: the anonymous browser becomes the customer
    CHECKOUT = "checkout"
    ORDER = "order"
    REFUND = "refund"


@dataclass(frozen=True)
class Line:
    product: Product
    quantity: int

    @property
    def value(self) -> Decimal:
        return self.product.price * self.quantity


@dataclass(frozen=True)
class Act:
    at: datetime
    customer: Customer
    kind: Kind
    session: int  # the customer's session number
    known: bool  # signed in (else anonymous: only the browser's id)
    product: Product | None = None
    cart: str | None = None  # cart id (the platform's cart token)
    checkout: str | None = None
    order: str | None = None
    lines: tuple[Line, ...] = ()
    discount: Decimal = Decimal(0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.value for line in self.lines), Decimal(0))

    @property
    def total(self) -> Decimal:
        return (self.subtotal - self.discount).quantize(CENT)


def session_starts(
    model: PersonasFile, customer: Customer, persona: Persona, *, start: datetime, end: datetime
) -> list[datetime]:
    """When the customer's sessions begin, in [start, end): a Poisson process whose rate
    is their visit rate shaped by the store's rhythm at their local hour and weekday
    (drawn by thinning, so any window, an hour or a year, gets its due share)."""
    begin, finish = max(start, customer.first_visit), min(end, customer.last_visit)
    if finish <= begin:
        return []
    rng = rng_for(customer.seed, customer.index, 1)
    hours = np.array(model.rhythm.hours)
    days = np.array(model.rhythm.weekdays)
    weekly = np.outer(days, hours)  # [weekday, hour]
    weekly = weekly / weekly.mean()
    peak = float(weekly.max())
    per_second = persona.visits_per_week * customer.activity / (7 * 86400)
    seconds = (finish - begin).total_seconds()
    count = int(rng.poisson(per_second * peak * seconds))
    offsets = np.sort(rng.uniform(0, seconds, count))
    # Local time at `begin` (a daylight-saving change inside the window is ignored).
    shift = ZoneInfo(customer.timezone).utcoffset(begin.replace(tzinfo=None)) or timedelta(0)
    local = begin.timestamp() + shift.total_seconds() + offsets
    hour = (local // 3600 % 24).astype(int)
    weekday = ((local // 86400 + 3) % 7).astype(int)  # 1970-01-01 was a Thursday
    kept = rng.random(count) * peak < weekly[weekday, hour]
    starts = [begin + timedelta(seconds=float(o)) for o in offsets[kept]]
    if not starts and start <= customer.first_visit < end:
        starts = [customer.first_visit]  # a customer who joins in the window visits once
    return [at.replace(microsecond=0) for at in starts]


def acts(
    model: PersonasFile,
    catalogue: Catalogue,
    customer: Customer,
    *,
    start: datetime,
    end: datetime,
    planned: bool = False,
) -> list[Act]:
    """Everything the customer does in [start, end), in time order. With `planned`,
    the acts of buying a cart come whether or not the cart is bought, each with the
    draw that decides it (`bought`, `Act.buys`): live mode decides after the planted
    effects had their say."""
    persona = model.personas[customer.persona]
    rng = rng_for(customer.seed, customer.index, 2)
    out: list[Act] = []
    for number, began in enumerate(session_starts(model, customer, persona, start=start, end=end)):
        out.extend(
            _session(model, catalogue, customer, persona, rng, number=number, began=began, end=end)
        )
    out.sort(key=lambda a: a.at)
    return out if planned else [a for a in out if bought(a)]


def bought(act: Act, *, chance: float | None = None) -> bool:
    """Whether an act happens: always, unless it belongs to buying a cart, which happens
    when the session's draw falls below the chance (the persona's, or `chance`)."""
    if "draw" not in act.extra:
        return True
    return bool(act.extra["draw"] < (act.extra["chance"] if chance is None else chance))


def _session(
    model: PersonasFile,
    catalogue: Catalogue,
    customer: Customer,
    persona: Persona,
    rng: np.random.Generator,
    *,
    number: int,
    began: datetime,
    end: datetime,
) -> list[Act]:
    known = number >= customer.anonymous_sessions
    at = began
    out: list[Act] = []

    def act(kind: Kind, **values: Any) -> Act:
        made = Act(at=at, customer=customer, kind=kind, session=number, known=known, **values)
        out.append(made)
        return made

    if known and number == customer.anonymous_sessions:
        act(Kind.SIGN_IN)  # signs in (or up): the anonymous sessions join the profile
    act(Kind.PAGE)
    cart_id = f"cart-{customer.index}-{number}"
    cart: list[Line] = []
    for _ in range(1 + int(rng.poisson(max(persona.views_per_session - 1, 0)))):
        at += timedelta(seconds=int(rng.integers(15, 120)))
        category = customer.pick_category(rng)
        product = catalogue.pick(rng, category)
        act(Kind.VIEW, product=product)
        if rng.random() < persona.add_to_cart * _affordable(product, persona):
            at += timedelta(seconds=int(rng.integers(5, 60)))
            cart.append(Line(product, 1))
            act(Kind.ADD, product=product, cart=cart_id)
    if not cart:
        return [a for a in out if a.at < end]
    # Whether the cart is bought is drawn now; the acts of buying are made either way
    # and carry the draw, so that live mode can apply a planted effect (content shown
    # in this session makes buying likelier) before it decides. `acts` keeps them only
    # when the draw says so.
    bought = {"draw": float(rng.random()), "chance": 1.0 - persona.cart_abandonment}
    at += timedelta(seconds=int(rng.integers(30, 300)))
    if not known:
        known = True
        act(Kind.SIGN_IN, extra=bought)
    lines = _basket(rng, catalogue, customer, persona, cart)
    subtotal = sum((line.value for line in lines), Decimal(0))
    discount = (
        (subtotal * DISCOUNT).quantize(CENT) if rng.random() < persona.discount_use else Decimal(0)
    )
    checkout_id = f"chk{customer.index:07d}x{number:04d}"
    act(
        Kind.CHECKOUT,
        cart=cart_id,
        checkout=checkout_id,
        lines=tuple(lines),
        discount=discount,
        extra=bought,
    )
    at += timedelta(seconds=int(rng.integers(60, 600)))
    order_id = str(5_000_000_000 + customer.index * 10_000 + number)
    order = act(
        Kind.ORDER,
        cart=cart_id,
        checkout=checkout_id,
        order=order_id,
        lines=tuple(lines),
        discount=discount,
        extra=bought,
    )
    if rng.random() < persona.refund_rate:
        at += timedelta(days=float(rng.uniform(1, 10)))
        act(Kind.REFUND, order=order_id, lines=order.lines, discount=discount, extra=bought)
    return [a for a in out if a.at < end]


def _affordable(product: Product, persona: Persona) -> float:
    """How much of the add-to-cart chance a product gets: all of it within the persona's
    budget (twice their median order), proportionally less above."""
    budget = 2 * persona.order_value.median
    return min(1.0, budget / float(product.price))


def _basket(
    rng: np.random.Generator,
    catalogue: Catalogue,
    customer: Customer,
    persona: Persona,
    cart: list[Line],
) -> list[Line]:
    """The order's lines, towards an order value drawn from the persona's: the cart's
    products that fit, cheapest first (customers put back what breaks the budget), then
    more of what they like at a price that fits, then more of the cheapest line."""
    value = persona.order_value
    target = Decimal(f"{rng.lognormal(np.log(value.median), value.spread):.2f}")
    ceiling = target * Decimal("1.1")
    lines: dict[str, Line] = {}
    total = Decimal(0)
    for line in sorted(cart, key=lambda held: held.product.price):
        if total + line.value <= ceiling:
            lines[line.product.id] = line
            total += line.value
    if not lines:  # nothing in the cart fits: trade down within the cheapest's category
        first = min(cart, key=lambda held: held.product.price).product
        for _ in range(20):
            cheaper = catalogue.pick(rng, first.category)
            if cheaper.price <= ceiling:
                first = cheaper
                break
        lines[first.id] = Line(first, 1)
        total = first.price
    for _ in range(30):
        if total >= target * Decimal("0.9"):
            break
        product = catalogue.pick(rng, customer.pick_category(rng))
        if total + product.price <= ceiling:
            held = lines.get(product.id)
            lines[product.id] = Line(product, held.quantity + 1 if held else 1)
            total += product.price
    cheapest = min(lines.values(), key=lambda held: held.product.price)
    while total + cheapest.product.price <= ceiling and total < target * Decimal("0.9"):
        cheapest = Line(cheapest.product, cheapest.quantity + 1)
        lines[cheapest.product.id] = cheapest
        total += cheapest.product.price
    return list(lines.values())
