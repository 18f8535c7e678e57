"""`personalize rules …`: check, test and try rule files before they go live, and
manage the active version. Drafts and publishing: `cli_publish.py`; previews:
`cli_preview.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.rules.cli_common import DIR_OPTION, database, load, quiet_logs, rules_dir


@click.group()
def rules() -> None:
    """Rule files: validate, test, diff, simulate, publish, rollback."""
    quiet_logs()


@rules.command()
@DIR_OPTION
def validate(directory: Path | None) -> None:
    """Check every rule and segment file (schema, event names, traits, contradictions,
    ids)."""
    loaded, segments = load(rules_dir(directory))
    count = sum(len(item.definition.rules) for item in loaded)
    click.echo(f"ok: {len(loaded)} rulesets, {count} rules, {len(segments)} segments")


@rules.command("test")
@DIR_OPTION
def run_tests(directory: Path | None) -> None:
    """Run the tests written in the rule and segment files (fake clock; exit 1 on any
    failure)."""
    from service.language.engine import Engine
    from service.rules import publish

    loaded, segments = load(rules_dir(directory))
    run = publish.run_tests(loaded, segments, engine=Engine())
    for result in run.results:
        click.echo(f"{'PASS' if result.passed else 'FAIL'}  {result.file} :: {result.name}")
        for failure in result.failures:
            click.echo(f"      {failure}")
    for file in run.untested:
        click.echo(f"WARN  {file} has no tests")
    click.echo(f"{run.passed} passed, {run.failed} failed")
    sys.exit(1 if run.failed else 0)


@rules.command()
@DIR_OPTION
def reload(directory: Path | None) -> None:
    """Activate the rule files now, if they differ from what is live, after a rollback
    too (all valid, or nothing changes). `publish` checks them first."""
    from service.db import transaction
    from service.rules import deployments

    database()
    with transaction() as session:
        result = deployments.reload(session, directory=rules_dir(directory), origin="cli")
    for error in result.errors:
        click.echo(f"{error['file']}:{error['line'] or 1}: {error['message']}", err=True)
    click.echo(f"{result.status} (deployment {result.deployment_id})")
    sys.exit(1 if result.status == "rejected" else 0)


@rules.command()
@click.option("--deployment", "deployment_id", type=int, default=None, help="Deployment id.")
@click.option("--version", "version_id", type=int, default=None, help="Ruleset version id.")
def rollback(deployment_id: int | None, version_id: int | None) -> None:
    """Activate an earlier deployment, or one earlier ruleset version."""
    from service.db import transaction
    from service.rules import deployments

    if (deployment_id is None) == (version_id is None):
        raise click.UsageError("give --deployment or --version")
    database()
    try:
        with transaction() as session:
            deployment = deployments.rollback(
                session, deployment_id=deployment_id, version_id=version_id
            )
            click.echo(f"active: deployment {deployment.id} ({deployment.note})")
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None


STATUS_OK, STATUS_REJECTED, STATUS_NONE_ACTIVE = 0, 1, 3  # 2 is click's usage error


@rules.command()
@DIR_OPTION
def status(directory: Path | None) -> None:
    """The active deployment, its rulesets, the files on disk beside it, and the newest
    attempt's errors. Exits 0 when rules are active and the newest attempt is the
    active one, 1 when the newest attempt was rejected (the rules before it still run),
    3 when no rules are active."""
    from service.db import transaction
    from service.rules import live
    from service.ruleset import repository

    database()
    code = STATUS_OK
    folder = rules_dir(directory)
    with transaction() as session:
        active_id = repository.active_deployment_id(session)
        active = repository.get_deployment(session, active_id) if active_id else None
        if active is None:
            click.echo("no active rules: every decision is answered 422 until rules are activated")
            code = STATUS_NONE_ACTIVE
        else:
            when = active.created_at.isoformat(timespec="seconds")
            click.echo(f"live: deployment {active.id} ({active.origin}, {when})")
            if active.note:
                click.echo(f"  {active.note}")
            for v in repository.versions(session, active.version_ids):
                click.echo(f"  {v.name:30} v{v.version:<3} id {v.id:<5} {v.content_hash[:12]}")
        states = live.states(session, directory=folder, deployment_id=active_id)
        _print_states(folder, states)
        last = repository.latest_deployment(session)
        if last is not None and last.status == "rejected":
            click.echo(f"newest attempt (deployment {last.id}) was rejected:")
            for error in last.errors:
                click.echo(f"  {error['file']}:{error['line'] or 1}: {error['message']}")
            code = code or STATUS_REJECTED
    sys.exit(code)


def _print_states(folder: Path, states: list) -> None:  # type: ignore[type-arg]
    differ = [s for s in states if s.state != "same"]
    if not differ:
        click.echo(f"files in {folder}: the same as live")
        return
    click.echo(f"files in {folder}: {len(differ)} differ from live")
    for state in differ:
        click.echo(f"  {state.state:13} {state.file}")
    click.echo("  (`rules diff` shows what changes; `rules publish` makes them live)")


@rules.command()
@click.option("--limit", type=int, default=10, show_default=True)
def deployments(limit: int) -> None:
    """Recent deployments, newest first: id, time, origin, status, and what changed
    (the ids `rollback --deployment` takes)."""
    from service.db import transaction
    from service.ruleset import repository

    database()
    with transaction() as session:
        active_id = repository.active_deployment_id(session)
        for d in repository.deployments(session, limit=limit):
            mark = "*" if d.id == active_id else " "
            when = d.created_at.isoformat(timespec="seconds")
            why = d.note or (f"{len(d.errors)} error(s)" if d.errors else "")
            click.echo(f"{mark}{d.id:>5}  {when}  {d.origin:9} {d.status:9} {why}".rstrip())


@rules.command()
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write here.")
def schema(output: Path | None) -> None:
    """Print the rule files' JSON Schema (rules/schema.json is this output)."""
    import json

    from service.language.files import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


def _register() -> None:
    from service.rules.cli_preview import render_email
    from service.rules.cli_publish import diff, publish, simulate

    for command in (diff, simulate, publish, render_email):
        rules.add_command(command)


_register()
