"""Sending a synthetic store's traffic to a running service over HTTP, and counting
what it answered: every request and every event, by channel."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from service.synthetic.deliveries import Channel, Webhook

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 400_000  # under the batch endpoints' 500 KB
RETRIES = 5  # a 503 (database away) or 429 is retried after Retry-After


@dataclass
class Tally:
    """What was sent and how the service answered."""

    sent: Counter[str] = field(default_factory=Counter)  # events (or webhooks) by channel
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0  # requests that got no 2xx after retries
    requests: int = 0
    decisions: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def add_results(self, body: dict[str, Any]) -> None:
        self.accepted += int(body.get("accepted", 0))
        self.duplicates += int(body.get("duplicates", 0))
        self.rejected += int(body.get("rejected", 0))
        for result in body.get("results", []):
            if result.get("status") == "rejected" and len(self.rejections) < 20:
                self.rejections.append(result)


@dataclass(frozen=True)
class Target:
    base_url: str
    ingest_key: str  # an `ingest` key: events, Segment endpoints
    storefront_key: str | None = None  # a `storefront` key: decisions (live mode)
    secrets: dict[str, str] = field(default_factory=dict)  # platform → webhook secret


class Sender:
    def __init__(self, target: Target, *, concurrency: int = 8) -> None:
        self.target = target
        self.tally = Tally()
        self._client = httpx.AsyncClient(
            base_url=target.base_url,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=concurrency),
        )
        self._slots = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, **kwargs: Any) -> httpx.Response | None:
        async with self._slots:
            for attempt in range(RETRIES):
                self.tally.requests += 1
                try:
                    response = await self._client.post(path, **kwargs)
                except httpx.TransportError:
                    await asyncio.sleep(min(2**attempt * 0.2, 5))
                    continue
                if response.status_code in (429, 503):
                    await asyncio.sleep(float(response.headers.get("retry-after", 1)))
                    continue
                return response
        return None

    async def events(self, channel: Channel, events: list[dict[str, Any]]) -> None:
        """Storefront events through the Segment endpoints or the events API."""
        path = "/v1/batch" if channel == Channel.SEGMENT else "/v1/events"
        headers = {"Authorization": f"Bearer {self.target.ingest_key}"}
        self.tally.sent[channel] += len(events)
        response = await self._post(path, json={"batch": events}, headers=headers)
        if response is None or response.status_code != 200:
            self.tally.failed += 1
            return
        self.tally.add_results(response.json())

    async def webhook(self, hook: Webhook) -> None:
        self.tally.sent[hook.channel] += 1
        response = await self._post(hook.path, content=hook.body, headers=hook.headers)
        if response is None or response.status_code // 100 != 2:
            self.tally.failed += 1
            return
        status = response.json().get("status")
        if status == "duplicate":
            self.tally.duplicates += 1
        elif status == "processed":
            self.tally.accepted += 1
        else:
            self.tally.rejected += 1

    async def decide(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Ask the decision endpoint as a storefront would; None when it did not answer."""
        headers = {"Authorization": f"Bearer {self.target.storefront_key}"}
        self.tally.decisions += 1
        response = await self._post("/v1/decisions", json=body, headers=headers)
        if response is None or response.status_code != 200:
            return None
        answer: dict[str, Any] = response.json()
        return answer


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Events cut into batches the batch endpoints take (count and bytes)."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        length = len(orjson.dumps(event))
        if current and (len(current) == MAX_BATCH_EVENTS or size + length > MAX_BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(event)
        size += length
    if current:
        out.append(current)
    return out
