"""`personalize experiments …`: list, show (the results), stop (a rule-file change)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from service.settings import get_settings


@click.group()
def experiments() -> None:
    """Experiments declared in the rule files: their results, and stopping them."""


@experiments.command("list")
def list_command() -> None:
    """Each experiment: status, units exposed, target."""
    from service.db import transaction
    from service.experiments import service

    with transaction() as session:
        rows = service.list_experiments(session, now=datetime.now(UTC))
    for row in rows:
        target = ", ".join(f"{k} {v}" for k, v in row.target.items()) or "-"
        click.echo(f"{row.key:<28} {row.status:<10} {row.units:>8} units  {target}")
    if not rows:
        click.echo("no experiments declared")


@experiments.command()
@click.argument("key")
@click.option("--segments", is_flag=True, help="Break the results down by segment.")
def show(key: str, segments: bool) -> None:
    """An experiment's results as JSON (the same document as GET /v1/experiments/KEY)."""
    from service.db import transaction
    from service.experiments import service

    with transaction() as session:
        found = (
            service.by_segment(session, key)
            if segments
            else service.show(session, key, now=datetime.now(UTC))
        )
    if found is None:
        click.echo(f"no experiment {key!r} is declared in the active rule files", err=True)
        sys.exit(1)
    click.echo(found.model_dump_json(indent=2))


@experiments.command()
@click.argument("key")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Rule files directory (default: RULES_DIR, `rules`).",
)
@click.option("--at", "at", type=click.DateTime(), default=None, help="When (UTC; default now).")
def stop(key: str, directory: Path | None, at: datetime | None) -> None:
    """Write `stop:` into the rule file that declares KEY and print the change. It takes
    effect when the files are deployed (`personalize rules reload`); to ship a variant,
    make its change the target's own in the same file."""
    from service.experiments.stopping import CannotStop
    from service.experiments.stopping import stop as stop_file
    from service.language.parse import RulesInvalid

    when = (at or datetime.now(UTC)).replace(microsecond=0)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    try:
        done = stop_file(directory or get_settings().rules_dir, key=key, at=when)
    except (CannotStop, RulesInvalid) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(done.diff, nl=False)
    click.echo(f"{done.file}: experiment {key} stops at {when.isoformat()}.")
    click.echo("Deploy it with `personalize rules reload`; units then see the target as written.")
