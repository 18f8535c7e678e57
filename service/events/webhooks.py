"""Webhook endpoints: verify the platform's signature over the raw body, then store.

A missing or wrong signature gets 401 and nothing is stored. A verified delivery is
stored (and what it maps to) before the 2xx; a redelivery gets 200 and no effect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response

from service.errors import ProblemError, problem_responses
from service.events import signatures
from service.events.body import JsonError, limited_body, load_json
from service.events.checks import printable
from service.events.repository import Delivery
from service.events.schemas import WebhookAck
from service.events.writer import DeliveryWriter
from service.settings import get_settings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_RESPONSES = problem_responses(400, 401, 404, 413, 500)
_MAX_DELIVERY_ID = 255  # the lengths of WebhookDelivery's columns
_MAX_TOPIC = 128
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Headers worth keeping with a delivery. Signatures are never stored.
_KEPT = (
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "x-wc-webhook-source",
    "x-wc-webhook-topic",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
    "webhook-id",
    "webhook-timestamp",
    "content-type",
    "user-agent",
)


RawBody = Annotated[bytes, Depends(limited_body(get_settings().webhook_max_bytes))]


def _secrets(source: str) -> list[str]:
    secrets = get_settings().webhook_secrets.get(source)
    if not secrets:
        raise ProblemError(404, f"No webhook source '{source}' is configured.")
    return secrets


def _verify(
    check: Callable[..., None], body: bytes, headers: Mapping[str, str], source: str, **options: Any
) -> None:
    try:
        check(body, headers, _secrets(source), **options)
    except signatures.SignatureError as exc:
        raise ProblemError(401, f"Webhook signature rejected: {exc.reason}.") from exc


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name][:255] for name in _KEPT if name in headers}


def _require(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise ProblemError(400, f"The {name} header is missing.")
    return value


def _ack(status: str, events: int) -> Response:
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


def _json_field(body: bytes, *names: str) -> str | None:
    try:
        payload = load_json(body)
    except JsonError:
        return None  # kept in the quarantine with the reason once stored
    if not isinstance(payload, dict):
        return None
    # Text that can be stored as the delivery's id or topic (a NUL escaped); the
    # mapping refuses the value itself, naming the field.
    return next((printable(str(payload[n])) for n in names if payload.get(n)), None)


async def _receive(
    request: Request, body: bytes, *, source: str, delivery_id: str, topic: str | None
) -> Response:
    """Store a verified delivery, committed before the response (with any others
    arriving at the same time: `service/events/writer.py`), and acknowledge it."""
    writer: DeliveryWriter = request.app.state.delivery_writer
    status, count = await writer.submit(
        Delivery(
            source=source,
            delivery_id=_key(delivery_id),
            topic=_topic(topic),
            headers=_kept(request.headers),
            body=body,
        )
    )
    return _ack(status, count)


@router.post("/shopify", response_model=WebhookAck, responses=_RESPONSES)
async def shopify(request: Request, body: RawBody) -> Response:
    """Shopify HTTPS webhooks (`X-Shopify-Hmac-Sha256`). Deduplicated on the topic and
    `X-Shopify-Event-Id`."""
    _verify(signatures.verify_shopify, body, request.headers, "shopify")
    topic = _require(request.headers, "X-Shopify-Topic")
    event_id = _require(request.headers, "X-Shopify-Event-Id")
    return await _receive(
        request,
        body,
        source="shopify",
        delivery_id=f"{topic}:{event_id}",
        topic=topic,
    )


@router.post("/woocommerce", response_model=WebhookAck, responses=_RESPONSES)
async def woocommerce(request: Request, body: RawBody) -> Response:
    """WooCommerce webhooks (`X-WC-Webhook-Signature`), deduplicated on
    `X-WC-Webhook-Delivery-ID`. The unsigned ping sent when a webhook is created gets 200."""
    if "x-wc-webhook-signature" not in request.headers and signatures.is_woocommerce_ping(
        body, request.headers.get("content-type")
    ):
        _secrets("woocommerce")
        return _ack("ping", 0)
    _verify(signatures.verify_woocommerce, body, request.headers, "woocommerce")
    topic = _require(request.headers, "X-WC-Webhook-Topic")
    delivery_id = _require(request.headers, "X-WC-Webhook-Delivery-ID")
    return await _receive(
        request,
        body,
        source="woocommerce",
        delivery_id=delivery_id,
        topic=topic,
    )


@router.post("/stripe", response_model=WebhookAck, responses=_RESPONSES)
async def stripe(request: Request, body: RawBody) -> Response:
    """Stripe webhooks (`Stripe-Signature`, 5-minute tolerance), deduplicated on the
    event id in the body."""
    _verify(
        signatures.verify_stripe,
        body,
        request.headers,
        "stripe",
        tolerance_s=get_settings().webhook_tolerance_s,
    )
    delivery_id = _json_field(body, "id") or "sha256:" + hashlib.sha256(body).hexdigest()
    return await _receive(
        request,
        body,
        source="stripe",
        delivery_id=delivery_id,
        topic=_json_field(body, "type"),
    )


@router.post("/{source}", response_model=WebhookAck, responses=_RESPONSES)
async def standard(
    request: Request,
    body: RawBody,
    source: Annotated[str, Path(description="The sender's name, as configured in WEBHOOK_SECRETS")],
) -> Response:
    """Any sender using Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    `webhook-signature`; BigCommerce signs this way), deduplicated on `webhook-id`."""
    if not _SOURCE.match(source):
        raise ProblemError(404, f"No webhook source '{source[:64]}' is configured.")
    _verify(
        signatures.verify_standard_webhooks,
        body,
        request.headers,
        source,
        tolerance_s=get_settings().webhook_tolerance_s,
    )
    return await _receive(
        request,
        body,
        source=source,
        delivery_id=_require(request.headers, "webhook-id"),
        topic=_json_field(body, "scope", "type", "event"),
    )
