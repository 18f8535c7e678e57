"""Profiles as the API reads them: found by id or identity, identities masked, consent
set; and the periodic RFM recomputation. Resolution is in `resolution.py`, the effects
of events in `effects.py`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from service import crypto
from service.events.identity import CONTACT_KINDS, lookup_key
from service.events.quarantine_view import mask
from service.profiles import effects_repository, repository
from service.profiles.models import Customer


def find(session: Session, *, ref: str) -> Customer | None:
    """A profile by its id or by any identity, written `kind:value`
    (`email:ann@example.com`, `user_id:42`, `shopify_customer:7`, `anonymous_id:…`)."""
    if "\x00" in ref:  # no stored id holds a NUL, and the database rejects it in text
        return None
    try:
        customer_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        kind, sep, value = ref.partition(":")
        key = lookup_key(kind, value) if sep and value else None
        customer_id = (
            repository.customer_by_identity(session, kind=key.kind, value=key.value)
            if key
            else None
        )
    return repository.get_customer(session, customer_id) if customer_id else None


def identities(session: Session, customer: Customer) -> list[tuple[str, str]]:
    result = []
    for identity in repository.identities_of(session, customer.id):
        if identity.kind in CONTACT_KINDS:
            raw = crypto.decrypt(identity.encrypted) if identity.encrypted else ""
            result.append((identity.kind, mask(identity.kind, raw)))
        else:
            result.append((identity.kind, identity.value))
    return result


def rfm_job(session: Session) -> int:
    return effects_repository.recompute_rfm(session, now=datetime.now(UTC))


def set_consent(
    session: Session, *, customer: Customer, consent: dict[str, bool], now: datetime
) -> dict[str, bool]:
    """Merge consent per purpose into `traits.consent`, as of `now`: an identify that
    happened before this call and is delivered after it does not undo it."""
    (locked,) = repository.customers_for_update(session, [customer.id]).values()
    current = locked.traits.get("consent")
    merged = {**(current if isinstance(current, dict) else {}), **consent}
    locked.traits = {**locked.traits, "consent": merged}
    at = now.astimezone(UTC).isoformat()
    locked.trait_times = {
        **locked.trait_times,
        "consent": max(at, locked.trait_times.get("consent", "")),
    }
    return {k: v for k, v in merged.items() if isinstance(v, bool)}
