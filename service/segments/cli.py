"""`personalize segments …`: preview segment files before they go live."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click

from service.settings import get_settings


@click.group()
def segments() -> None:
    """Segments: preview the files on disk against the customers there are now."""


@segments.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Rule files directory (default: RULES_DIR, `rules`); segments are in segments/.",
)
@click.option("--segment", "only", default=None, help="One segment (default: every one).")
@click.option("--limit", default=20, show_default=True, help="Members listed per segment.")
@click.option("--after", default=None, help="List members after this customer id (paging).")
def preview(directory: Path | None, only: str | None, limit: int, after: str | None) -> None:
    """How many customers each segment file would hold now, against its live size, how
    many would enter and leave, and its first members. Nothing is written."""
    from service.db import transaction
    from service.embedded import database as _database
    from service.language.loader import load_all
    from service.language.parse import RulesInvalid
    from service.language.segments import compile_segments
    from service.ruleset.runtime import RUNTIME
    from service.segments.preview import preview as run_preview

    folder = directory or get_settings().rules_dir
    try:
        _, loaded = load_all(folder)
    except RulesInvalid as exc:
        for error in exc.errors:
            click.echo(f"{folder / error.file}:{error.line or 1}: {error.message}", err=True)
        sys.exit(1)
    chosen = [s for s in loaded if only is None or s.name == only]
    if not chosen:
        click.echo(f"no segment {only!r} in {folder}", err=True)
        sys.exit(1)
    start = uuid.UUID(after) if after else None
    _database()
    compiled = compile_segments(RUNTIME.engine, chosen)
    with transaction() as session:
        rows = run_preview(
            session,
            engine=RUNTIME.engine,
            compiled=compiled,
            now=datetime.now(UTC),
            limit=limit,
            after=start,
        )
        session.rollback()
    click.echo(f"{'segment':28} {'would hold':>10} {'live':>8} {'enter':>7} {'leave':>7}")
    for row in rows:
        counts = f"{row.would_hold:>10} {row.live:>8} {row.entering:>7} {row.leaving:>7}"
        click.echo(f"{row.segment:28} {counts}")
    for row in rows:
        if row.members:
            click.echo(f"\n{row.segment}: " + " ".join(str(m) for m in row.members))
