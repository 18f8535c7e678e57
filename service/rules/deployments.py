"""Changing which rule and segment files are active: reload from a directory and
rollback, each one committed deployment row (all files or none); a change to the
segment definitions starts their backfill. `rules publish` checks first, then
activates here (service/rules/publish.py). What runs: `service.ruleset.runtime`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.orm import Session

from service.language import loader
from service.language.loader import SEGMENT_PREFIX, LoadedRuleset, LoadedSegment
from service.language.parse import RulesInvalid
from service.rules import live
from service.ruleset import repository
from service.ruleset.models import RuleDeployment
from service.segments import service as segments
from service.vocabulary import DeploymentStatus

log = structlog.get_logger(__name__)


# --- reload and rollback --------------------------------------------------------------------


UNCHANGED = "unchanged"  # a reload of the files already active
# Reloads nobody asked for: they leave a rollback in place until the files change.
AUTOMATIC = frozenset({"startup", "watch"})


@dataclass(frozen=True)
class ReloadResult:
    status: str  # active | rejected | unchanged (DeploymentStatus, or UNCHANGED)
    deployment_id: int | None
    errors: list[dict[str, Any]]


def files_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    for path in files + loader.segment_files(directory):
        name = path.relative_to(directory).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def reload(session: Session, *, directory: Path, origin: str) -> ReloadResult:
    """Activate the rule files in `directory` if every one is valid; otherwise record
    the errors and keep the active version. Files that are what is live change nothing.

    Asked for (`cli`, `api`), a reload activates the files whenever they differ from
    what is live, after a rollback too. At start-up and from the watcher (AUTOMATIC) a
    rollback holds until the files change (several processes react to one edit, and a
    restart must not undo a rollback)."""
    repository.lock_deployments(session)
    digest = files_hash(directory)
    active_id = repository.active_deployment_id(session)
    newest = repository.latest_deployment(session)
    # After a rejected attempt, files that are live are recorded again: healthy again.
    healthy = newest is not None and newest.status == DeploymentStatus.ACTIVE
    if healthy and live.is_live(session, directory=directory, deployment_id=active_id):
        return ReloadResult(UNCHANGED, active_id, [])
    last = repository.latest_deployment(session, from_files=True)
    if last is not None and last.files_hash == digest:
        if last.status == DeploymentStatus.REJECTED:  # the same files: the same errors, once
            return ReloadResult(DeploymentStatus.REJECTED, last.id, last.errors)
        if active_id is not None and origin in AUTOMATIC:
            return ReloadResult(UNCHANGED, active_id, [])
    try:
        loaded, segment_files = loader.load_all(directory)
    except RulesInvalid as exc:
        errors = [e.as_dict() for e in exc.errors]
        deployment = repository.add_deployment(
            session,
            origin=origin,
            status=DeploymentStatus.REJECTED,
            files_hash=digest,
            version_ids=[],
            errors=errors,
        )
        log.error(
            "rules_rejected", deployment_id=deployment.id, errors=[str(e) for e in exc.errors]
        )
        return ReloadResult(DeploymentStatus.REJECTED, deployment.id, errors)
    deployment = activate(
        session, loaded, segment_files, origin=origin, files_hash=digest, previous=active_id
    )
    return ReloadResult(DeploymentStatus.ACTIVE, deployment.id, [])


def activate(
    session: Session,
    loaded: list[LoadedRuleset],
    segment_files: list[LoadedSegment],
    *,
    origin: str,
    files_hash: str | None,
    previous: int | None,
    note: str | None = None,
    summary: dict[str, Any] | None = None,
) -> RuleDeployment:
    """Record the loaded files' versions and make them the active deployment; the
    caller holds the deployments lock and has checked the files."""
    files: list[LoadedRuleset | LoadedSegment] = [*loaded, *segment_files]
    ids = [
        repository.ensure_version(
            session,
            name=item.name if isinstance(item, LoadedRuleset) else item.version_name,
            version=item.definition.version,
            content_hash=item.content_hash,
            file=item.file,
            source=item.source,
        )
        for item in files
    ]
    deployment = repository.add_deployment(
        session,
        origin=origin,
        status=DeploymentStatus.ACTIVE,
        files_hash=files_hash,
        version_ids=ids,
        errors=[],
        note=note,
        summary=summary,
    )
    _segments_changed(session, previous, ids)
    log.info(
        "rules_activated",
        deployment_id=deployment.id,
        rulesets={i.name: i.content_hash[:12] for i in loaded},
    )
    return deployment


def rollback(
    session: Session, *, deployment_id: int | None = None, version_id: int | None = None
) -> RuleDeployment:
    """Activate an earlier deployment again, or put back one earlier version of one
    ruleset in the current set. LookupError when there is no such thing."""
    repository.lock_deployments(session)
    current_id = repository.active_deployment_id(session)
    current = repository.get_deployment(session, current_id) if current_id else None
    if deployment_id is not None:
        target = repository.get_deployment(session, deployment_id)
        if target is None or target.status != DeploymentStatus.ACTIVE:
            raise LookupError(f"no active deployment {deployment_id} to go back to")
        ids, note = list(target.version_ids), f"back to deployment {deployment_id}"
    elif version_id is not None:
        version = repository.get_version(session, version_id)
        if version is None:
            raise LookupError(f"no ruleset version {version_id}")
        kept = [
            v
            for v in repository.versions(session, current.version_ids if current else [])
            if v.name != version.name
        ]
        ids, note = (
            [v.id for v in kept] + [version.id],
            f"{version.name} back to version {version_id}",
        )
    else:
        raise ValueError("name a deployment or a ruleset version")
    deployment = repository.add_deployment(
        session,
        origin="rollback",
        status=DeploymentStatus.ACTIVE,
        files_hash=None,
        version_ids=ids,
        errors=[],
        note=note,
    )
    _segments_changed(session, current_id, ids)
    log.info("rules_rolled_back", deployment_id=deployment.id, note=note)
    return deployment


def _segments_changed(session: Session, previous: int | None, version_ids: list[int]) -> None:
    """Backfill the segments whose definition this change adds, alters or removes."""
    before = repository.get_deployment(session, previous) if previous else None
    segments.definitions_changed(
        session,
        before=_segment_hashes(session, before.version_ids if before else []),
        after=_segment_hashes(session, version_ids),
    )


def _segment_hashes(session: Session, version_ids: list[int]) -> dict[str, str]:
    return {
        row.name.removeprefix(SEGMENT_PREFIX): row.content_hash
        for row in repository.versions(session, version_ids)
        if row.name.startswith(SEGMENT_PREFIX)
    }
