from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.auth.models import ApiKey


def add(session: Session, *, name: str, prefix: str, key_hash: str, scopes: list[str]) -> ApiKey:
    key = ApiKey(name=name, prefix=prefix, key_hash=key_hash, scopes=scopes)
    session.add(key)
    session.flush()
    return key


def get_active_by_hash(session: Session, *, key_hash: str) -> ApiKey | None:
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )


def list_all(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()


def revoke(session: Session, *, prefix: str) -> bool:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
