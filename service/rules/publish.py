"""`rules publish`: check the files on disk, then activate them, with what was checked
kept in the deployment (`rule_deployments.summary`).

A review loads every file (all valid, or nothing), runs every file's tests, compares
the files with what is live (`diff`) and replays a past period through both
(`simulate`). Publishing refuses when a test fails, when there is nothing to publish,
and when the files or the live rules changed while the review ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.language.engine import Engine
from service.language.loader import LoadedRuleset, LoadedSegment, load_all
from service.language.segments import run_tests as run_segment_tests
from service.rules import deployments, diff, live, simulate
from service.rules.testing import run_file
from service.ruleset import repository
from service.ruleset.models import RuleDeployment
from service.ruleset.runtime import RUNTIME
from service.settings import get_settings
from service.vocabulary import DeploymentStatus

ORIGIN = "publish"


class Refused(Exception):
    """Publishing did not happen; the message says why."""


@dataclass(frozen=True)
class TestLine:
    file: str
    name: str
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class TestRun:
    results: list[TestLine]
    untested: list[str]  # files without tests

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed


def run_tests(
    rulesets: list[LoadedRuleset], segments: list[LoadedSegment], *, engine: Engine
) -> TestRun:
    """Every rule and segment file's own tests (fake clock, nothing stored)."""
    defaults = get_settings().consent_defaults
    results: list[TestLine] = []
    for ruleset in rulesets:
        found = run_file(ruleset, engine=engine, consent_defaults=defaults)
        results += [TestLine(r.file, r.name, r.failures) for r in found]
    for segment in segments:
        done = run_segment_tests(segment, engine=engine, consent_defaults=defaults)
        results += [TestLine(r.file, r.name, r.failures) for r in done]
    files: list[LoadedRuleset | LoadedSegment] = [*rulesets, *segments]
    untested = [f.file for f in files if not f.definition.tests]
    return TestRun(results, untested)


@dataclass(frozen=True)
class Review:
    """What publishing these files would change, checked."""

    rulesets: list[LoadedRuleset]
    segments: list[LoadedSegment]
    files_hash: str
    live_id: int | None  # the deployment the files were compared with
    rejected_since: bool  # the newest attempt to change the rules was rejected
    tests: TestRun
    changes: list[diff.FileChange]
    backtest: simulate.Comparison | None  # None when there is nothing to compare

    def summary(self) -> dict[str, Any]:
        return {
            "compared_with": self.live_id,
            "tests": {
                "passed": self.tests.passed,
                "failed": self.tests.failed,
                "untested": self.tests.untested,
            },
            "changes": [c.as_dict() for c in self.changes],
            "backtest": self.backtest.as_dict() if self.backtest else None,
        }


def review(session: Session, *, directory: Path, since: datetime, until: datetime) -> Review:
    """Load, test, compare and backtest the files in `directory` (RulesInvalid when a
    file is not valid). The backtest is skipped when a test fails or nothing changes.
    Reads only: the caller rolls the transaction back."""
    digest = deployments.files_hash(directory)
    rulesets, segments = load_all(directory)
    tests = run_tests(rulesets, segments, engine=RUNTIME.engine)
    live_id = repository.active_deployment_id(session)
    newest = repository.latest_deployment(session)
    rejected = newest is not None and newest.status == DeploymentStatus.REJECTED
    changes = diff.diff(live.loaded(session, live_id), [*rulesets, *segments])
    backtest = None
    if changes and not tests.failed:
        backtest = simulate.compare(
            session,
            engine=RUNTIME.engine,
            files=[RUNTIME.engine.compile(r) for r in rulesets],
            live=RUNTIME.active(session).rulesets,
            since=since,
            until=until,
        )
    return Review(rulesets, segments, digest, live_id, rejected, tests, changes, backtest)


def publish(
    session: Session, *, checked: Review, directory: Path, message: str | None = None
) -> RuleDeployment:
    """Activate the reviewed files, with the review in the deployment; Refused when a
    test failed, nothing changes (and the newest attempt was not rejected), or the
    files or the live rules changed since."""
    if checked.tests.failed:
        raise Refused(f"{checked.tests.failed} test(s) failed: nothing was published")
    if not checked.changes and not checked.rejected_since:
        # (After a rejected attempt, the files that are live are recorded again, so
        # that the status is healthy again.)
        raise Refused("nothing to publish: the files are what is live")
    repository.lock_deployments(session)
    if deployments.files_hash(directory) != checked.files_hash:
        raise Refused("the files changed during the review: run publish again")
    if repository.active_deployment_id(session) != checked.live_id:
        raise Refused("the live rules changed during the review: run publish again")
    note = diff.summary(checked.changes)
    return deployments.activate(
        session,
        checked.rulesets,
        checked.segments,
        origin=ORIGIN,
        files_hash=checked.files_hash,
        previous=checked.live_id,
        note=f"{message} ({note})" if message else note,
        summary=checked.summary(),
    )
