"""Keyed hashes for matching contact data, and encryption for keeping it.

Emails and phones are matched by HMAC-SHA256 under IDENTITY_HASH_KEY, so the matching
index holds no readable address; the raw value, needed to send mail, is kept encrypted
with Fernet (AES-128-CBC + HMAC) under PII_ENCRYPTION_KEYS. Several encryption keys may
be given, newest first, so keys can be rotated without re-encrypting at once.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet

from service.settings import get_settings


class KeysMissing(RuntimeError):
    pass


@lru_cache
def _hash_key() -> bytes:
    key = get_settings().identity_hash_key
    if not key:
        raise KeysMissing("IDENTITY_HASH_KEY is not set")
    return key.encode()


@lru_cache
def _fernet() -> MultiFernet:
    keys = get_settings().pii_encryption_keys
    if not keys:
        raise KeysMissing("PII_ENCRYPTION_KEYS is not set")
    return MultiFernet([Fernet(k.strip()) for k in keys.split(",") if k.strip()])


def keyed_hash(kind: str, value: str) -> str:
    """Hex HMAC of a normalised value; the kind is mixed in so equal strings of two
    kinds never collide."""
    return hmac.new(_hash_key(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def encrypt(value: str) -> bytes:
    return _fernet().encrypt(value.encode())


def decrypt(token: bytes) -> str:
    return _fernet().decrypt(token).decode()


def new_keys() -> tuple[str, str]:
    """A fresh (hash key, encryption key) pair."""
    return Fernet.generate_key().decode(), Fernet.generate_key().decode()
