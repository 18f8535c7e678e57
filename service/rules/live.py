"""The rule and segment files on disk beside what is live (the active deployment's
stored versions): file by file the same, changed, only on disk or only live, and the
live files loaded again from their stored text for `rules diff`.

Email templates (`templates/`) are read from disk when an email is sent: they are not
part of a deployment and are not compared."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from service.language import loader
from service.language.loader import SEGMENT_PREFIX, LoadedRuleset, LoadedSegment
from service.ruleset import repository

SAME, CHANGED, ONLY_DISK, ONLY_LIVE = "same", "changed", "only on disk", "only live"


@dataclass(frozen=True)
class FileState:
    file: str  # relative to the rules directory: `cart.yaml`, `segments/vip.yaml`
    state: str  # same | changed | only on disk | only live


def disk_files(directory: Path) -> dict[str, str]:
    """Each rule and segment file in `directory` → the sha256 of its bytes (for a file
    in UTF-8, the content hash its stored version would have); none when there is no
    such directory."""
    if not directory.is_dir():
        return {}
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in paths + loader.segment_files(directory)
    }


def live_files(session: Session, deployment_id: int | None) -> dict[str, str]:
    """Each file of the deployment → its content hash."""
    deployment = repository.get_deployment(session, deployment_id) if deployment_id else None
    rows = repository.versions(session, deployment.version_ids if deployment else [])
    return {row.file: row.content_hash for row in rows}


def compare(disk: dict[str, str], live: dict[str, str]) -> list[FileState]:
    """File by file, in name order."""
    states = []
    for name in sorted(disk.keys() | live.keys()):
        if name not in live:
            states.append(FileState(name, ONLY_DISK))
        elif name not in disk:
            states.append(FileState(name, ONLY_LIVE))
        else:
            states.append(FileState(name, SAME if disk[name] == live[name] else CHANGED))
    return states


def states(session: Session, *, directory: Path, deployment_id: int | None) -> list[FileState]:
    return compare(disk_files(directory), live_files(session, deployment_id))


def is_live(session: Session, *, directory: Path, deployment_id: int | None) -> bool:
    """Whether the files in `directory` are exactly the deployment's."""
    if deployment_id is None:
        return False
    return all(
        s.state == SAME for s in states(session, directory=directory, deployment_id=deployment_id)
    )


def loaded(session: Session, deployment_id: int | None) -> list[LoadedRuleset | LoadedSegment]:
    """The deployment's files, loaded from their stored text."""
    deployment = repository.get_deployment(session, deployment_id) if deployment_id else None
    items: list[LoadedRuleset | LoadedSegment] = []
    for row in repository.versions(session, deployment.version_ids if deployment else []):
        if row.name.startswith(SEGMENT_PREFIX):
            items.append(loader.load_segment_source(row.file, row.source))
        else:
            items.append(loader.load_source(row.file, row.source))
    return items
