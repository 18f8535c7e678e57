"""`personalize`: one entry point for every process and admin task.

With DATABASE_URL unset, each command uses the embedded PostgreSQL under DATA_DIR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import click
import structlog
import yaml

from service.settings import get_settings

log = structlog.get_logger("service.cli")


def _database() -> str:
    from service.embedded import database

    return database()


def _configure_logging() -> None:
    from service.logging import configure

    settings = get_settings()
    configure(level=settings.log_level, fmt=settings.log_format)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Personalize: profiles, rules, actions and storefront decisions."""
    _configure_logging()


@main.command()
def migrate() -> None:
    """Apply database migrations up to the latest revision."""
    from service.db import upgrade

    upgrade(_database())
    log.info("migrated")


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: HOST).")
@click.option("--port", type=int, default=None, help="Port (default: PORT).")
@click.option("--workers", type=int, default=None, help="Processes (default: API_WORKERS).")
def api(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from service.rules.watch import activate_at_start

    settings = get_settings()
    _database()
    # A new database has no active rules: activate rules/ before the first request.
    activate_at_start(settings.rules_dir)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.api_workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
@click.option("--queues", default=None, help="Comma-separated queues (default: BROKER_QUEUE).")
def worker(concurrency: int, queues: str | None) -> None:
    """Run a Celery worker (warm shutdown on SIGTERM: running tasks finish)."""
    _database()
    from service.worker import get_celery

    queues = queues or get_settings().broker_queue
    get_celery().worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            # Named after its queues: installations that share a broker by their queue
            # (BROKER_QUEUE) on one host would otherwise share the node's control queue,
            # which one worker holds exclusively, and the other would not start.
            f"--hostname={queues.replace(',', '+')}@%h",
            f"--loglevel={get_settings().log_level.upper()}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


@main.command()
def scheduler() -> None:
    """Run the periodic-task scheduler (Celery beat)."""
    _database()
    from service.worker import get_celery

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    get_celery().start(
        [
            "beat",
            f"--schedule={settings.data_dir / 'beat-schedule'}",
            f"--loglevel={settings.log_level.upper()}",
        ]
    )


@main.command()
def timers() -> None:
    """Run waiting rules and scheduled actions at their due time (several may run)."""
    _database()
    import threading

    from service import timers as timers_loop

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    timers_loop.run(stop=stop)


@main.command()
def serve() -> None:
    """Run everything: database (embedded if DATABASE_URL is unset), migrations, API, worker,
    scheduler and timers. Stops all of them on Ctrl-C or SIGTERM."""
    _database()  # started here, so the children share one server and this process owns it
    from service.db import upgrade

    upgrade()
    # Each child gets its own session, so a Ctrl-C or a group-wide signal reaches
    # only this process, which then stops the children in order (a Celery pool child
    # that is signalled directly can leave its parent's warm shutdown hanging).
    children = {
        name: subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "service.cli", name], start_new_session=True
        )
        for name in ("api", "worker", "scheduler", "timers")
    }
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving", port=get_settings().port, pids={n: p.pid for n, p in children.items()})
    failed = None
    while not stopping and failed is None:
        failed = next((n for n, p in children.items() if p.poll() is not None), None)
        time.sleep(0.2)
    if failed:
        log.error("child_exited", child=failed, code=children[failed].returncode)
    _stop_all(children)
    sys.exit(1 if failed else 0)


def _stop_all(children: dict[str, subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("child_killed", child=name)
            proc.kill()
            proc.wait()


@main.command("create-api-key")
@click.option("--name", required=True, help="Who or what uses the key, e.g. 'storefront-prod'.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["ingest", "storefront", "marketer", "admin"]),
    help="Repeat for several scopes.",
)
def create_api_key(name: str, scopes: tuple[str, ...]) -> None:
    """Create an API key and print it. It is shown only once."""
    from service.auth.service import Scope, create_key
    from service.db import transaction

    _database()
    with transaction() as session:
        new = create_key(session, name=name, scopes=[Scope(s) for s in scopes])
    click.echo(new.key)


@main.command("list-api-keys")
def list_api_keys() -> None:
    """List API keys (name, prefix, scopes, state); never the secrets."""
    from service.auth.service import list_keys
    from service.db import transaction

    _database()
    with transaction() as session:
        for key in list_keys(session):
            state = "revoked" if key.revoked_at else "active"
            click.echo(f"{key.prefix}\t{state}\t{','.join(key.scopes)}\t{key.name}")


@main.command("revoke-api-key")
@click.argument("prefix")
def revoke_api_key(prefix: str) -> None:
    """Revoke the key whose prefix is PREFIX (as shown by list-api-keys)."""
    from service.auth.service import revoke_key
    from service.db import transaction

    _database()
    with transaction() as session:
        if not revoke_key(session, prefix=prefix):
            raise click.ClickException(f"no active key with prefix {prefix}")
    click.echo(f"revoked {prefix}")


@main.command()
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
def openapi(output: Path | None, fmt: str) -> None:
    """Print the API's OpenAPI schema (openapi.yaml is this output, checked by a test)."""
    from service.app import create_app

    schema = create_app().openapi()
    text = (
        yaml.safe_dump(schema, sort_keys=False, allow_unicode=True)
        if fmt == "yaml"
        else json.dumps(schema, indent=2)
    )
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


def _register() -> None:
    from service.actions.cli import actions
    from service.experiments.cli import experiments
    from service.rules.cli import rules
    from service.segments.cli import segments
    from service.synthetic.cli import demo

    main.add_command(rules)
    main.add_command(actions)
    main.add_command(experiments)
    main.add_command(segments)
    main.add_command(demo)


_register()

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
