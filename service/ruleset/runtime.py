"""Each process's compiled copy of the active deployment (`RUNTIME`): every process
runs the newest active one, so a change is one committed row (all files or none)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.orm import Session

from service.language import loader
from service.language.engine import CompiledRuleset, Engine
from service.language.loader import SEGMENT_PREFIX
from service.language.parse import RulesInvalid
from service.language.segments import CompiledSegments, compile_segments
from service.ruleset import repository

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Active:
    deployment_id: int | None
    rulesets: list[CompiledRuleset]
    # ruleset name, or `segment:<name>` → ruleset_versions.id
    version_ids: dict[str, int]
    segments: CompiledSegments | None = None

    def ruleset(self, name: str) -> CompiledRuleset | None:
        return next((r for r in self.rulesets if r.name == name), None)


class _Runtime:
    """The process's engine and its compiled copy of the active deployment."""

    def __init__(self) -> None:
        self.engine = Engine()
        self._active = Active(None, [], {})
        self._lock = threading.Lock()
        self._compiling = threading.Lock()

    def active(self, session: Session) -> Active:
        deployment_id = repository.active_deployment_id(session)
        with self._lock:
            if deployment_id == self._active.deployment_id:
                return self._active
        # One thread compiles; the others wait for it (the decision endpoint asks from
        # many requests at once when the rules change, and each compile parses every file).
        with self._compiling:
            with self._lock:
                if deployment_id == self._active.deployment_id:
                    return self._active
            active = self._compile(session, deployment_id)
            with self._lock:
                self._active = active
        log.info("rules_compiled", deployment_id=deployment_id)
        return active

    def _compile(self, session: Session, deployment_id: int | None) -> Active:
        compiled, ids, segment_files = [], {}, []
        if deployment_id is not None:
            deployment = repository.get_deployment(session, deployment_id)
            assert deployment is not None
            for row in repository.versions(session, deployment.version_ids):
                ids[row.name] = row.id
                if row.name.startswith(SEGMENT_PREFIX):
                    segment_files.append(loader.load_segment_source(row.file, row.source))
                else:
                    compiled.append(self.engine.compile(loader.load_source(row.file, row.source)))
        return Active(deployment_id, compiled, ids, compile_segments(self.engine, segment_files))

    def forget(self) -> None:
        """Drop the compiled copy: the next `active` compiles what the database says
        (deployment ids are only unique within one database)."""
        with self._lock:
            self._active = Active(None, [], {})

    def cached(self) -> Active:
        """The active rules last read, without asking the database."""
        with self._lock:
            return self._active

    def from_files(self, directory: Path) -> Active:
        """The rule files on disk, compiled but not activated: what a process serves
        before it has ever reached the database."""
        try:
            loaded, segment_files = loader.load_all(directory)
        except (RulesInvalid, OSError):
            return Active(None, [], {})
        return Active(
            None,
            [self.engine.compile(item) for item in loaded],
            {},
            compile_segments(self.engine, segment_files),
        )


RUNTIME = _Runtime()
