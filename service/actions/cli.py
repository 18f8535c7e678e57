"""`personalize actions …`: list actions by status (dead ones by default) and retry."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from service.vocabulary import ActionStatus


@click.group()
def actions() -> None:
    """Actions that rules produced: see what died, and retry it."""


@actions.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in ActionStatus]),
    default=ActionStatus.DEAD.value,
    show_default=True,
)
@click.option("--limit", type=int, default=100, show_default=True)
def list_actions(status: str, limit: int) -> None:
    """One line per action: id, channel, attempts, rule, and the last error or reason."""
    from service.actions import repository
    from service.db import transaction
    from service.embedded import database

    database()
    with transaction() as session:
        for action in repository.with_status(session, status, after_id=None, limit=limit):
            firing = repository.firing(session, action.firing_id)
            rule = f"{firing.ruleset}/{firing.rule_id}" if firing else "?"
            why = action.last_error or action.reason or ""
            click.echo(f"{action.id}\t{action.channel}\t{action.attempts}\t{rule}\t{why}")


@actions.command()
@click.argument("action_ids", type=int, nargs=-1, required=True)
def retry(action_ids: tuple[int, ...]) -> None:
    """Give dead actions a new set of attempts."""
    from service.actions import service
    from service.db import transaction
    from service.embedded import database

    database()
    failed = False
    with transaction() as session:
        for action_id in action_ids:
            if service.retry_dead(session, action_id=action_id, now=datetime.now(UTC)) is None:
                click.echo(f"{action_id}: not dead (or no such action), left as it is", err=True)
                failed = True
            else:
                click.echo(f"{action_id}: {ActionStatus.PENDING}")
    sys.exit(1 if failed else 0)
