"""`personalize demo --bulk`: the synthetic store's history written straight into the
database (`bulk.py`), with no service running, for benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.synthetic import bulk

# demo's options that only sending traffic uses.
NOT_BULK = ("history", "live_minutes", "speed", "rate", "flat_out", "url", "concurrency")


def run(
    context: click.Context,
    *,
    customers: int,
    days: int,
    seed: int,
    personas_file: Path | None,
    end_text: str | None,
    truth_path: Path | None,
    console: Console,
) -> None:
    given = [
        f"--{name.replace('_', '-')}"
        for name in NOT_BULK
        if context.get_parameter_source(name)
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ]
    if given:
        raise click.UsageError(f"--bulk writes history only: {', '.join(given)} do not apply")
    from service import crypto, db
    from service.embedded import database as _database
    from service.settings import get_settings

    url = db.sqlalchemy_url(_database())
    try:  # before starting workers that would each fail the same way
        crypto.encrypt(crypto.keyed_hash("email", "check"))
    except crypto.KeysMissing as exc:
        message = f"{exc}: bulk mode hashes and encrypts emails and phones"
        raise click.ClickException(message) from None
    db.upgrade(url)
    try:
        end = bulk.utc(datetime.fromisoformat(end_text)) if end_text else datetime.now(UTC)
    except ValueError:
        raise click.BadParameter("not an ISO 8601 time", param_hint="--end") from None
    end = end.replace(microsecond=0)
    plan = bulk.Plan(seed, customers, end - timedelta(days=days), end, personas_file)
    truth_path = truth_path or get_settings().data_dir / "demo" / f"truth-{seed}.jsonl"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as bars:
            task = bars.add_task("bulk: customers", total=customers)
            loaded = bulk.load(
                url, plan, truth=truth_path, progress=lambda n: bars.advance(task, n)
            )
    except bulk.AlreadyLoaded as exc:
        raise click.ClickException(str(exc)) from None
    _summary(console, loaded, truth_path)


def _summary(console: Console, loaded: bulk.Loaded, truth_path: Path) -> None:
    table = Table(title=f"Written in {loaded.seconds:,.1f} s")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in loaded.rows.items():
        table.add_row(name, f"{count:,}")
    table.add_row("all", f"{loaded.total_rows:,} ({loaded.total_rows / loaded.seconds:,.0f}/s)")
    console.print(table)
    people = Table(title="Customers by persona")
    people.add_column("persona")
    people.add_column("customers", justify="right")
    for persona, count in sorted(loaded.personas.items()):
        people.add_row(persona, f"{count:,}")
    console.print(people)
    console.print(
        f"load: webhook_deliveries id {loaded.load_id}; events and orders have source "
        f"'synthetic'; segments fill on the next refresh\nground truth: {truth_path}"
    )
