"""Identity keys: what an event says about who it is, normalised for matching. Intake
derives them and stores them with the event (never the raw email or phone: keyed hashes,
and the values encrypted for sending); profiles match them when they resolve the event.

Kinds, strongest first. A *strong* kind names one account: two profiles holding
different values of the same strong kind are two people and are never merged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import phonenumbers

from service import crypto
from service.events.canonical import Identifiers
from service.settings import get_settings
from service.vocabulary import EventName

USER_ID = "user_id"
LOYALTY = "loyalty"
EMAIL = "email"
PHONE = "phone"
ANONYMOUS_ID = "anonymous_id"
# An order id joins an order's later events (refunds, updates) that name no customer
# to the profile its first event found. The weakest kind: it never outranks a person.
ORDER = "order"
CONTACT_KINDS = frozenset({EMAIL, PHONE})
# Events whose `order_id` is an ORDER key.
ORDER_EVENTS = frozenset(
    {
        EventName.ORDER_COMPLETED,
        EventName.ORDER_UPDATED,
        EventName.ORDER_CANCELLED,
        EventName.ORDER_REFUNDED,
    }
)


def platform_kind(source: str) -> str:
    return f"{source}_customer"


def is_strong(kind: str) -> bool:
    return kind in (USER_ID, LOYALTY) or kind.endswith("_customer")


def strength(kind: str) -> int:
    """Lower is stronger; orders the keys an event is matched by."""
    if kind == USER_ID:
        return 0
    if kind.endswith("_customer"):
        return 1
    return {LOYALTY: 2, EMAIL: 3, PHONE: 4, ANONYMOUS_ID: 5, ORDER: 6}.get(kind, 7)


@dataclass(frozen=True, order=True)
class IdentityKey:
    kind: str
    value: str  # stored and matched form: a keyed hash for email and phone
    encrypted: bytes | None = None  # email or phone as normalised, encrypted, for sending

    def to_json(self) -> dict[str, str | None]:
        secret = base64.b64encode(self.encrypted).decode() if self.encrypted else None
        return {"kind": self.kind, "value": self.value, "encrypted": secret}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdentityKey:
        secret = data.get("encrypted")
        return cls(data["kind"], data["value"], base64.b64decode(secret) if secret else None)


def normalise_email(value: str) -> str | None:
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    return email if at and local and "." in domain else None


def normalise_phone(value: str) -> str | None:
    try:
        number = phonenumbers.parse(value, get_settings().default_phone_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def keys_for(ids: Identifiers, *, source: str, order_id: str | None = None) -> list[IdentityKey]:
    """The event's identity keys, strongest first, without blocked values."""
    blocked = {v.lower() for v in get_settings().identity_blocklist}
    keys: list[IdentityKey] = []

    def add(kind: str, value: str | None) -> None:
        if value is None:
            return
        value = value.strip()
        if not value or value.lower() in blocked or len(value) > 255:
            return
        keys.append(IdentityKey(kind, value))

    add(USER_ID, ids.user_id)
    add(platform_kind(source), ids.platform_customer_id)
    add(LOYALTY, ids.loyalty_number)
    if ids.email and (email := normalise_email(ids.email)) and email not in blocked:
        keys.append(IdentityKey(EMAIL, crypto.keyed_hash(EMAIL, email), crypto.encrypt(email)))
    if ids.phone and (phone := normalise_phone(ids.phone)) and phone not in blocked:
        keys.append(IdentityKey(PHONE, crypto.keyed_hash(PHONE, phone), crypto.encrypt(phone)))
    add(ANONYMOUS_ID, ids.anonymous_id)
    if order_id:
        add(ORDER, f"{source}:{order_id}")
    return sorted(keys, key=lambda k: strength(k.kind))


def order_key(name: str | None, properties: dict[str, Any]) -> str | None:
    """The order id an order event names, which joins it to its order's profile."""
    order_id = properties.get("order_id") if name in ORDER_EVENTS else None
    return str(order_id) if order_id else None


def lookup_key(kind: str, value: str) -> IdentityKey | None:
    """The key for a lookup by `kind` and a raw value (API: /v1/profiles/email:…)."""
    if kind == EMAIL:
        email = normalise_email(value)
        return IdentityKey(EMAIL, crypto.keyed_hash(EMAIL, email)) if email else None
    if kind == PHONE:
        phone = normalise_phone(value)
        return IdentityKey(PHONE, crypto.keyed_hash(PHONE, phone)) if phone else None
    return IdentityKey(kind, value)
