"""SQL for rule and segment file versions and their deployments."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from service.db import advisory_xact_locks
from service.ruleset.models import RuleDeployment, RulesetVersion
from service.vocabulary import DeploymentStatus


def ensure_version(
    session: Session, *, name: str, version: int, content_hash: str, file: str, source: str
) -> int:
    session.execute(
        insert(RulesetVersion)
        .values(name=name, version=version, content_hash=content_hash, file=file, source=source)
        .on_conflict_do_nothing(index_elements=["name", "content_hash"])
    )
    version_id: int = session.execute(
        select(RulesetVersion.id).where(
            RulesetVersion.name == name, RulesetVersion.content_hash == content_hash
        )
    ).scalar_one()
    return version_id


def versions(session: Session, ids: Iterable[int]) -> list[RulesetVersion]:
    wanted = list(ids)
    rows = session.scalars(select(RulesetVersion).where(RulesetVersion.id.in_(wanted))).all()
    by_id = {r.id: r for r in rows}
    return [by_id[i] for i in wanted if i in by_id]


def version_history(session: Session, name: str) -> Sequence[RulesetVersion]:
    return session.scalars(
        select(RulesetVersion).where(RulesetVersion.name == name).order_by(RulesetVersion.id.desc())
    ).all()


def get_version(session: Session, version_id: int) -> RulesetVersion | None:
    return session.get(RulesetVersion, version_id)


def lock_deployments(session: Session) -> None:
    """Serialise changes to the active rules (several API processes watch `rules/`)."""
    advisory_xact_locks(session, ["rule_deployments"])


def active_deployment_id(session: Session) -> int | None:
    return session.execute(
        select(RuleDeployment.id)
        .where(RuleDeployment.status == DeploymentStatus.ACTIVE)
        .order_by(RuleDeployment.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def get_deployment(session: Session, deployment_id: int) -> RuleDeployment | None:
    return session.get(RuleDeployment, deployment_id)


def latest_deployment(session: Session, *, from_files: bool = False) -> RuleDeployment | None:
    query = select(RuleDeployment).order_by(RuleDeployment.id.desc()).limit(1)
    if from_files:
        query = query.where(RuleDeployment.files_hash.is_not(None))
    return session.scalars(query).first()


def add_deployment(
    session: Session,
    *,
    origin: str,
    status: str,
    files_hash: str | None,
    version_ids: list[int],
    errors: list[dict[str, Any]],
    note: str | None = None,
    summary: dict[str, Any] | None = None,
) -> RuleDeployment:
    deployment = RuleDeployment(
        origin=origin,
        status=status,
        files_hash=files_hash,
        version_ids=version_ids,
        errors=errors,
        note=note,
        summary=summary,
    )
    session.add(deployment)
    session.flush()
    return deployment


def deployments(session: Session, *, limit: int) -> Sequence[RuleDeployment]:
    return session.scalars(
        select(RuleDeployment).order_by(RuleDeployment.id.desc()).limit(limit)
    ).all()


def rejected_count(session: Session) -> int:
    count: int = session.execute(
        text("SELECT count(*) FROM rule_deployments WHERE status = 'rejected'")
    ).scalar_one()
    return count
