"""The Docker files, checked without Docker: none runs where the tests do.

docker/compose.yaml is validated against the Compose Specification (the copy that
check-jsonschema vendors) and then for what the schema cannot know: that services
refer to each other and to `personalize` commands correctly. docker/Dockerfile is read
as text for the properties the deployment relies on.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from service.cli import main
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
APP_SERVICES = {"migrate", "api", "worker", "scheduler", "timers"}


@cache
def compose() -> dict[str, Any]:
    # safe_load resolves the anchors and `<<` merges, as Compose does.
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency name -> condition, for both the list and the mapping syntax."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec["condition"] for name, spec in deps.items()}


def has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck", {})
    test = check.get("test")
    if check.get("disable") or not test:
        return False
    return (test if isinstance(test, str) else test[0]) != "NONE"


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def check_personalize_command(command: list[str]) -> None:
    """`personalize SUBCOMMAND [options]`, parsed by the real click group."""
    assert command[0] == "personalize", command
    assert len(command) > 1, f"no subcommand in {command}"
    name, args = command[1], command[2:]
    assert name in main.commands, f"`personalize {name}` does not exist"
    # Parses the options (an unknown one raises) without running the command.
    main.commands[name].make_context(name, list(args))


# --- compose.yaml -------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    spec_file = resources.files("check_jsonschema.builtin_schemas") / "vendor/compose-spec.json"
    schema = json.loads(spec_file.read_text(encoding="utf-8"))
    # The schema's `$schema` names its draft (07 or 2020-12 depending on the vendored copy).
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = sorted(validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_has_the_whole_stack() -> None:
    assert {"postgres", "rabbitmq", *APP_SERVICES} <= set(services())


def test_dependencies_exist_and_awaited_health_is_checked() -> None:
    for name, service in services().items():
        for target, condition in depends_on(service).items():
            assert target in services(), f"{name} depends on unknown service {target}"
            # Waiting for `service_healthy` on a service without a check never ends.
            if condition == "service_healthy":
                assert has_healthcheck(services()[target]), f"{name} waits on {target}"


def test_declared_healthchecks_have_a_test() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        if check is not None and not check.get("disable"):
            assert has_healthcheck(service), f"{name}: healthcheck without a test"


def test_app_services_run_personalize_commands() -> None:
    for name in APP_SERVICES:
        check_personalize_command(argv(services()[name]["command"]))


def test_app_services_use_the_dockerfile_and_known_settings() -> None:
    known = {field.upper() for field in Settings.model_fields}
    for name in APP_SERVICES:
        service = services()[name]
        build = service["build"]
        # Relative to docker/, where the compose file is: the repository root.
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        # A misspelt variable would be ignored silently (extra="ignore").
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} sets unknown settings {unknown}"


def test_non_http_services_replace_the_image_healthcheck() -> None:
    # The image's HEALTHCHECK asks the API port: inherited by a worker, it would fail.
    for name in APP_SERVICES - {"api"}:
        assert "healthcheck" in services()[name], f"{name} inherits the API's healthcheck"


def test_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source}"


# --- Dockerfile ---------------------------------------------------------------------------


@cache
def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # `# syntax=` is a comment too
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def final_stage() -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions()) if keyword == "FROM")
    return instructions()[last_from:]


def test_final_stage_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the runtime stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_base_image_is_python_3_11_or_3_12() -> None:
    # durable-rules does not build on Python 3.13.
    images = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert images[-1].startswith("python:"), images
    for image in images:
        if image.startswith("python:"):
            assert re.fullmatch(r"python:3\.1[12](\.\d+)?(-\S+)?", image), image


def test_dependencies_come_from_the_committed_lock() -> None:
    copied = [args.split() for keyword, args in instructions() if keyword == "COPY"]
    assert any("uv.lock" in sources for sources in copied), "uv.lock is not copied"
    syncs = [args for keyword, args in instructions() if keyword == "RUN" and "uv sync" in args]
    assert syncs, "no `uv sync`"
    for run in syncs:
        assert "--frozen" in run, run
        assert "--no-dev" in run, run


def test_uv_is_the_version_dev_installs() -> None:
    pinned = re.search(r"ghcr\.io/astral-sh/uv:(\S+)", DOCKERFILE.read_text())
    wanted = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "dev").read_text(), re.MULTILINE)
    assert pinned, "uv's image is not pinned"
    assert wanted, "dev sets no UV_VERSION"
    assert pinned.group(1) == wanted.group(1), "docker/Dockerfile and ./dev pin different uv"


def test_copied_context_paths_exist() -> None:
    # A missing source fails the build; a wildcard may match nothing.
    for keyword, args in instructions():
        words = args.split()
        if keyword != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        for source in (w for w in words[:-1] if not w.startswith("--")):
            if not re.search(r"[*?\[]", source):
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


@pytest.mark.parametrize("keyword", ["CMD", "HEALTHCHECK"])
def test_commands_are_exec_form_json(keyword: str) -> None:
    # Docker silently falls back to a shell for malformed JSON: parse it here.
    [args] = [args for k, args in final_stage() if k == keyword]
    command = json.loads(args[args.index("[") :])
    assert isinstance(command, list), args
    if keyword == "CMD":
        check_personalize_command(command)
    else:
        assert command[0] == "python", "the slim image has no curl"
        assert "/healthz" in command[-1]
