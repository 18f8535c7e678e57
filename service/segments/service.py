"""Segment membership in the running service.

A customer's segments are recomputed after each of their events is committed (with
the rules, before rules see the event), and by runs that walk every customer a batch
at a time: a scheduled `refresh` (time alone moves people out of "added to cart in the
last 24 h") and a `backfill` when a definition is new, changed or removed. Each
change opens or closes a membership period and adds a `Segment Entered` or `Segment
Left` event to the profile, which rules can trigger on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from service.events import history
from service.language.engine import Engine
from service.language.segments import CompiledSegments, window_bounds
from service.pipeline.isolation import isolated
from service.pipeline.models import Stage
from service.pipeline.service import set_aside
from service.pipeline.stages import StageName, nudge
from service.profiles import facts as profile_facts
from service.profiles import repository as profile_repository
from service.segments import repository
from service.segments.models import SegmentRun
from service.settings import get_settings
from service.vocabulary import SEGMENT_EVENT_SOURCE, EventName

log = structlog.get_logger(__name__)

DEFINITION = "definition"  # `added_by` of a period a segment file opened


@dataclass
class Changed:
    entered: int = 0
    exited: int = 0


def update(
    session: Session,
    *,
    engine: Engine,
    compiled: CompiledSegments,
    version_ids: dict[str, int],
    customers: Iterable[uuid.UUID],
    now: datetime,
    reason: str,
    only: Sequence[str] | None = None,
) -> Changed:
    """Recompute these customers' membership of the active segments (or of `only`,
    which may name segments no longer defined: their members leave) as of `now`.
    The caller holds the customers' locks."""
    scope = set(only) if only is not None else set(compiled.segments)
    wanted = sorted(set(customers))
    if not wanted or not scope:
        return Changed()
    found = matching(session, engine=engine, compiled=compiled, customers=wanted, now=now)
    current = repository.open_memberships(session, wanted, scope)
    entering: list[dict[str, Any]] = []
    leaving: dict[str, list[int]] = {"no longer matches": [], "definition removed": []}
    for customer in wanted:
        if customer not in found:
            continue  # erased
        inside = found[customer] & scope
        had = current.get(customer, {})
        for segment in sorted(inside - had.keys()):
            definition = compiled.segments[segment].definition
            entering.append(
                {
                    "customer_id": customer,
                    "segment": segment,
                    "added_by": DEFINITION,
                    "version": definition.version,
                    "version_id": version_ids.get(compiled.segments[segment].version_name),
                }
            )
        for segment, (period, added_by) in had.items():
            if segment in inside:
                continue
            if segment in compiled.segments:
                leaving["no longer matches"].append(period)
            elif added_by == DEFINITION:
                leaving["definition removed"].append(period)
    # A profile merged into another (by a merge committed meanwhile, too) enters nothing.
    unmerged = profile_repository.lock_unmerged(session, {row["customer_id"] for row in entering})
    entering = [row for row in entering if row["customer_id"] in unmerged]
    opened = repository.enter(session, entering, at=now)
    closed = [
        row
        for why, periods in leaving.items()
        for row in repository.leave(session, periods, at=now, by=why)
    ]
    _announce(session, opened, name=EventName.SEGMENT_ENTERED, reason=reason, now=now)
    _announce(session, closed, name=EventName.SEGMENT_LEFT, reason=reason, now=now)
    return Changed(entered=len(opened), exited=len(closed))


def matching(
    session: Session,
    *,
    engine: Engine,
    compiled: CompiledSegments,
    customers: Sequence[uuid.UUID],
    now: datetime,
) -> dict[uuid.UUID, set[str]]:
    """The segments of `compiled` each customer is in as of `now` (customers without a
    profile left out): one read of their facts and one of their window counts."""
    settings = get_settings()
    profiles = profile_facts.read(session, customers, currency=settings.shop_currency, now=now)
    bounds = window_bounds(compiled.windows, now=now)
    counts = history.window_counts(session, customers, bounds) if bounds else {}
    return {
        customer: compiled.match(
            engine,
            profile=profile.facts(now=now, consent_defaults=settings.consent_defaults),
            counts=counts.get(customer, {}),
        )
        for customer in customers
        if (profile := profiles.get(customer)) is not None
    }


def add(session: Session, *, customer: uuid.UUID, segment: str, by: str, now: datetime) -> bool:
    """Put a customer in a segment that has no definition (a rule's segment action)."""
    opened = repository.enter(
        session,
        [{"customer_id": customer, "segment": segment, "added_by": by}],
        at=now,
    )
    _announce(session, opened, name=EventName.SEGMENT_ENTERED, reason=by, now=now)
    return bool(opened)


def remove(session: Session, *, customer: uuid.UUID, segment: str, by: str, now: datetime) -> bool:
    period = repository.open_period(session, customer=customer, segment=segment)
    closed = repository.leave(session, [period], at=now, by=by) if period else []
    _announce(session, closed, name=EventName.SEGMENT_LEFT, reason=by, now=now)
    return bool(closed)


def _announce(
    session: Session, periods: Sequence[Any], *, name: EventName, reason: str, now: datetime
) -> None:
    """Each change as an event on the profile, unique per period and direction (so a
    change is announced once), evaluated by rules next."""
    if not periods:
        return
    suffix = "entered" if name == EventName.SEGMENT_ENTERED else "left"
    repository.add_events(
        session,
        [
            {
                "source": SEGMENT_EVENT_SOURCE,
                "message_id": f"{p.id}:{suffix}",
                "customer_id": p.customer_id,
                "name": name,
                "occurred_at": now,
                "properties": {"segment": p.segment, "version": p.version, "reason": reason},
            }
            for p in periods
        ],
    )
    nudge(session, StageName.EVALUATE)


# --- runs over every customer ------------------------------------------------------------------


def definitions_changed(
    session: Session, *, before: dict[str, str], after: dict[str, str]
) -> SegmentRun | None:
    """Start a backfill of the segments whose definition is new, changed or removed
    between two sets of definitions ({segment: content hash}). A backfill still
    running is folded into the new one, which starts from the first customer."""
    changed = {name for name, digest in after.items() if before.get(name) != digest}
    changed |= set(before) - set(after)
    if not changed:
        return None
    repository.lock_runs(session)
    # Locked (a worker may be finishing one): a run that ended meanwhile stays done.
    for run in repository.running(session, kind="backfill", for_update=True):
        if run.status != "running":
            continue
        changed |= set(run.segments)
        run.status, run.note = "superseded", "the definitions changed again"
    run = repository.add_run(
        session,
        kind="backfill",
        segments=sorted(changed),
        total=profile_repository.count_customers(session),
    )
    log.info("segments_backfill_started", run_id=run.id, segments=run.segments, total=run.total)
    nudge(session, StageName.SEGMENT_RUNS)
    return run


def start_refresh(session: Session, *, segments: Iterable[str]) -> SegmentRun | None:
    """Start a refresh of these segments unless one is running."""
    names = sorted(segments)
    repository.lock_runs(session)  # the schedule and the API may ask at the same moment
    if not names or repository.running(session, kind="refresh"):
        return None
    run = repository.add_run(
        session, kind="refresh", segments=names, total=profile_repository.count_customers(session)
    )
    log.info("segments_refresh_started", run_id=run.id, total=run.total)
    nudge(session, StageName.SEGMENT_RUNS)
    return run


class Definitions(Protocol):
    """The active segment definitions (`service.ruleset.runtime.Active`)."""

    @property
    def segments(self) -> CompiledSegments | None: ...

    @property
    def version_ids(self) -> dict[str, int]: ...


def advance(
    session: Session,
    *,
    engine: Engine,
    definitions: Callable[[Session], Definitions],
    batch: int,
    now: datetime | None = None,
) -> SegmentRun | None:
    """Take the oldest running run no one else is advancing and do its next batch of
    customers; None when there is none. Committed per batch by the caller: the locks
    on a batch's customers are held for one batch only. The definitions and the time
    are read once the customers are locked: a deployment or an event committed before
    the locks is then seen (read before, a batch could recompute with the previous
    definitions, or miss the event that a concurrent evaluation had just counted)."""
    run = repository.claim_run(session)
    if run is None:
        return None
    customers = profile_repository.customers_after(session, run.cursor, limit=batch)
    profile_facts.lock_for_evaluation(session, customers)
    active = definitions(session)
    now = now or datetime.now(UTC)
    changed = Changed()
    if active.segments is not None:
        compiled = active.segments

        def recompute(batch: Sequence[uuid.UUID]) -> None:
            done = update(
                session,
                engine=engine,
                compiled=compiled,
                version_ids=active.version_ids,
                customers=batch,
                now=now,
                reason=run.kind,
                only=run.segments,
            )
            changed.entered += done.entered
            changed.exited += done.exited

        # A customer whose recomputation raises is set aside; the run goes on.
        for customer, error in isolated(session, customers, recompute, stage=Stage.SEGMENTS):
            set_aside(session, stage=Stage.SEGMENTS, customer_id=customer, error=error)
    run.done += len(customers)
    run.entered += changed.entered
    run.exited += changed.exited
    if customers:
        run.cursor = customers[-1]
    if len(customers) < batch:
        run.status, run.finished_at = "done", now
        if run.kind == "backfill":
            # It may have filled an empty table: statistics from before would mislead
            # the planner on every later read of memberships.
            repository.analyze(session)
        log.info(
            "segments_run_done",
            run_id=run.id,
            kind=run.kind,
            customers=run.done,
            entered=run.entered,
            exited=run.exited,
        )
    return run
