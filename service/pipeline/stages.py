"""The kernel of the pipeline: what a stage is, and the one loop every stage runs.

A stage takes work from its outbox (rows a previous stage committed) a batch at a
time, each batch in a transaction of its own, until the outbox is empty or its time
budget is spent; the scheduler's sweep and the nudge sent after a commit start it
again. The stages themselves, in the order data flows through them, are registered in
`service/flow.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.orm import Session

from service import db
from service.settings import Settings
from service.worker import nudge_after_commit, nudger

log = structlog.get_logger(__name__)


class StageName(StrEnum):
    """Every stage of the pipeline, in the order data flows through them."""

    RESOLVE = "resolve"  # stored events put on profiles
    EVALUATE = "evaluate"  # resolved events: segments recomputed, rules evaluated
    SEGMENT_RUNS = "segment_runs"  # refreshes and backfills of segment membership
    HAND_OVER = "hand_over"  # due actions handed to workers for delivery


def task_name(stage: StageName) -> str:
    return f"stage.{stage}"


@dataclass(frozen=True)
class Stage:
    """One stage: `step` does up to `batch` items of its outbox in the caller's
    transaction and returns how many it did (fewer than `batch`: the outbox is empty)."""

    name: StageName
    step: Callable[[Session, int], int]
    batch: int
    budget_s: float  # one task run; the rest waits for the next nudge or sweep
    sweep_s: Callable[[Settings], float]  # how often the scheduler starts it anyway
    then: tuple[StageName, ...] = ()  # nudged after each committed batch that did work
    # Out of budget with work left: queue itself again behind what came meanwhile,
    # instead of holding a worker process (long runs give the worker back).
    requeue: bool = False

    @property
    def task(self) -> str:
        return task_name(self.name)


def drain(stage: Stage) -> int:
    """The body of every stage's task: committed batches until the outbox is empty or
    the budget is spent. Returns the items done."""
    started, total = time.monotonic(), 0
    while True:
        with db.transaction() as session:
            done = stage.step(session, stage.batch)
        total += done
        if done:
            for following in stage.then:
                nudger().nudge(task_name(following))
        if done < stage.batch:
            break
        if time.monotonic() - started >= stage.budget_s:
            if stage.requeue:
                nudger().nudge(stage.task)
            break
    if total:
        log.info(
            "stage_drained",
            stage=str(stage.name),
            items=total,
            seconds=round(time.monotonic() - started, 3),
        )
    return total


def nudge(session: Session, stage: StageName) -> None:
    """Start `stage` once this transaction has committed what it will work on."""
    nudge_after_commit(session, task_name(stage))


@dataclass(frozen=True)
class Periodic:
    """A job the scheduler starts every `every_s`, in one transaction."""

    name: str
    run: Callable[[Session], Any]
    every_s: Callable[[Settings], float]

    @property
    def task(self) -> str:
        return f"periodic.{self.name}"


@dataclass(frozen=True)
class Due:
    """Work that comes due at a moment (waiting rules, scheduled actions): the timers
    process runs `step` (up to `batch` in the caller's transaction, returning how many)
    every TIMERS_POLL_S, and again at once after a full batch."""

    name: str
    step: Callable[[Session, int], int]
    batch: int
    after_commit: Callable[[], int] | None = None  # e.g. hand what was claimed to the broker
