"""API keys with scopes.

A key looks like `pk_<prefix>_<secret>`. The secret has 256 bits of entropy, so a
plain SHA-256 digest is a safe stored form (no slow hash needed) and lets a key be
found by one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from service.auth import repository
from service.auth.models import ApiKey


class Scope(StrEnum):
    INGEST = "ingest"  # events API
    STOREFRONT = "storefront"  # decisions
    MARKETER = "marketer"  # rules, segments, reports
    ADMIN = "admin"  # everything, including erasure and key management


@dataclass(frozen=True)
class NewKey:
    key: str  # the only time the full key exists outside the caller's hands
    record: ApiKey


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, name: str, scopes: Iterable[Scope]) -> NewKey:
    scope_list = sorted({Scope(s).value for s in scopes})
    if not scope_list:
        raise ValueError("an API key needs at least one scope")
    prefix = "pk_" + secrets.token_hex(4)
    key = f"{prefix}_{secrets.token_hex(32)}"
    record = repository.add(
        session, name=name, prefix=prefix, key_hash=digest(key), scopes=scope_list
    )
    return NewKey(key=key, record=record)


def authenticate(session: Session, *, key: str) -> ApiKey | None:
    return repository.get_active_by_hash(session, key_hash=digest(key))


def allows(record: ApiKey, scope: Scope) -> bool:
    return Scope.ADMIN.value in record.scopes or scope.value in record.scopes


def list_keys(session: Session) -> Sequence[ApiKey]:
    return repository.list_all(session)


def revoke_key(session: Session, *, prefix: str) -> bool:
    return repository.revoke(session, prefix=prefix)
