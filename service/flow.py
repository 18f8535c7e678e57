"""The flow of data through the service, stage by stage: read this first.

    intake (API, webhooks) ──► resolve ──► evaluate ──────────► hand_over ──► dispatch
     events.intake              events      segments, then        actions       actions.tasks
                                 → profiles  rules (firings,       (due rows     (one task an
                                             actions)              to workers)   action)
    segment runs (refresh, backfill) ──► evaluate (their Segment Entered / Left events)
    timers: waiting rules and actions that come due (`run_due` here, actions.hand_over)
    decisions, health: read only

Each stage drains its outbox (rows the previous stage committed) in batches, each in
its own transaction (`service.pipeline.stages.drain`); an item whose processing raises
is set aside (`service.pipeline.isolation`) and the rest go on. A committed batch
nudges the next stage; the scheduler sweeps every stage anyway, so a lost nudge or a
broker outage only delays work. Tasks and the scheduler's entries are made from this
module: a stage is added here, once.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery, current_task
from sqlalchemy.orm import Session

from service.actions import service as actions
from service.health import repository as health
from service.pipeline.stages import Due, Periodic, Stage, StageName, drain
from service.profiles import resolution
from service.profiles import service as profiles
from service.rules import service as rules
from service.ruleset.runtime import RUNTIME
from service.segments import service as segments
from service.settings import Settings, get_settings
from service.worker import DatabaseTask


def _now() -> datetime:
    return datetime.now(UTC)


def evaluate_pending(session: Session, *, limit: int = 500, now: datetime | None = None) -> int:
    """Rules evaluate the events resolved since; the rules that fire make their actions."""
    return rules.evaluate_pending(session, act=actions.create_for_firing, limit=limit, now=now)


def run_due(session: Session, *, limit: int = 500, now: datetime | None = None) -> int:
    """Waiting rules whose time has come are decided; those that fire make their actions."""
    return rules.run_due(session, act=actions.create_for_firing, limit=limit, now=now)


def _advance_segment_runs(session: Session, batch: int) -> int:
    """One batch of customers of the oldest segment run; 1 if there was one."""
    run = segments.advance(
        session,
        engine=RUNTIME.engine,
        definitions=RUNTIME.active,
        batch=get_settings().segment_batch_size,
    )
    return 0 if run is None else 1


def _start_refresh(session: Session) -> int | None:
    active = RUNTIME.active(session)
    if active.segments is None:
        return None
    run = segments.start_refresh(session, segments=active.segments.segments)
    return run.id if run else None


def _heartbeat(session: Session) -> None:
    health.record_heartbeat(
        session, hostname=current_task.request.hostname or "unknown", pid=os.getpid()
    )


def _sweep(settings: Settings) -> float:
    return float(settings.resolve_sweep_s)


# Due actions to the workers: swept here, and run by the timers as they come due (DUE).
HAND_OVER = Stage(
    StageName.HAND_OVER,
    step=lambda session, n: len(actions.hand_over(session, now=_now(), limit=n)),
    batch=500,
    budget_s=10.0,
    sweep_s=lambda settings: float(settings.timers_poll_s) * 10,
)

STAGES: tuple[Stage, ...] = (
    Stage(
        StageName.RESOLVE,
        step=lambda session, n: resolution.resolve_pending(session, limit=n),
        batch=1000,
        budget_s=10.0,
        sweep_s=_sweep,
        then=(StageName.EVALUATE,),
    ),
    Stage(
        StageName.EVALUATE,
        step=lambda session, n: evaluate_pending(session, limit=n),
        batch=500,
        budget_s=10.0,
        sweep_s=_sweep,
    ),
    # A run gives its worker process back every 0.5 s and queues itself behind whatever
    # came meanwhile: with a 10 s budget, a backfill and the rules evaluating its
    # announcements held both processes of a worker, and resolving new events waited up
    # to 10 s (membership p99 9.1 s during a backfill of 25,000 customers).
    Stage(
        StageName.SEGMENT_RUNS,
        step=_advance_segment_runs,
        batch=1,
        budget_s=0.5,
        sweep_s=lambda settings: 5.0,
        requeue=True,
    ),
    HAND_OVER,
)

PERIODIC: tuple[Periodic, ...] = (
    # Shows operators that a worker is consuming.
    Periodic("heartbeat", _heartbeat, every_s=lambda s: float(s.heartbeat_interval_s)),
    # RFM quintiles across the customer base (safe to run at any time).
    Periodic("rfm", profiles.rfm_job, every_s=lambda s: float(s.rfm_interval_s)),
    # Time alone moves customers out of "added to cart in the last 24 h".
    Periodic("segments-refresh", _start_refresh, every_s=lambda s: float(s.segment_refresh_s)),
)

# Run by `personalize timers` (several may run: rows are claimed with SKIP LOCKED).
DUE: tuple[Due, ...] = (
    Due("waiting-rules", step=lambda session, n: run_due(session, limit=n), batch=500),
    Due("actions", step=HAND_OVER.step, batch=HAND_OVER.batch),
)


def _drainer(stage: Stage) -> Any:
    def run() -> int:
        return drain(stage)

    run.__name__ = run.__qualname__ = f"drain_{stage.name}"
    run.__doc__ = f"Drain the {stage.name} stage's outbox."
    return run


def register(app: Celery) -> dict[str, dict[str, Any]]:
    """Make a task for every stage and periodic job on `app`; returns the scheduler's
    entries (each stage's sweep, each periodic job)."""
    settings = get_settings()
    schedule: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        app.task(name=stage.task, acks_late=True, ignore_result=True)(_drainer(stage))
        schedule[stage.task] = {
            "task": stage.task,
            "schedule": timedelta(seconds=stage.sweep_s(settings)),
        }
    for job in PERIODIC:
        app.task(name=job.task, base=DatabaseTask)(job.run)
        schedule[job.task] = {
            "task": job.task,
            "schedule": timedelta(seconds=job.every_s(settings)),
        }
    return schedule
