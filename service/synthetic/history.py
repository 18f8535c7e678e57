"""History mode: a span of back-dated traffic, sent through the batch endpoints (the
Segment endpoints or the events API, by customer), fast. Older than a day, these events
fill profiles and segments but trigger no rule (rules act on fresh events only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from service.synthetic import behaviour, population
from service.synthetic.catalogue import Catalogue
from service.synthetic.deliveries import Channel, segment_event, storefront_channel
from service.synthetic.personas import PersonasFile
from service.synthetic.sender import Sender, batches
from service.synthetic.truth import Truth

CHUNK = 100  # customers generated, then sent, at a time


async def run(
    model: PersonasFile,
    catalogue: Catalogue,
    sender: Sender,
    *,
    seed: int,
    customers: range,
    start: datetime,
    end: datetime,
    truth: Truth | None = None,
    progress: Callable[[int], None] = lambda n: None,
    stop: asyncio.Event | None = None,
) -> None:
    for first in range(customers.start, customers.stop, CHUNK):
        if stop is not None and stop.is_set():
            return
        drawn = [
            population.draw(model, seed=seed, index=i, start=start, end=end)
            for i in range(first, min(first + CHUNK, customers.stop))
        ]
        by_channel: dict[Channel, list[dict[str, object]]] = {}
        for customer in drawn:
            if truth is not None:
                truth.customer(customer)
            for act in behaviour.acts(model, catalogue, customer, start=start, end=end):
                by_channel.setdefault(storefront_channel(customer), []).append(
                    segment_event(act, currency=model.currency)
                )
        await asyncio.gather(
            *(
                sender.events(channel, batch)
                for channel, events in by_channel.items()
                for batch in batches(sorted(events, key=lambda e: str(e["timestamp"])))
            )
        )
        progress(len(drawn))
