"""Send fixture payloads as the platforms do: real bodies, signed with their recipes."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from service.events.platforms.shopify import sign_shopify
from service.events.platforms.stripe import sign_stripe
from service.events.platforms.woocommerce import sign_woocommerce
from service.events.signatures import sign_standard_webhooks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def body_of(payload: dict[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def shopify(
    client: TestClient,
    topic: str,
    payload: dict[str, Any] | bytes,
    *,
    event_id: str | None = None,
    secret: str = "shpss_test_secret",
) -> Response:
    body = body_of(payload)
    return client.post(
        "/v1/webhooks/shopify",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign_shopify(body, secret),
            "X-Shopify-Shop-Domain": "example.myshopify.com",
            "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        },
    )


def woocommerce(
    client: TestClient,
    topic: str,
    payload: dict[str, Any] | bytes,
    *,
    delivery_id: str | None = None,
    secret: str = "wc_test_secret",
) -> Response:
    body = body_of(payload)
    return client.post(
        "/v1/webhooks/woocommerce",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Signature": sign_woocommerce(body, secret),
            "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
            "X-WC-Webhook-ID": "12",
        },
    )


def stripe(
    client: TestClient,
    payload: dict[str, Any] | bytes,
    *,
    at: int | None = None,
    secret: str = "whsec_test_secret",
) -> Response:
    body = body_of(payload)
    stamp = at if at is not None else int(time.time())
    return client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign_stripe(body, secret, stamp),
        },
    )


def standard(
    client: TestClient,
    source: str,
    payload: dict[str, Any] | bytes,
    *,
    msg_id: str | None = None,
    at: int | None = None,
    secret: str = "test_client_secret",
) -> Response:
    body = body_of(payload)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = at if at is not None else int(time.time())
    return client.post(
        f"/v1/webhooks/{source}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard_webhooks(
                body, msg_id=msg_id, timestamp=stamp, secret=secret
            ),
        },
    )
