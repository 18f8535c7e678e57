"""Webhook endpoints: verify the platform's signature over the raw body, then store.

One handler serves every platform of the registry (`service/events/platforms/`), at
`/v1/webhooks/{name}`; any other source is a Standard Webhooks sender at
`/v1/webhooks/{source}`. A missing or wrong signature gets 401 and nothing is stored. A
verified delivery is stored (and what it maps to) before the 2xx; a redelivery gets 200
and no effect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response

from service.errors import ProblemError, problem_responses
from service.events.body import limited_body
from service.events.platform import MissingHeader, Platform
from service.events.platforms import PLATFORMS
from service.events.platforms.standard import STANDARD
from service.events.repository import Received
from service.events.schemas import WebhookAck
from service.events.signatures import SignatureError
from service.events.writer import DeliveryWriter
from service.settings import get_settings
from service.vocabulary import DeliveryStatus

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_RESPONSES = problem_responses(400, 401, 404, 413, 500)
_MAX_DELIVERY_ID = 255  # the lengths of WebhookDelivery's columns
_MAX_TOPIC = 128
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

RawBody = Annotated[bytes, Depends(limited_body(lambda: get_settings().webhook_max_bytes))]


def _secrets(source: str) -> list[str]:
    secrets = get_settings().webhook_secrets.get(source)
    if not secrets:
        raise ProblemError(404, f"No webhook source '{source}' is configured.")
    return secrets


def _kept(platform: Platform, headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name][:255] for name in platform.kept_headers if name in headers}


def _ack(status: DeliveryStatus, events: int) -> Response:
    """The WebhookAck document, built directly: the hottest endpoints skip response
    model validation (the model still documents the response)."""
    return Response(
        orjson.dumps({"status": status, "events": events}), media_type="application/json"
    )


def _key(delivery_id: str) -> str:
    """A delivery id that fits its column. A longer one is hashed, not cut: two ids
    sharing a prefix must stay two deliveries."""
    if len(delivery_id) <= _MAX_DELIVERY_ID:
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()


def _topic(topic: str | None) -> str | None:
    """No platform topic is this long; a longer one maps to nothing and is kept cut."""
    return topic[:_MAX_TOPIC] if topic else topic


async def receive(request: Request, body: bytes, *, platform: Platform, source: str) -> Response:
    """Verify a delivery, then store it, committed before the response (with any others
    arriving at the same time: `service/events/writer.py`), and acknowledge it."""
    headers = request.headers
    if platform.ping(body, headers):
        _secrets(source)
        return _ack(DeliveryStatus.PING, 0)
    try:
        platform.verify(
            body, headers, _secrets(source), tolerance_s=get_settings().webhook_tolerance_s
        )
    except SignatureError as exc:
        raise ProblemError(401, f"Webhook signature rejected: {exc.reason}.") from exc
    try:
        topic = platform.topic(body, headers)
        delivery_id = platform.delivery_key(body, headers)
    except MissingHeader as exc:
        raise ProblemError(400, f"The {exc.name} header is missing.") from exc
    writer: DeliveryWriter = request.app.state.delivery_writer
    status, count = await writer.submit(
        Received(
            source=source,
            delivery_id=_key(delivery_id),
            topic=_topic(topic),
            headers=_kept(platform, headers),
            body=body,
        )
    )
    return _ack(status, count)


Endpoint = Callable[..., Awaitable[Response]]


def _named(platform: Platform) -> Endpoint:
    async def endpoint(request: Request, body: RawBody) -> Response:
        return await receive(request, body, platform=platform, source=platform.name)

    return endpoint


async def _any_source(
    request: Request,
    body: RawBody,
    source: Annotated[str, Path(description="The sender's name, as configured in WEBHOOK_SECRETS")],
) -> Response:
    if not _SOURCE.match(source):
        raise ProblemError(404, f"No webhook source '{source[:64]}' is configured.")
    return await receive(request, body, platform=STANDARD, source=source)


def _route(path: str, endpoint: Endpoint, *, name: str, description: str) -> None:
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=name,
        description=description,
        response_model=WebhookAck,
        responses=_RESPONSES,
    )


for _platform in PLATFORMS.values():
    _route(
        f"/{_platform.name}",
        _named(_platform),
        name=_platform.name,
        description=_platform.description,
    )
# Last: a registered platform's own path wins over the Standard Webhooks one.
_route("/{source}", _any_source, name="standard", description=STANDARD.description)
