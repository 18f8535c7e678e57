"""`personalize rules …`: check, test and try rule files before they go live, and
manage the active version."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from service.settings import get_settings

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Rule files directory (default: RULES_DIR, `rules`).",
)


def _dir(directory: Path | None) -> Path:
    return directory or get_settings().rules_dir


def _load(directory: Path) -> tuple[list, list]:  # type: ignore[type-arg]
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


@click.group()
def rules() -> None:
    """Rule files: validate, test, simulate, reload, rollback."""


@rules.command()
@DIR_OPTION
def validate(directory: Path | None) -> None:
    """Check every rule and segment file (schema, event names, traits, contradictions,
    ids)."""
    loaded, segments = _load(_dir(directory))
    count = sum(len(item.definition.rules) for item in loaded)
    click.echo(f"ok: {len(loaded)} rulesets, {count} rules, {len(segments)} segments")


@rules.command("test")
@DIR_OPTION
def run_tests(directory: Path | None) -> None:
    """Run the tests written in the rule and segment files (fake clock; exit 1 on any
    failure)."""
    from service.language.engine import Engine
    from service.language.loader import LoadedSegment
    from service.language.segments import run_tests as run_segment_file
    from service.rules.testing import run_file

    engine = Engine()
    defaults = get_settings().consent_defaults
    passed = failed = 0
    loaded, segments = _load(_dir(directory))
    for item in [*loaded, *segments]:
        runner = run_segment_file if isinstance(item, LoadedSegment) else run_file
        for result in runner(item, engine=engine, consent_defaults=defaults):
            mark = "PASS" if result.passed else "FAIL"
            click.echo(f"{mark}  {item.file} :: {result.name}")
            for failure in result.failures:
                click.echo(f"      {failure}")
            passed += result.passed
            failed += not result.passed
        if not item.definition.tests:
            click.echo(f"WARN  {item.file} has no tests")
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def _when(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@rules.command()
@DIR_OPTION
@click.option("--since", required=True, help="ISO date or time, e.g. 2026-11-01.")
@click.option("--until", default=None, help="ISO date or time (default: now).")
def simulate(directory: Path | None, since: str, until: str | None) -> None:
    """Replay stored events through these files and the active version, with no side
    effects, and print how many customers each rule would have acted for."""
    from service.db import transaction
    from service.embedded import database as _database
    from service.rules import simulate as sim
    from service.ruleset.runtime import RUNTIME

    loaded, _segments = _load(_dir(directory))
    _database()
    start, end = _when(since), _when(until) if until else datetime.now(UTC)
    with transaction() as session:
        candidate = [RUNTIME.engine.compile(item) for item in loaded]
        active = RUNTIME.active(session).rulesets
        new = sim.replay(session, engine=RUNTIME.engine, rulesets=candidate, since=start, until=end)
        old = sim.replay(session, engine=RUNTIME.engine, rulesets=active, since=start, until=end)
        session.rollback()  # nothing a replay read or wrote is kept
    click.echo(f"{new.events} events from {start.isoformat()} to {end.isoformat()}")
    click.echo(f"{'rule':40} {'these files':>12} {'active':>8} {'change':>8}")
    for rule_id in sorted(set(new.acted) | set(old.acted)):
        a, b = len(new.acted.get(rule_id, ())), len(old.acted.get(rule_id, ()))
        click.echo(f"{rule_id:40} {a:>12} {b:>8} {a - b:>+8}")


@rules.command()
@DIR_OPTION
def reload(directory: Path | None) -> None:
    """Activate the rule files now (all valid, or nothing changes)."""
    from service.db import transaction
    from service.embedded import database as _database
    from service.rules import deployments

    _database()
    with transaction() as session:
        result = deployments.reload(session, directory=_dir(directory), origin="cli")
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
    from service.embedded import database as _database
    from service.rules import deployments

    if (deployment_id is None) == (version_id is None):
        raise click.UsageError("give --deployment or --version")
    _database()
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
def status() -> None:
    """The active deployment, its rulesets, and the newest attempt's errors. Exits 0
    when rules are active and the newest attempt is the active one, 1 when the newest
    attempt was rejected (the rules before it still run), 3 when no rules are active."""
    from service.db import transaction
    from service.embedded import database as _database
    from service.ruleset import repository

    _database()
    code = STATUS_OK
    with transaction() as session:
        active_id = repository.active_deployment_id(session)
        active = repository.get_deployment(session, active_id) if active_id else None
        if active is None:
            click.echo("no active rules: every decision is answered 422 until rules are activated")
            code = STATUS_NONE_ACTIVE
        else:
            click.echo(f"active: deployment {active.id} ({active.origin}, {active.created_at})")
            for v in repository.versions(session, active.version_ids):
                click.echo(f"  {v.name:30} v{v.version}  id {v.id}  {v.content_hash[:12]}")
        last = repository.latest_deployment(session)
        if last is not None and last.status == "rejected":
            click.echo(f"newest attempt (deployment {last.id}) was rejected:")
            for error in last.errors:
                click.echo(f"  {error['file']}:{error['line'] or 1}: {error['message']}")
            code = code or STATUS_REJECTED
    sys.exit(code)


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
