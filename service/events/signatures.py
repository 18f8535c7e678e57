"""What every webhook signature check shares, and the Standard Webhooks scheme.

Each platform's own scheme lives with the platform (`service/events/platforms/`);
recipes: tests/fixtures/webhooks/SOURCES.md. Standard Webhooks is here because it is
a scheme, not a platform: any sender can use it (BigCommerce does), and the service
signs its own outgoing webhooks with it.

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

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SignatureError",
    "any_match",
    "check_timestamp",
    "checked",
    "header",
    "hmac_sha256",
    "is_timestamp",
    "sign_standard_webhooks",
    "verify_base64_body_hmac",
    "verify_standard_webhooks",
]

STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"

DEFAULT_TOLERANCE_S = 300
_WHSEC_PREFIX = "whsec_"
# Unix seconds stay at 10 digits until the year 2286; the cap keeps int() cheap on junk.
_MAX_TIMESTAMP_DIGITS = 12


class SignatureError(ValueError):
    """The request is not signed by anyone holding one of our secrets (→ 401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the shared parts -------------------------------------------------------------------


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def verify_base64_body_hmac(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], header_name: str
) -> None:
    """Check `header_name` = base64(HMAC-SHA256(secret, body)) for any secret."""
    keys = [secret.encode() for secret in checked(secrets)]
    given = header(headers, header_name).encode("utf-8", "replace")
    expected = [base64.b64encode(hmac_sha256(key, body)) for key in keys]
    if not any_match(expected, [given]):
        raise SignatureError("signature does not match")


def checked(secrets: Sequence[str]) -> Sequence[str]:
    if isinstance(secrets, str):
        raise TypeError("secrets must be a list of secrets, not a single str")
    if not secrets or not all(secrets):
        # An empty key would let anyone who guesses the configuration sign requests.
        raise ValueError("no webhook secret configured (or an empty one)")
    return secrets


def header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    value = headers.get(lowered)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is None or not value.strip():
        raise SignatureError(f"missing {name} header")
    return value.strip()


def any_match(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    # compare_digest on bytes: str arguments raise TypeError on non-ASCII input.
    return any(hmac.compare_digest(e, g) for e in expected for g in given)


def is_timestamp(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS


def check_timestamp(timestamp: str, now: float | None, tolerance_s: int) -> None:
    # Checked before any HMAC work: a replayed or forged old request is refused cheaply.
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise SignatureError(f"timestamp outside the {tolerance_s} s tolerance")


# --- Standard Webhooks ------------------------------------------------------------------


def sign_standard_webhooks(body: bytes, *, msg_id: str, timestamp: int, secret: str) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for `body`.

    The key follows the same rule as `verify_standard_webhooks`: `whsec_<base64>` is
    decoded, anything else is used as its UTF-8 bytes.
    """
    mac = hmac_sha256(_standard_key(secret), _standard_content(msg_id, str(timestamp), body))
    return "v1," + base64.b64encode(mac).decode("ascii")


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
    keys = [_standard_key(secret) for secret in checked(secrets)]
    msg_id = header(headers, STANDARD_ID_HEADER)
    timestamp = header(headers, STANDARD_TIMESTAMP_HEADER)
    signature_header = header(headers, STANDARD_SIGNATURE_HEADER)
    if not is_timestamp(timestamp):
        raise SignatureError(f"malformed {STANDARD_TIMESTAMP_HEADER} header")
    check_timestamp(timestamp, now, tolerance_s)
    signatures = [
        sig.encode("utf-8", "replace")
        for version, sep, sig in (entry.partition(",") for entry in signature_header.split())
        if sep and version == "v1"
    ]
    if not signatures:
        raise SignatureError(f"no v1 signature in {STANDARD_SIGNATURE_HEADER} header")
    content = _standard_content(msg_id, timestamp, body)
    expected = [base64.b64encode(hmac_sha256(key, content)) for key in keys]
    if not any_match(expected, signatures):
        raise SignatureError("signature does not match")


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
