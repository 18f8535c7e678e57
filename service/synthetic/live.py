"""Live mode: the store's customers go on shopping now, through the real intake
(storefront events to the Segment endpoints or the events API, checkouts and orders as
the platform's signed webhooks), and the storefront asks for decisions where a page
would: the homepage hero on each home page, the cart drawer on each add to cart.

Planted effects act here, through what the decisions really showed: content named by
an effect lifts the chance that the session's cart is bought; an offer named by one
brings back a share of the carts that would have been left. Each exposure and each
cart's outcome goes to the ground truth.

Store time runs `speed` times faster than the clock; each delivery is stamped with the
moment it is sent. With `rate`, deliveries go out at that many a second instead, and
with neither, as fast as the service answers (bounded by the sender's concurrency)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.synthetic import behaviour, population
from service.synthetic.behaviour import Act, Kind
from service.synthetic.catalogue import Catalogue
from service.synthetic.deliveries import (
    platform_handles,
    segment_event,
    storefront_channel,
    webhook,
)
from service.synthetic.personas import Effect, PersonasFile
from service.synthetic.sender import Sender
from service.synthetic.truth import Truth

HERO, CART = "homepage_hero", "cart_drawer"


@dataclass
class Seen:
    """What one session was shown that a planted effect names."""

    lift: float = 0.0
    recovers: float = 0.0
    effects: list[str] = field(default_factory=list)
    decided: bool = False

    def chance(self, base: float) -> float:
        lifted = min(1.0, base * (1.0 + self.lift))
        return lifted + (1.0 - lifted) * self.recovers


@dataclass
class Live:
    model: PersonasFile
    catalogue: Catalogue
    sender: Sender
    truth: Truth | None
    shop: str = "demo"
    sessions: dict[tuple[int, int], Seen] = field(default_factory=dict)

    def _effects(self, placement: str, shown: dict[str, Any]) -> list[Effect]:
        content = shown.get("content", {}).get("id")
        offers = {o.get("offer") for o in shown.get("offers", [])}
        return [
            e
            for e in self.model.effects
            if e.placement == placement
            and ((e.content is not None and e.content == content) or e.offer in offers)
        ]

    async def _decide(self, act: Act, placement: str, context: dict[str, Any]) -> None:
        c = act.customer
        who = {"user_id": c.user_id} if act.known else {"anonymous_id": c.anonymous_id}
        answer = await self.sender.decide(
            {**who, "placements": [placement], "context": {**context, "locale": c.locale}}
        )
        shown = (answer or {}).get("placements", {}).get(placement, {})
        seen = self.sessions.setdefault((c.index, act.session), Seen())
        for effect in self._effects(placement, shown):
            seen.lift += effect.conversion_lift
            seen.recovers = max(seen.recovers, effect.recovers)
            seen.effects.append(effect.name)
        if self.truth is not None:
            self.truth.exposure(
                user_id=c.user_id,
                session=act.session,
                placement=placement,
                content=shown.get("content", {}).get("id"),
                offers=[o.get("offer") for o in shown.get("offers", [])],
                effects=[e.name for e in self._effects(placement, shown)],
                degraded=bool((answer or {}).get("degraded", answer is None)),
            )

    async def handle(self, act: Act) -> None:
        c = act.customer
        seen = self.sessions.setdefault((c.index, act.session), Seen())
        if "draw" in act.extra:  # part of buying the session's cart
            chance = seen.chance(float(act.extra["chance"]))
            happens = behaviour.bought(act, chance=chance)
            if act.kind == Kind.CHECKOUT and self.truth is not None:
                self.truth.exposure(
                    user_id=c.user_id,
                    session=act.session,
                    outcome="bought" if happens else "left",
                    chance=round(chance, 4),
                    effects=seen.effects,
                )
            if not happens:
                return
        now = datetime.now(UTC).replace(microsecond=0)
        secrets = self.sender.target.secrets
        if platform_handles(act, live=True) and c.platform in secrets:
            hook = webhook(
                act, currency=self.model.currency, secrets=secrets, shop=self.shop, sent_at=now
            )
            await self.sender.webhook(hook)
        else:
            event = segment_event(act, currency=self.model.currency, sent_at=now)
            await self.sender.events(storefront_channel(c), [event])
        if act.kind == Kind.PAGE:
            await self._decide(act, HERO, {"page": {"path": "/", "type": "home"}})
        elif act.kind == Kind.ADD and act.product is not None:
            context = {"cart": {"id": act.cart, "value": float(act.product.price), "items": 1}}
            await self._decide(act, CART, context)


async def run(
    live: Live,
    *,
    seed: int,
    customers: range,
    start: datetime,
    now: datetime,
    end: datetime,
    speed: float | None,
    rate: float | None,
    stop: asyncio.Event,
    progress: Callable[[int], None] = lambda n: None,
    record_customers: bool = False,
) -> int:
    """Send the acts of [now, end) as they come due; returns how many were handled."""
    model = live.model
    acts: list[Act] = []
    for i in customers:
        customer = population.draw(model, seed=seed, index=i, start=start, end=end)
        if record_customers and live.truth is not None:
            live.truth.customer(customer)
        acts.extend(
            behaviour.acts(model, live.catalogue, customer, start=now, end=end, planned=True)
        )
    acts.sort(key=lambda a: (a.at, a.customer.index))
    began = time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    for n, act in enumerate(acts):
        if stop.is_set():
            break
        if rate:
            due = began + n / rate
        elif speed:
            due = began + (act.at - now).total_seconds() / speed
        else:
            due = 0.0
        wait = due - time.monotonic()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                break
            except TimeoutError:
                pass
        task = asyncio.create_task(live.handle(act))
        pending.add(task)
        task.add_done_callback(pending.discard)
        task.add_done_callback(lambda _t: progress(1))
        if len(pending) >= 64:  # bounded work in flight
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        await asyncio.wait(pending)
    return n + 1 if acts else 0
