"""`./dev`, the one command the README and the docs give for every `personalize` command:
run as a user runs it, from the project's directory, through uv and the locked
environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from tests import support

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "dev"


def dev(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEV), *args],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    for args in ((), ("--help",)):
        done = dev(*args)
        assert done.returncode == 0, done.stderr
        for command in ("serve", "create-api-key", "migrate", "rules", "actions"):
            assert command in done.stdout, (args, done.stdout)


def test_a_command_and_its_options_reach_personalize() -> None:
    done = dev("create-api-key", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: personalize create-api-key" in done.stdout
    assert "--scope" in done.stdout


def test_rules_validate_checks_the_shipped_rules() -> None:
    done = dev("rules", "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: "), done.stdout


def test_an_unknown_command_fails() -> None:
    done = dev("no-such-command")
    assert done.returncode != 0
    assert "no-such-command" in done.stderr


def test_migrate_then_create_a_key_as_the_readme_says(make_database) -> None:
    url = make_database("dev", migrate=False)
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    env["DATABASE_URL"] = url

    migrated = dev("migrate", env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with psycopg.connect(support.libpq_url(url)) as conn:
        (head,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or (None,)
    assert head, "no migration applied"

    created = dev("create-api-key", "--name", "me", "--scope", "admin", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("pk_"), created.stdout

    listed = dev("list-api-keys", env=env)
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.endswith("\tme")]
    prefix, state, scopes, _ = line.split("\t")
    assert key.startswith(prefix)
    assert (state, scopes) == ("active", "admin")


def test_serve_keeps_its_options() -> None:
    done = dev("serve", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage: personalize serve" in done.stdout
