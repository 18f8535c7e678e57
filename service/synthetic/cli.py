"""`personalize demo`: a synthetic store's month of history, then a live trickle, sent
to a running service (`./dev serve` in another terminal), with a summary at the end."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.language.parse import RulesInvalid
from service.synthetic import catalogue, history, live, personas
from service.synthetic.sender import Sender, Tally, Target
from service.synthetic.truth import Truth

console = Console(stderr=True)


def _keys() -> tuple[str, str]:
    """An ingest and a storefront key for the demo, made in the service's database."""
    from service import db
    from service.auth.service import Scope, create_key
    from service.embedded import database as _database

    _database()
    with db.transaction() as session:
        ingest = create_key(session, name="demo-ingest", scopes=[Scope.INGEST]).key
        storefront = create_key(session, name="demo-storefront", scopes=[Scope.STOREFRONT]).key
    return ingest, storefront


def _wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"no service answers ready at {url}: start it first (./dev serve)"
            )
        time.sleep(0.5)


@click.command()
@click.option("--customers", type=click.IntRange(1, 10_000_000), default=2000, show_default=True)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=30,
    show_default=True,
    help="Days of back-dated history.",
)
@click.option("--seed", type=click.IntRange(0, 99_999), default=1, show_default=True)
@click.option(
    "--personas",
    "personas_file",
    type=click.Path(path_type=Path),
    default=None,
    help="A personas file (default: the shipped one; see docs/personas.md).",
)
@click.option("--history/--no-history", default=True, show_default=True)
@click.option(
    "--live-minutes",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Minutes of live traffic after the history; 0: none.",
)
@click.option(
    "--speed",
    type=click.FloatRange(0, min_open=True),
    default=60.0,
    show_default=True,
    help="Live store time runs this many times faster than the clock.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Live deliveries per second, instead of following store time.",
)
@click.option("--flat-out", is_flag=True, help="Live: send as fast as the service answers.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option(
    "--end",
    "end_text",
    default=None,
    help="The store's 'now' (ISO 8601; default: the clock): fixes the traffic.",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the ground truth goes (default: DATA_DIR/demo/truth-SEED.jsonl).",
)
@click.option(
    "--bulk",
    is_flag=True,
    help="Write DAYS of history straight into the database with COPY, no service "
    "needed, for benchmarks (docs/operations.md); no live traffic.",
)
def demo(
    customers: int,
    days: int,
    seed: int,
    personas_file: Path | None,
    history: bool,
    live_minutes: float,
    speed: float,
    rate: float | None,
    flat_out: bool,
    url: str,
    concurrency: int,
    end_text: str | None,
    truth_path: Path | None,
    bulk: bool,
) -> None:
    """Send a synthetic store's traffic to the running service: DAYS of history through
    the batch endpoints, then live shopping through the real intake, with the storefront
    asking for decisions. Customers follow personas (loyal big spenders, bargain
    hunters, window shoppers, …); their personas are kept beside, never sent."""
    from service.settings import get_settings

    try:
        model = personas.load(personas_file)
    except RulesInvalid as exc:
        raise click.ClickException("\n".join(str(e) for e in exc.errors)) from None
    if bulk:
        from service.synthetic import bulk_cli

        bulk_cli.run(
            click.get_current_context(),
            customers=customers,
            days=days,
            seed=seed,
            personas_file=personas_file,
            end_text=end_text,
            truth_path=truth_path,
            console=console,
        )
        return
    _wait_ready(url, timeout=60)
    ingest, storefront = _keys()
    settings = get_settings()
    secrets = {p: s[0] for p, s in settings.webhook_secrets.items() if s}
    now = datetime.fromisoformat(end_text) if end_text else datetime.now(UTC)
    now = now.replace(microsecond=0)
    start, end = now - timedelta(days=days), now + timedelta(seconds=live_minutes * 60 * speed)
    truth_path = truth_path or settings.data_dir / "demo" / f"truth-{seed}.jsonl"
    truth = Truth(
        truth_path,
        header={
            "seed": seed,
            "start": start,
            "now": now,
            "end": end,
            "customers": customers,
            "store": model.store,
            "effects": [e.model_dump() for e in model.effects],
        },
    )
    target = Target(url, ingest, storefront, secrets)
    shop = catalogue.build(model, seed=seed)
    try:
        tally = asyncio.run(
            _run(
                model,
                shop,
                target,
                seed=seed,
                customers=customers,
                start=start,
                now=now,
                end=end,
                history_on=history,
                live_minutes=live_minutes,
                speed=None if (flat_out or rate) else speed,
                rate=rate,
                concurrency=concurrency,
                truth=truth,
            )
        )
    finally:
        truth.close()
    _summary(tally, truth, missing=[p for p in ("shopify", "woocommerce") if p not in secrets])


async def _run(
    model: personas.PersonasFile,
    shop: catalogue.Catalogue,
    target: Target,
    *,
    seed: int,
    customers: int,
    start: datetime,
    now: datetime,
    end: datetime,
    history_on: bool,
    live_minutes: float,
    speed: float | None,
    rate: float | None,
    concurrency: int,
    truth: Truth,
) -> Tally:
    sender = Sender(target, concurrency=concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as bars:
            if history_on:
                task = bars.add_task("history: customers", total=customers)
                await history.run(
                    model,
                    shop,
                    sender,
                    seed=seed,
                    customers=range(customers),
                    start=start,
                    end=now,
                    truth=truth,
                    progress=lambda n: bars.advance(task, n),
                    stop=stop,
                )
            if live_minutes > 0 and not stop.is_set():
                task = bars.add_task("live: acts", total=None)
                runner = live.Live(model, shop, sender, truth, shop=model.store)
                await live.run(
                    runner,
                    seed=seed,
                    customers=range(customers),
                    start=start,
                    now=now,
                    end=end,
                    speed=speed,
                    rate=rate,
                    stop=stop,
                    progress=lambda n: bars.advance(task, n),
                )
    finally:
        await sender.close()
    return sender.tally


def _summary(tally: Tally, truth: Truth, *, missing: list[str]) -> None:
    table = Table(title="Sent")
    table.add_column("channel")
    table.add_column("events / webhooks", justify="right")
    for channel, count in sorted(tally.sent.items()):
        table.add_row(str(channel), f"{count:,}")
    console.print(table)
    answers = Table(title="Answers")
    for name in ("accepted", "duplicates", "rejected", "failed requests", "decisions"):
        answers.add_column(name, justify="right")
    answers.add_row(
        f"{tally.accepted:,}",
        f"{tally.duplicates:,}",
        f"{tally.rejected:,}",
        f"{tally.failed:,}",
        f"{tally.decisions:,}",
    )
    console.print(answers)
    people = Table(title="Customers by persona")
    people.add_column("persona")
    people.add_column("customers", justify="right")
    for persona, count in sorted(truth.personas.items()):
        people.add_row(persona, f"{count:,}")
    console.print(people)
    for rejection in tally.rejections[:5]:
        console.print(f"rejected: {rejection}")
    if missing:
        console.print(
            f"no webhook secret for {', '.join(missing)}: their orders went through "
            "the storefront's events instead (set WEBHOOK_SECRETS)"
        )
    console.print(f"ground truth: {truth.path}")
