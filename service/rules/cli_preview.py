"""`personalize rules render-email`: an email template rendered for one customer, as a
worker would render it, without sending anything."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from service.rules.cli_common import DIR_OPTION, database, load, rules_dir


def _properties(values: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: write name=value", param_hint="--property")
        found[key] = text
    return found


@click.command("render-email")
@click.argument("template")
@click.option(
    "--customer", required=True, help="A profile id or `kind:value` (email:…, user_id:…)."
)
@click.option(
    "--rule", default=None, help="The rule whose offer to use (default: the one sending it)."
)
@click.option(
    "--property",
    "properties",
    multiple=True,
    metavar="NAME=VALUE",
    help="A property of the triggering event, for `{{ event.properties.NAME }}` (repeat).",
)
@DIR_OPTION
def render_email(
    template: str,
    customer: str,
    rule: str | None,
    properties: tuple[str, ...],
    directory: Path | None,
) -> None:
    """Print TEMPLATE (templates/TEMPLATE.yaml) rendered for one customer: the
    subject and text they would get from the rule that sends it, nothing sent."""
    from service.db import transaction
    from service.rules import preview

    folder = rules_dir(directory)
    rulesets, _segments = load(folder)
    given = _properties(properties)
    database()
    try:
        with transaction() as session:
            email = preview.email(
                session,
                directory=folder,
                rulesets=rulesets,
                template=template,
                customer=customer,
                rule=rule,
                properties=given,
                now=datetime.now(UTC),
            )
            session.rollback()
    except preview.PreviewProblem as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"to:      {email.to or '(no email address: it would not be sent)'}")
    click.echo(f"subject: {email.subject}")
    source = f"rule {email.rule}" if email.rule else "no rule sends it: a placeholder offer"
    click.echo(f"offer:   {email.offer['offer']} until {email.offer['expires_at'][:16]} ({source})")
    click.echo("")
    click.echo(email.text.rstrip("\n"))
