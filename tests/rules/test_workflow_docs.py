"""The workflow page and the rules page must not fall behind the code: their commands
and options exist, and the rule file of the recorded session loads beside the shipped
files and passes its tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
import yaml

from service.cli import main
from service.language.engine import Engine
from service.language.loader import load_all
from service.rules import publish
from tests.support.docs import commands, yaml_blocks

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "docs" / "workflow.md"
RULES = ROOT / "docs" / "rules.md"


@pytest.mark.parametrize("page", [WORKFLOW, RULES], ids=lambda p: p.name)
def test_every_command_and_option_on_the_page_exists(page: Path) -> None:
    given = commands(page)
    for words in given:
        command: click.Command = main
        path = []
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            assert words[0] in command.commands, f"no command {' '.join([*path, words[0]])}"
            path.append(words[0])
            command = command.commands[words.pop(0)]
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert [w for w in words if w.startswith("-") and w not in options] == [], path
    if page == WORKFLOW:
        named = {tuple(w[:2]) for w in commands(page)}
        for step in ("status", "validate", "test", "diff", "simulate", "publish", "rollback"):
            assert ("rules", step) in named, step


def test_the_recorded_sessions_rule_file_loads_and_its_tests_pass(tmp_path: Path) -> None:
    (source,) = [
        text
        for _, text in yaml_blocks(WORKFLOW)
        if (yaml.safe_load(text) or {}).get("ruleset") == "second_order"
    ]
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "second_order.yaml").write_text(source)
    rulesets, segments = load_all(tmp_path / "rules")
    added = [r for r in rulesets if r.name == "second_order"]
    run = publish.run_tests(added, [], engine=Engine())
    assert len(run.results) == 6
    assert [(r.name, r.failures) for r in run.results if not r.passed] == []
    assert segments  # loaded beside the shipped segments: every check across files ran
