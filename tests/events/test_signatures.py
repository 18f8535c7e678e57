"""Webhook signature checks against the published vectors in fixtures/webhooks/SOURCES.md.

Pure functions: no database, so none of the conftest fixtures are used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import pytest
from starlette.datastructures import Headers

from service.events.platforms.shopify import sign_shopify, verify_shopify
from service.events.platforms.stripe import sign_stripe, verify_stripe
from service.events.platforms.woocommerce import (
    is_woocommerce_ping,
    sign_woocommerce,
    verify_woocommerce,
)
from service.events.signatures import (
    SignatureError,
    sign_standard_webhooks,
    verify_standard_webhooks,
)

Verify = Callable[[bytes, Mapping[str, str], Sequence[str]], None]

STRIPE_T = 1700000000
STANDARD_T = 1674087231
BIGCOMMERCE_T = 1561479336


@dataclass(frozen=True)
class Vector:
    name: str
    verify: Verify  # with `now` bound to the vector's timestamp where there is one
    body: bytes
    secret: str
    headers: dict[str, str]
    timestamp: int | None = None

    def __str__(self) -> str:
        return self.name


SHOPIFY = Vector(
    "shopify",
    verify_shopify,
    b'{"id":"exampleCartId","token":"exampleCartId"}',
    "shpss_test_secret",
    {"X-Shopify-Hmac-Sha256": "ZhG3CWlORI3HJKq0V+/Yl7ercfXczI9jj+RRoMSWa1w="},
)
WOOCOMMERCE = Vector(
    "woocommerce",
    verify_woocommerce,
    b'{"id":727,"status":"processing","currency":"USD","total":"29.35"}',
    "wc_test_secret",
    {"X-WC-Webhook-Signature": "hOhHlPSDY72Elah1xucn8sLtCqd7awkdqtxMSJvztGM="},
)
STRIPE = Vector(
    "stripe",
    partial(verify_stripe, now=STRIPE_T),
    b'{"id":"evt_test_webhook","object":"event","type":"checkout.session.completed"}',
    "whsec_test_secret",
    {
        "Stripe-Signature": "t=1700000000,"
        "v1=1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517"
    },
    timestamp=STRIPE_T,
)
STANDARD = Vector(
    "standard-webhooks",
    partial(verify_standard_webhooks, now=STANDARD_T),
    b'{"test": 2432232314}',
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": str(STANDARD_T),
        "webhook-signature": "v1,AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=",
    },
    timestamp=STANDARD_T,
)
BIGCOMMERCE = Vector(
    "bigcommerce",
    partial(verify_standard_webhooks, now=BIGCOMMERCE_T),
    b'{"scope":"store/order/created","store_id":"1025646","data":{"type":"order","id":250},'
    b'"hash":"dd70c0976e06b67aaf671e73f49dcb79230ebf9d","created_at":1561479335,'
    b'"producer":"stores/{store_hash}"}',
    "test_client_secret",  # raw client secret: no whsec_ prefix, used as UTF-8 bytes
    {
        "webhook-id": "msg_bc_test_1",
        "webhook-timestamp": str(BIGCOMMERCE_T),
        "webhook-signature": "v1,E2HEaUWzRtvF+yPJtVz8mBBOAc86lnH7mWrf/GNWbVQ=",
    },
    timestamp=BIGCOMMERCE_T,
)
VECTORS = [SHOPIFY, WOOCOMMERCE, STRIPE, STANDARD, BIGCOMMERCE]
TIMED = [STRIPE, STANDARD, BIGCOMMERCE]


def timed_verify(vector: Vector) -> Callable[..., None]:
    return verify_stripe if vector is STRIPE else verify_standard_webhooks


def other_secret(vector: Vector) -> str:
    """A valid secret of the same kind that did not sign the vector."""
    return "whsec_b2xkIHNlY3JldA==" if vector.secret.startswith("whsec_") else "old_secret"


def assert_rejected(vector: Vector, body: bytes, headers: Mapping[str, str], *secrets: str) -> str:
    with pytest.raises(SignatureError) as info:
        vector.verify(body, headers, list(secrets))
    return info.value.reason


@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_published_vector_verifies(vector: Vector) -> None:
    vector.verify(vector.body, Headers(vector.headers), [vector.secret])


@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_plain_dict_with_any_header_casing(vector: Vector) -> None:
    shouted = {name.upper(): value for name, value in vector.headers.items()}
    vector.verify(vector.body, shouted, [vector.secret])


@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_tampered_body_rejected(vector: Vector) -> None:
    middle = len(vector.body) // 2
    tampered = vector.body[:middle] + bytes([vector.body[middle] ^ 1]) + vector.body[middle + 1 :]
    reason = assert_rejected(vector, tampered, Headers(vector.headers), vector.secret)
    assert reason == "signature does not match"


@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_wrong_secret_rejected(vector: Vector) -> None:
    reason = assert_rejected(vector, vector.body, Headers(vector.headers), other_secret(vector))
    assert reason == "signature does not match"


@pytest.mark.parametrize(
    ("vector", "header"),
    [(vector, header) for vector in VECTORS for header in vector.headers],
    ids=lambda value: str(value),
)
def test_missing_header_named(vector: Vector, header: str) -> None:
    headers = {name: value for name, value in vector.headers.items() if name != header}
    reason = assert_rejected(vector, vector.body, Headers(headers), vector.secret)
    assert reason == f"missing {header} header"


@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_rotation_any_secret_matches(vector: Vector) -> None:
    old = other_secret(vector)
    vector.verify(vector.body, Headers(vector.headers), [old, vector.secret])
    vector.verify(vector.body, Headers(vector.headers), [vector.secret, old])


@pytest.mark.parametrize("vector", TIMED, ids=str)
@pytest.mark.parametrize("offset", [-301, 301, 100_000])
def test_timestamp_outside_tolerance_rejected(vector: Vector, offset: int) -> None:
    assert vector.timestamp is not None
    with pytest.raises(SignatureError, match="tolerance"):
        timed_verify(vector)(
            vector.body, Headers(vector.headers), [vector.secret], now=vector.timestamp + offset
        )


@pytest.mark.parametrize("vector", TIMED, ids=str)
@pytest.mark.parametrize("offset", [-300, -1, 0, 299, 300])
def test_timestamp_inside_tolerance_accepted(vector: Vector, offset: int) -> None:
    assert vector.timestamp is not None
    timed_verify(vector)(
        vector.body, Headers(vector.headers), [vector.secret], now=vector.timestamp + offset
    )


@pytest.mark.parametrize("vector", TIMED, ids=str)
def test_custom_tolerance(vector: Vector) -> None:
    assert vector.timestamp is not None
    verify = timed_verify(vector)
    headers = Headers(vector.headers)
    verify(vector.body, headers, [vector.secret], now=vector.timestamp + 600, tolerance_s=600)
    with pytest.raises(SignatureError, match="outside the 10 s tolerance"):
        verify(vector.body, headers, [vector.secret], now=vector.timestamp + 11, tolerance_s=10)


def test_sign_helpers_reproduce_published_vectors() -> None:
    assert sign_shopify(SHOPIFY.body, SHOPIFY.secret) == SHOPIFY.headers["X-Shopify-Hmac-Sha256"]
    assert (
        sign_woocommerce(WOOCOMMERCE.body, WOOCOMMERCE.secret)
        == WOOCOMMERCE.headers["X-WC-Webhook-Signature"]
    )
    assert sign_stripe(STRIPE.body, STRIPE.secret, STRIPE_T) == STRIPE.headers["Stripe-Signature"]
    for vector in (STANDARD, BIGCOMMERCE):
        assert vector.timestamp is not None
        signature = sign_standard_webhooks(
            vector.body,
            msg_id=vector.headers["webhook-id"],
            timestamp=vector.timestamp,
            secret=vector.secret,
        )
        assert signature == vector.headers["webhook-signature"]


def test_standard_webhooks_spec_example() -> None:
    # The spec's own published example (SOURCES.md: same message, ts=1614265330).
    signature = sign_standard_webhooks(
        STANDARD.body,
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        secret=STANDARD.secret,
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_bigcommerce_key_is_raw_client_secret() -> None:
    # What the standardwebhooks library gets when handed base64(client_secret).
    as_whsec = "whsec_dGVzdF9jbGllbnRfc2VjcmV0"
    verify_standard_webhooks(
        BIGCOMMERCE.body, Headers(BIGCOMMERCE.headers), [as_whsec], now=BIGCOMMERCE_T
    )


def test_sign_then_verify_round_trip_at_current_time() -> None:
    body = b'{"round":"trip","unicode":"\xc3\xa9"}'
    now = int(time.time())
    verify_shopify(body, Headers({"X-Shopify-Hmac-Sha256": sign_shopify(body, "s1")}), ["s1"])
    verify_woocommerce(
        body, Headers({"X-WC-Webhook-Signature": sign_woocommerce(body, "s2")}), ["s2"]
    )
    # now=None: the functions read the clock themselves.
    verify_stripe(
        body, Headers({"Stripe-Signature": sign_stripe(body, "whsec_s3", now)}), ["whsec_s3"]
    )
    for secret in ("whsec_c2VjcmV0IGtleQ==", "raw_client_secret"):
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": sign_standard_webhooks(
                body, msg_id="msg_1", timestamp=now, secret=secret
            ),
        }
        verify_standard_webhooks(body, Headers(headers), [secret])


@pytest.mark.parametrize(
    "header",
    [
        "v1=1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517",  # no t
        "t=1700000000",  # no v1
        "t=1700000000,v0=1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517",
        "t=abc,v1=1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517",
        "t=1700000000,t=1700000000,v1=1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517",
        "t=-1700000000,v1=1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517",
        "garbage",
    ],
)
def test_stripe_malformed_header_rejected(header: str) -> None:
    with pytest.raises(SignatureError, match="Stripe-Signature"):
        verify_stripe(
            STRIPE.body, Headers({"Stripe-Signature": header}), [STRIPE.secret], now=STRIPE_T
        )


def test_stripe_any_v1_matches() -> None:
    good = STRIPE.headers["Stripe-Signature"].partition(",v1=")[2]
    header = f"t={STRIPE_T},v1={'0' * 64},v0=ignored,v1={good}"
    verify_stripe(STRIPE.body, Headers({"Stripe-Signature": header}), [STRIPE.secret], now=STRIPE_T)


@pytest.mark.parametrize(
    ("signature", "accepted"),
    [
        ("v1a,AAAA v1,AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=", True),
        ("v1,bm9wZQ== v1,AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=", True),
        ("v1a,AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=", False),  # other versions ignored
        ("v2,AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=", False),
        ("AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=", False),  # no version
    ],
)
def test_standard_webhooks_signature_list(signature: str, accepted: bool) -> None:
    headers = Headers({**STANDARD.headers, "webhook-signature": signature})
    if accepted:
        STANDARD.verify(STANDARD.body, headers, [STANDARD.secret])
    else:
        with pytest.raises(SignatureError, match="no v1 signature"):
            STANDARD.verify(STANDARD.body, headers, [STANDARD.secret])


@pytest.mark.parametrize("timestamp", ["abc", "1674087231.5", "-1674087231", "1e9"])
def test_standard_webhooks_malformed_timestamp(timestamp: str) -> None:
    headers = Headers({**STANDARD.headers, "webhook-timestamp": timestamp})
    with pytest.raises(SignatureError, match="malformed webhook-timestamp"):
        STANDARD.verify(STANDARD.body, headers, [STANDARD.secret])


def test_non_ascii_signature_header_is_rejected_not_crashing() -> None:
    headers = Headers(raw=[(b"x-shopify-hmac-sha256", "é".encode("latin-1"))])
    with pytest.raises(SignatureError, match="does not match"):
        verify_shopify(SHOPIFY.body, headers, [SHOPIFY.secret])


@pytest.mark.parametrize("vector", VECTORS, ids=str)
def test_misconfigured_secrets_are_not_signature_errors(vector: Vector) -> None:
    headers = Headers(vector.headers)
    with pytest.raises(TypeError):
        vector.verify(vector.body, headers, vector.secret)  # a str, not a list
    for secrets in ([], [""], [vector.secret, ""]):
        with pytest.raises(ValueError, match="no webhook secret") as info:
            vector.verify(vector.body, headers, secrets)
        assert not isinstance(info.value, SignatureError)


def test_whsec_secret_must_be_base64() -> None:
    with pytest.raises(ValueError, match="not valid base64") as info:
        STANDARD.verify(STANDARD.body, Headers(STANDARD.headers), ["whsec_not*base64"])
    assert not isinstance(info.value, SignatureError)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"webhook_id=123", "application/x-www-form-urlencoded", "123"),
        (b"webhook_id=123", "application/x-www-form-urlencoded; charset=UTF-8", "123"),
        (b"webhook_id=123", None, "123"),
        (b"webhook_id=123&x=1", "application/x-www-form-urlencoded", None),
        (b"webhook_id=123&webhook_id=4", "application/x-www-form-urlencoded", None),
        (b"webhook_id=123&", "application/x-www-form-urlencoded", None),
        (b"webhook_id=", "application/x-www-form-urlencoded", None),
        (b"webhook_id=abc", "application/x-www-form-urlencoded", None),
        (b"webhook_id=12+3", "application/x-www-form-urlencoded", None),
        (b"webhook_id=\xd9\xa3", "application/x-www-form-urlencoded", None),  # Arabic 3
        (b"other=123", "application/x-www-form-urlencoded", None),
        (b'{"webhook_id":123}', "application/json", None),
        (b'{"webhook_id":123}', None, None),
        (b"webhook_id=123", "application/json", None),
        (b"", "application/x-www-form-urlencoded", None),
        (b"", None, None),
        (b"webhook_id=" + b"1" * 100, None, None),
    ],
)
def test_woocommerce_ping(body: bytes, content_type: str | None, expected: str | None) -> None:
    assert is_woocommerce_ping(body, content_type) == expected
