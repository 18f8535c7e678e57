"""Webhook signature checks over the raw request body (recipes: tests/fixtures/webhooks/SOURCES.md).

- Shopify: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(client secret, body)); no timestamp.
- WooCommerce: `X-WC-Webhook-Signature` = base64(HMAC-SHA256(secret, body)); no timestamp.
- Stripe: `Stripe-Signature: t=<unix>,v1=<hex>…` = hex(HMAC-SHA256(whsec_… as-is, f"{t}." + body)).
- Standard Webhooks (and BigCommerce): `webhook-signature: v1,<base64>` over f"{id}.{ts}." + body.

Every `verify_*` function takes a list of secrets and accepts the request when any one of
them matches, so a secret can be rotated without dropping deliveries (Shopify keeps
signing with the old secret for up to an hour). It returns None or raises
`SignatureError` whose `reason` is short and safe to show to the sender.

A misconfigured caller is not the sender's fault and raises something else: `TypeError`
when `secrets` is a single `str` (a str is itself a `Sequence[str]`: it would silently
be tried character by character), `ValueError` when no non-empty secret is given or a
`whsec_` secret is not valid base64.

Headers: any `Mapping[str, str]`. Names are looked up in lowercase first (what
`starlette.datastructures.Headers`, which is case-insensitive, answers directly), then
by a case-insensitive scan of the keys, so a plain `dict` with the sender's casing
works too. An empty header counts as missing.

No FastAPI, no database: pure functions, so the router, the worker and the benchmarks
can all use them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs

__all__ = [
    "SignatureError",
    "is_woocommerce_ping",
    "sign_shopify",
    "sign_standard_webhooks",
    "sign_stripe",
    "sign_woocommerce",
    "verify_shopify",
    "verify_standard_webhooks",
    "verify_stripe",
    "verify_woocommerce",
]

SHOPIFY_HEADER = "X-Shopify-Hmac-Sha256"
WOOCOMMERCE_HEADER = "X-WC-Webhook-Signature"
STRIPE_HEADER = "Stripe-Signature"
STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"

DEFAULT_TOLERANCE_S = 300
_WHSEC_PREFIX = "whsec_"
# Unix seconds stay at 10 digits until the year 2286; the cap keeps int() cheap on junk.
_MAX_TIMESTAMP_DIGITS = 12
# `webhook_id=` plus a WordPress post id: anything longer is not the ping.
_MAX_PING_BODY = 64
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class SignatureError(ValueError):
    """The request is not signed by anyone holding one of our secrets (→ 401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- signing (the documented recipes) -------------------------------------------------


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def sign_shopify(body: bytes, secret: str) -> str:
    """The `X-Shopify-Hmac-Sha256` value Shopify sends for `body`."""
    return base64.b64encode(_hmac_sha256(secret.encode(), body)).decode("ascii")


def sign_woocommerce(body: bytes, secret: str) -> str:
    """The `X-WC-Webhook-Signature` value WooCommerce sends for `body`."""
    return base64.b64encode(_hmac_sha256(secret.encode(), body)).decode("ascii")


def sign_stripe(body: bytes, secret: str, timestamp: int) -> str:
    """The full `Stripe-Signature` value (`t=…,v1=…`); the `whsec_` secret is the key as-is."""
    return f"t={timestamp},v1={_stripe_hex(secret.encode(), str(timestamp), body)}"


def sign_standard_webhooks(body: bytes, *, msg_id: str, timestamp: int, secret: str) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for `body`.

    The key follows the same rule as `verify_standard_webhooks`: `whsec_<base64>` is
    decoded, anything else is used as its UTF-8 bytes.
    """
    mac = _hmac_sha256(_standard_key(secret), _standard_content(msg_id, str(timestamp), body))
    return "v1," + base64.b64encode(mac).decode("ascii")


def _stripe_hex(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _standard_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def _standard_key(secret: str) -> bytes:
    if secret.startswith(_WHSEC_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(_WHSEC_PREFIX), validate=True)
        except binascii.Error as exc:
            # Our configuration is wrong, not the sender's request: not a SignatureError.
            raise ValueError("a whsec_ webhook secret is not valid base64") from exc
    return secret.encode()


# --- verification ---------------------------------------------------------------------


def verify_shopify(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Check `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, body)) for any secret.

    Shopify signs no timestamp, so there is no replay window here: dedupe on
    `X-Shopify-Event-Id` instead.
    """
    _verify_base64_body_hmac(body, headers, secrets, SHOPIFY_HEADER)


def verify_woocommerce(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Check `X-WC-Webhook-Signature` = base64(HMAC-SHA256(secret, body)) for any secret.

    The creation ping carries no signature at all: see `is_woocommerce_ping`.
    """
    _verify_base64_body_hmac(body, headers, secrets, WOOCOMMERCE_HEADER)


def verify_stripe(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Check `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`.

    Signed payload: f"{t}." + body; key: the endpoint secret `whsec_…` as UTF-8, NOT
    base64-decoded (unlike Standard Webhooks). Any `v1` matching any secret is enough;
    other schemes (`v0`) are ignored. Unlike stripe-python, which only rejects old
    timestamps, `t` more than `tolerance_s` in the future is rejected too: a clock that
    far off would otherwise stretch the replay window.
    """
    keys = [secret.encode() for secret in _checked(secrets)]
    timestamp, signatures = _parse_stripe_header(_header(headers, STRIPE_HEADER))
    _check_timestamp(timestamp, now, tolerance_s)
    expected = [_stripe_hex(key, timestamp, body).encode("ascii") for key in keys]
    if not _any_match(expected, signatures):
        raise SignatureError("signature does not match")


def verify_standard_webhooks(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Check `webhook-id`, `webhook-timestamp` and `webhook-signature` (Standard Webhooks).

    Signed content: f"{webhook-id}.{webhook-timestamp}." + body, HMAC-SHA256, compared
    with every space-separated `v1,<base64>` entry; other versions (`v1a` = ed25519) are
    ignored, so a header with no `v1` entry is rejected.

    Key rule: a secret starting with `whsec_` is a Standard Webhooks secret and the key
    is base64-decode(the rest); any other secret is used as its UTF-8 bytes. The second
    case is BigCommerce, whose key is the app's raw client secret (what the
    `standardwebhooks` library gets when handed base64(client_secret)). So a raw secret
    that itself starts with `whsec_` cannot be expressed: none is known to exist.
    """
    keys = [_standard_key(secret) for secret in _checked(secrets)]
    msg_id = _header(headers, STANDARD_ID_HEADER)
    timestamp = _header(headers, STANDARD_TIMESTAMP_HEADER)
    signature_header = _header(headers, STANDARD_SIGNATURE_HEADER)
    if not _is_timestamp(timestamp):
        raise SignatureError(f"malformed {STANDARD_TIMESTAMP_HEADER} header")
    _check_timestamp(timestamp, now, tolerance_s)
    signatures = [
        sig.encode("utf-8", "replace")
        for version, sep, sig in (entry.partition(",") for entry in signature_header.split())
        if sep and version == "v1"
    ]
    if not signatures:
        raise SignatureError(f"no v1 signature in {STANDARD_SIGNATURE_HEADER} header")
    content = _standard_content(msg_id, timestamp, body)
    expected = [base64.b64encode(_hmac_sha256(key, content)) for key in keys]
    if not _any_match(expected, signatures):
        raise SignatureError("signature does not match")


def is_woocommerce_ping(body: bytes, content_type: str | None) -> str | None:
    """The webhook id if `body` is WooCommerce's unsigned creation ping, else None.

    On creation WooCommerce POSTs the form `webhook_id=<digits>` with no X-WC headers
    and disables the webhook unless it gets HTTP 200. Only exactly that form passes
    (one field, digits, strict parsing); a `content_type` other than a form is refused,
    a missing one is tolerated. Checking that no X-WC-Webhook-Signature came along is
    the caller's job: this only looks at the body. The ping proves nothing about the
    sender, so answer 200 and do nothing else with it.
    """
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != _FORM_MEDIA_TYPE:
            return None
    if not body or len(body) > _MAX_PING_BODY:
        return None
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=1)
    except (UnicodeDecodeError, ValueError):  # bad field, or more than one field
        return None
    values = fields.get("webhook_id")
    if len(fields) != 1 or values is None or len(values) != 1:
        return None
    webhook_id = values[0]
    return webhook_id if webhook_id.isascii() and webhook_id.isdigit() else None


# --- helpers --------------------------------------------------------------------------


def _verify_base64_body_hmac(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], header_name: str
) -> None:
    keys = [secret.encode() for secret in _checked(secrets)]
    given = _header(headers, header_name).encode("utf-8", "replace")
    expected = [base64.b64encode(_hmac_sha256(key, body)) for key in keys]
    if not _any_match(expected, [given]):
        raise SignatureError("signature does not match")


def _checked(secrets: Sequence[str]) -> Sequence[str]:
    if isinstance(secrets, str):
        raise TypeError("secrets must be a list of secrets, not a single str")
    if not secrets or not all(secrets):
        # An empty key would let anyone who guesses the configuration sign requests.
        raise ValueError("no webhook secret configured (or an empty one)")
    return secrets


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    value = headers.get(lowered)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is None or not value.strip():
        raise SignatureError(f"missing {name} header")
    return value.strip()


def _any_match(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    # compare_digest on bytes: str arguments raise TypeError on non-ASCII input.
    return any(hmac.compare_digest(e, g) for e in expected for g in given)


def _is_timestamp(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS


def _check_timestamp(timestamp: str, now: float | None, tolerance_s: int) -> None:
    # Checked before any HMAC work: a replayed or forged old request is refused cheaply.
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise SignatureError(f"timestamp outside the {tolerance_s} s tolerance")


def _parse_stripe_header(value: str) -> tuple[str, list[bytes]]:
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in value.split(","):
        key, _, field = item.strip().partition("=")
        if key == "t":
            timestamps.append(field)
        elif key == "v1":
            signatures.append(field.encode("utf-8", "replace"))
    if len(timestamps) != 1 or not _is_timestamp(timestamps[0]):
        raise SignatureError(f"malformed {STRIPE_HEADER} header: needs one numeric t=")
    if not signatures:
        raise SignatureError(f"no v1 signature in {STRIPE_HEADER} header")
    return timestamps[0], signatures
