"""Rule files that YAML accepts but that are not rule data (tags that build objects,
binary, aliases that expand a few lines into billions of nodes, nesting past the
parser's recursion, integers no column holds, a document that is a list), and the
state of the rules as `rules status` and a fresh API report it.

Each file is an error with its file and line, like any other mistake in a rule file:
`rules validate` prints it, a reload records it, `/v1/rules/status` is unhealthy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.cli import main
from service.language import loader
from service.language.parse import RulesInvalid
from service.rules import deployments
from service.settings import get_settings
from tests.support import api_process

SHIPPED = Path(__file__).resolve().parents[2] / "rules"

RULE = """ruleset: {name}
version: 1
rules:
  - id: {name}_rule
    trigger: {{event: Product Added}}
    actions:
      - segment: {{add: {name}_seen}}
"""


def _laughs(levels: int = 9) -> str:
    lines = ["lol0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


# file name → (text, the line the error must name, a word the message must hold)
ODD: dict[str, tuple[str | bytes, int, str]] = {
    "python_tag.yaml": (
        RULE.format(name="python_tag").replace(
            "version: 1", "version: !!python/object/apply:os.getpid []"
        ),
        2,
        "tag",
    ),
    "custom_tag.yaml": (
        RULE.format(name="custom_tag").replace(
            "{add: custom_tag_seen}", "{add: !secret custom_tag_seen}"
        ),
        7,
        "tag",
    ),
    "binary_tag.yaml": (
        RULE.format(name="binary_tag").replace("ruleset: binary_tag", "ruleset: !!binary aGk="),
        1,
        "tag",
    ),
    "binary_bytes.yaml": (
        RULE.format(name="binary_bytes").encode().replace(b"trigger", b"trig\xff\xfeer"),
        5,
        "UTF-8",
    ),
    "nul.yaml": (RULE.format(name="nul").replace("Product Added", "Product\x00Added"), 5, ""),
    "laughs.yaml": (RULE.format(name="laughs") + _laughs(), 12, "alias"),
    "recursive.yaml": (RULE.format(name="recursive") + "loop: &me [1, *me]\n", 8, "alias"),
    "undefined_alias.yaml": (RULE.format(name="undefined_alias") + "x: *nowhere\n", 8, ""),
    "deep.yaml": (
        RULE.format(name="deep") + "deep: " + "[" * 5000 + "]" * 5000 + "\n",
        8,
        "nested",
    ),
    "huge_int.yaml": (
        RULE.format(name="huge_int").replace("version: 1", "version: " + "9" * 30),
        2,
        "integer",
    ),
    "giant_int.yaml": (
        RULE.format(name="giant_int").replace("version: 1", "version: " + "9" * 5000),
        2,
        "integer",
    ),
    "int32_version.yaml": (
        RULE.format(name="int32_version").replace("version: 1", "version: 3000000000"),
        2,
        "version",
    ),
    "infinite.yaml": (
        RULE.format(name="infinite").replace(
            "actions:", "when:\n      - profile.total_spent: {gt: .inf}\n    actions:"
        ),
        7,
        "finite",
    ),
    "list_key.yaml": ("? [a, b]\n: c\n" + RULE.format(name="list_key"), 1, "key"),
    "a_list.yaml": ("- ruleset: a_list\n- version: 1\n", 1, "mapping"),
    "a_scalar.yaml": ("just some words\n", 1, "mapping"),
}


def write_odd_files(directory: Path) -> None:
    for name, (text, _line, _word) in ODD.items():
        path = directory / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name", sorted(n for n in ODD if not isinstance(ODD[n][0], bytes)))
def test_an_odd_file_is_an_error_with_its_line(name: str) -> None:
    text, line, word = ODD[name]
    assert isinstance(text, str)
    with pytest.raises(RulesInvalid) as raised:
        loader.load_source(name, text)
    errors = raised.value.errors
    assert [(e.file, e.line) for e in errors][:1] == [(name, line)], errors
    assert word.lower() in errors[0].message.lower(), errors


def test_a_segment_file_is_checked_the_same_way() -> None:
    with pytest.raises(RulesInvalid) as raised:
        loader.load_segment_source(
            "segments/odd.yaml", "segment: odd\nversion: 1\nwhen: !!python/name:os.system\n"
        )
    (error,) = raised.value.errors
    assert (error.file, error.line) == ("segments/odd.yaml", 3)


def test_a_template_that_expands_without_bound_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    (directory / "templates").mkdir(parents=True)
    (directory / "templates" / "welcome.yaml").write_text(
        _laughs() + "subject: hi\ntext: *l8\n", encoding="utf-8"
    )
    (directory / "offer.yaml").write_text(
        "ruleset: offer\nversion: 1\nrules:\n  - id: welcome\n"
        "    trigger: {event: Order Completed}\n    actions:\n"
        "      - offer: {channel: email, offer: HI, template: welcome}\n",
        encoding="utf-8",
    )
    with pytest.raises(RulesInvalid) as raised:
        loader.load_all(directory)
    (error,) = raised.value.errors
    assert (error.file, error.line) == ("offer.yaml", 7)  # the offer naming the template
    assert "templates/welcome.yaml" in error.message, error
    assert "alias" in error.message, error


def test_validate_names_every_odd_file_and_line_without_a_traceback(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    write_odd_files(directory)
    env = {**os.environ, "RULES_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "rules", "validate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a file that expands without bound would hang here
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    printed = set(re.findall(r"/([a-z0-9_]+\.yaml):(\d+): ", done.stderr))
    for name, (_text, line, _word) in ODD.items():
        assert (name, str(line)) in printed, (name, done.stderr[-3000:])


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    return directory


@pytest.mark.parametrize("name", ["python_tag.yaml", "laughs.yaml", "giant_int.yaml"])
def test_reload_rejects_an_odd_file_and_status_turns_unhealthy(
    name: str, client: TestClient, session: Session, api_key, rules_dir: Path
) -> None:
    marketer = api_key(Scope.MARKETER)
    active = deployments.reload(session, directory=rules_dir, origin="cli")
    assert active.status == "active"
    text, line, _word = ODD[name]
    assert isinstance(text, str)
    (rules_dir / name).write_text(text, encoding="utf-8")
    response = client.post("/v1/rules/reload", headers=marketer)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [(e["file"], e["line"]) for e in response.json()["rule_errors"]] == [(name, line)]
    status = client.get("/v1/rules/status", headers=marketer).json()
    assert status["healthy"] is False
    assert status["active"]["id"] == active.deployment_id  # the previous rules keep running
    assert status["last_attempt"]["status"] == "rejected"


def test_status_exits_non_zero_while_the_newest_attempt_is_rejected(
    session: Session, rules_dir: Path
) -> None:
    runner = CliRunner()
    empty = runner.invoke(main, ["rules", "status"])
    assert empty.exit_code == 3, empty.output  # nothing active: every decision would be 422
    assert "no active rules" in empty.output
    assert deployments.reload(session, directory=rules_dir, origin="cli").status == "active"
    healthy = runner.invoke(main, ["rules", "status"])
    assert healthy.exit_code == 0, healthy.output
    (rules_dir / "broken.yaml").write_text("ruleset: [unclosed\n", encoding="utf-8")
    assert deployments.reload(session, directory=rules_dir, origin="cli").status == "rejected"
    rejected = runner.invoke(main, ["rules", "status"])
    assert rejected.exit_code == 1, rejected.output
    assert "broken.yaml:2:" in rejected.output


# --- a fresh database, the API as a process ------------------------------------------------


@pytest.fixture
def fresh_api(make_database, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    setup = api_process.setup(make_database("fresh"), tmp_path, rules_dir=SHIPPED)
    key = setup.key("storefront", "marketer", name="shop")
    started = setup.start_api(tmp_path)
    try:
        yield started.base, key, started.log
    finally:
        setup.stop()


@pytest.mark.slow
def test_a_fresh_database_without_the_watcher_serves_the_shipped_rules(
    fresh_api: tuple[str, dict[str, str], Path],
) -> None:
    base, key, log = fresh_api
    response = httpx.post(
        f"{base}/v1/decisions",
        json={"placements": ["homepage_hero"], "user_id": "new-visitor"},
        headers=key,
        timeout=30,
    )
    assert response.status_code == 200, (response.text, log.read_text()[-3000:])
    assert response.json()["placements"]["homepage_hero"]["content"]["id"] == "seasonal_collection"
    status = httpx.get(f"{base}/v1/rules/status", headers=key, timeout=30).json()
    assert status["healthy"] is True
    assert status["active"]["origin"] == "startup"
