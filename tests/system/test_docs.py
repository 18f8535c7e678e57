"""The pages a newcomer or a marketer reads must not fall behind the code.

The architecture page names every stage, periodic job and due job that flow.py
registers. The experiments page's rule files load with the real loader and their tests
pass; its commands, options and endpoints exist; it names every field of the experiment
format and of the results document."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click
import pytest
import yaml
from pydantic import BaseModel

from service import flow
from service.cli import main
from service.experiments import schemas
from service.language.engine import Engine
from service.language.experiments import (
    CellSpec,
    ExperimentSpec,
    FactorSpec,
    HoldoutSpec,
    Metric,
    Target,
    VariantSpec,
)
from service.language.loader import load_all
from service.rules.testing import run_file
from tests.support.docs import commands, yaml_blocks

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
EXPERIMENTS = ROOT / "docs" / "experiments.md"
SHIPPED = ROOT / "rules"
# A block's first line `# rules/<path>` says which file of the rules directory it is.
HEADER = re.compile(r"^# rules/([\w/]+\.ya?ml)\b")


def test_the_architecture_page_names_every_registered_job() -> None:
    text = PAGE.read_text()
    names = [str(s.name) for s in flow.STAGES] + [j.name for j in (*flow.PERIODIC, *flow.DUE)]
    assert [name for name in names if f"`{name}`" not in text] == []


# --- the experiments page ---------------------------------------------------------------


def rule_files(page: Path) -> list[tuple[int, str]]:
    """The blocks that are whole rule files (they declare a ruleset)."""
    return [(n, text) for n, text in yaml_blocks(page) if "ruleset" in yaml.safe_load(text)]


def template_files(page: Path) -> dict[str, str]:
    """The page's blocks that are files outside the rule files (email templates)."""
    found = {}
    for _, text in yaml_blocks(page):
        header = HEADER.match(text)
        if header and header.group(1).startswith("templates/"):
            found[header.group(1)] = text
    return found


def test_the_experiments_page_has_rule_files_and_every_yaml_block_is_yaml() -> None:
    blocks = yaml_blocks(EXPERIMENTS)
    assert len(rule_files(EXPERIMENTS)) >= 5
    for number, text in blocks:
        assert isinstance(yaml.safe_load(text), dict), f"experiments.md:{number}"


@pytest.mark.parametrize(
    ("number", "source"),
    [pytest.param(n, text, id=f"line-{n}") for n, text in rule_files(EXPERIMENTS)],
)
def test_each_rule_file_of_the_experiments_page_loads_and_its_tests_pass(
    number: int, source: str, tmp_path: Path
) -> None:
    """Alone in a rules directory with the shipped segments and templates and the page's
    own templates: the loader the service uses (every check, across files too)."""
    shutil.copytree(SHIPPED / "segments", tmp_path / "segments")
    shutil.copytree(SHIPPED / "templates", tmp_path / "templates")
    for name, text in template_files(EXPERIMENTS).items():
        (tmp_path / name).write_text(text)
    header = HEADER.match(source)
    name = header.group(1) if header else f"{yaml.safe_load(source)['ruleset']}.yaml"
    (tmp_path / name).write_text(source)
    rulesets, _ = load_all(tmp_path)
    (loaded,) = rulesets
    assert loaded.definition.experiments, f"experiments.md:{number} declares no experiment"
    results = run_file(loaded, engine=Engine(), consent_defaults={})
    assert [(r.name, r.failures) for r in results if not r.passed] == []


def test_every_command_and_option_on_the_experiments_page_exists() -> None:
    given = commands(EXPERIMENTS)
    assert any(words[:2] == ["experiments", "stop"] for words in given)
    for words in given:
        command: click.Command = main
        path = []
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            assert words[0] in command.commands, f"no command {' '.join([*path, words[0]])}"
            path.append(words[0])
            command = command.commands[words.pop(0)]
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert [w for w in words if w.startswith("-") and w not in options] == [], path


def test_every_endpoint_on_the_experiments_page_exists() -> None:
    paths = yaml.safe_load((ROOT / "openapi.yaml").read_text())["paths"]
    named = re.findall(r"(?:GET|POST)\s+`?\s*(/v1/[\w/{}-]+)", EXPERIMENTS.read_text())
    assert {"/v1/experiments/{key}", "/v1/experiments/{key}/segments"} <= set(named)
    assert [p for p in named if p not in paths] == []


def field_names(*models: type[BaseModel]) -> set[str]:
    return {name for model in models for name in model.model_fields}


def test_the_experiments_page_names_every_field_of_the_format_and_of_the_results() -> None:
    text = EXPERIMENTS.read_text()
    documented = set(re.findall(r"`([a-z_]+)`", text)) | set(re.findall(r'"([a-z_]+)"', text))
    fields = field_names(
        ExperimentSpec, Target, VariantSpec, FactorSpec, CellSpec, HoldoutSpec, Metric
    ) | field_names(
        schemas.ExperimentOut,
        schemas.VariantOut,
        schemas.ComparisonOut,
        schemas.SampleRatioOut,
        schemas.TreatmentOut,
        schemas.MetricOut,
        schemas.IntervalOut,
        schemas.PowerOut,
        schemas.SegmentBreakdownOut,
    )
    assert sorted(fields - documented) == []
