"""The tests' own layout: one folder per domain of `service/`, shared helpers in
`tests/support/`, and no test module importing another (what two test modules share
belongs in `tests/support/`)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SERVICE = TESTS.parent / "service"
# Folders that are not a domain: helpers, payload files, and the tests of the whole
# service (layers, OpenAPI, migrations, the container files, faults, fuzzing).
NOT_DOMAINS = {"support", "fixtures", "system", "__pycache__"}


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_test_module_imports_another_or_the_conftest() -> None:
    offending = {
        str(path.relative_to(TESTS)): name
        for path in TESTS.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith("tests.")
        and (name.split(".")[-1].startswith("test_") or name.split(".")[-1] == "conftest")
    }
    assert offending == {}


def test_every_test_folder_is_a_domain_of_the_service() -> None:
    domains = {path.name for path in SERVICE.iterdir() if (path / "__init__.py").exists()}
    folders = {path.name for path in TESTS.iterdir() if path.is_dir()} - NOT_DOMAINS
    assert folders - domains == set()


def test_no_test_module_is_left_at_the_top() -> None:
    assert sorted(path.name for path in TESTS.glob("test_*.py")) == []
