"""What the `personalize rules …` commands share: the directory option, loading the
files with every error printed, periods, and quiet logs."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from service.settings import get_settings

DEFAULT_PERIOD = timedelta(days=7)  # simulate and publish replay this much by default

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Rule files directory (default: RULES_DIR, `rules`).",
)
SINCE_OPTION = click.option(
    "--since",
    default=None,
    help="Start of the replayed period: an ISO date or time (2026-11-01), or how long "
    "ago (7d, 36h). Default: 7 days ago.",
)
UNTIL_OPTION = click.option(
    "--until", default=None, help="End of the replayed period, written the same way (default: now)."
)


def quiet_logs() -> None:
    """Only warnings and errors reach the log (on stderr) while a command prints its
    tables and lists on stdout; LOG_LEVEL=debug keeps everything."""
    root = logging.getLogger()
    if get_settings().log_level != "debug" and root.level < logging.WARNING:
        root.setLevel(logging.WARNING)


def rules_dir(directory: Path | None) -> Path:
    return directory or get_settings().rules_dir


def load(directory: Path) -> tuple[list[Any], list[Any]]:
    """The rule files and the segment files, or exit 1 with every error."""
    from service.language.loader import load_all
    from service.language.parse import RulesInvalid

    try:
        return load_all(directory)
    except RulesInvalid as exc:
        for error in exc.errors:
            click.echo(f"{directory / error.file}:{error.line or 1}: {error.message}", err=True)
        click.echo(f"{len(exc.errors)} error(s); nothing would be activated.", err=True)
        sys.exit(1)


def when(value: str, *, now: datetime) -> datetime:
    """An ISO date or time (UTC unless it says), or a duration before `now`."""
    if re.fullmatch(r"\d+\s*[smhdw]", value.strip()):
        from service.language.schema import parse_duration

        return now - parse_duration(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give an ISO date or time, or e.g. 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def period(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    end = when(until, now=now) if until else now
    start = when(since, now=end) if since else end - DEFAULT_PERIOD
    if start >= end:
        raise click.BadParameter(f"the period is empty: {start.isoformat()} to {end.isoformat()}")
    return start, end


def database() -> None:
    from service.embedded import database as _database

    _database()
