"""`personalize rules diff | simulate | publish`: the files on disk are a draft until
published. `diff` says what would change against what is live, `simulate` replays a
past period through both, and `publish` checks everything and makes the files live,
keeping the checks in the deployment."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.rules.cli_common import (
    DIR_OPTION,
    SINCE_OPTION,
    UNTIL_OPTION,
    database,
    load,
    period,
    rules_dir,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from service.rules.simulate import Comparison


@click.command()
@DIR_OPTION
def diff(directory: Path | None) -> None:
    """What making the files live would change: rulesets and segments added, removed or
    changed, and in each changed ruleset the rules, placements and experiments added,
    removed or changed, with the fields that changed. Exit 0 either way."""
    from service.db import transaction
    from service.rules import diff as changes
    from service.rules import live
    from service.ruleset import repository

    loaded, segments = load(rules_dir(directory))
    database()
    with transaction() as session:
        live_id = repository.active_deployment_id(session)
        found = changes.diff(live.loaded(session, live_id), [*loaded, *segments])
    click.echo(f"files in {rules_dir(directory)} against live deployment {live_id}:")
    for line in changes.lines(found):
        click.echo(line)
    click.echo(changes.summary(found))


@click.command()
@DIR_OPTION
@SINCE_OPTION
@UNTIL_OPTION
@click.option(
    "--customers",
    "rule",
    default=None,
    metavar="RULE",
    help="Also list the customers this rule would reach, with the files and live.",
)
@click.option("--limit", default=20, show_default=True, help="Customers listed.")
@click.option("--after", default=None, help="List customers after this customer id (paging).")
def simulate(
    directory: Path | None,
    since: str | None,
    until: str | None,
    rule: str | None,
    limit: int,
    after: str | None,
) -> None:
    """Replay the stored events of a past period (default: the last 7 days) through the
    files and through the live rules, with no side effects, and print how many
    customers each rule would have acted for."""
    from service.db import transaction
    from service.rules import live
    from service.rules import simulate as sim
    from service.ruleset import repository
    from service.ruleset.runtime import RUNTIME

    loaded, _segments = load(rules_dir(directory))
    start, end = period(since, until)
    database()
    with transaction() as session:
        live_id = repository.active_deployment_id(session)
        if live.is_live(session, directory=rules_dir(directory), deployment_id=live_id):
            click.echo("note: these files are what is live, so both columns are the same")
        result = sim.compare(
            session,
            engine=RUNTIME.engine,
            files=[RUNTIME.engine.compile(item) for item in loaded],
            live=RUNTIME.active(session).rulesets,
            since=start,
            until=end,
        )
        click.echo(f"{result.events} events from {start.isoformat()} to {end.isoformat()}")
        _table(result)
        if rule is not None:
            _customers(session, result, rule=rule, limit=limit, after=after)
        session.rollback()  # nothing a replay read or wrote is kept


def _table(result: Comparison) -> None:
    click.echo(f"{'rule':40} {'these files':>12} {'live':>8} {'change':>8}")
    for row in result.rows():
        click.echo(f"{row.rule_id:40} {row.files:>12} {row.live:>8} {row.change:>+8}")


def _customers(
    session: Session, result: Comparison, *, rule: str, limit: int, after: str | None
) -> None:
    """One page of the customers `rule` reaches: id, with the files / live, and who
    they are (user id, contact details masked; not device or order ids)."""
    from service.events.identity import ANONYMOUS_ID, ORDER
    from service.profiles import repository as profiles_repository
    from service.profiles import service as profiles

    start = uuid.UUID(after) if after else None
    reached = result.reached(rule)
    page = [r for r in reached if start is None or r[0] > start][:limit]
    files = sum(1 for _, by_files, _ in reached if by_files)
    click.echo(f"\ncustomers {rule} reaches: {files} with these files, {len(reached)} either way")
    click.echo(f"{'customer':36} {'files':>5} {'live':>5}  identities")
    for customer_id, by_files, by_live in page:
        customer = profiles_repository.get_customer(session, customer_id)
        names = profiles.identities(session, customer) if customer else []
        shown = " ".join(f"{k}:{v}" for k, v in names if k not in (ANONYMOUS_ID, ORDER))
        click.echo(f"{customer_id!s:36} {_yes(by_files):>5} {_yes(by_live):>5}  {shown}")
    if len(page) == limit and page[-1] != reached[-1]:
        click.echo(f"more: --after {page[-1][0]}")


def _yes(value: bool) -> str:
    return "yes" if value else "-"


@click.command()
@DIR_OPTION
@SINCE_OPTION
@UNTIL_OPTION
@click.option("--message", "-m", default=None, help="Why: kept in the deployment's note.")
@click.option("--dry-run", is_flag=True, help="Check and print everything; activate nothing.")
def publish(
    directory: Path | None,
    since: str | None,
    until: str | None,
    message: str | None,
    dry_run: bool,
) -> None:
    """Validate the files, run their tests, show what changes against live and a
    backtest over a past period (default: the last 7 days), then make them live. The
    tests, the changes and the backtest are kept in the deployment. Nothing is
    published when a test fails (exit 1) or nothing changes."""
    from service.db import transaction
    from service.language.parse import RulesInvalid
    from service.rules import diff, publish

    folder = rules_dir(directory)
    load(folder)  # every error, with file and line, before anything else
    start, end = period(since, until)
    database()
    with transaction() as session:
        try:
            checked = publish.review(session, directory=folder, since=start, until=end)
        except RulesInvalid:  # a file changed since: its errors, and exit 1
            load(folder)
            raise
        session.rollback()  # nothing the backtest read or wrote is kept
    tests = checked.tests
    for failed in (r for r in tests.results if not r.passed):
        click.echo(f"FAIL  {failed.file} :: {failed.name}")
        for failure in failed.failures:
            click.echo(f"      {failure}")
    click.echo(f"tests: {tests.passed} passed, {tests.failed} failed")
    click.echo(f"changes against live deployment {checked.live_id}:")
    for line in diff.lines(checked.changes):
        click.echo(line)
    click.echo(diff.summary(checked.changes))
    if checked.backtest is not None:
        events = checked.backtest.events
        click.echo(f"backtest: {events} events from {start.isoformat()} to {end.isoformat()}")
        _table(checked.backtest)
    if dry_run:
        click.echo("dry run: nothing was published")
        return
    try:
        with transaction() as session:
            deployment = publish.publish(
                session, checked=checked, directory=folder, message=message
            )
            click.echo(f"published: deployment {deployment.id} is live")
    except publish.Refused as exc:
        click.echo(f"not published: {exc}", err=True)
        sys.exit(1 if tests.failed or checked.changes else 0)
