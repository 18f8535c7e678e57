"""The direction of dependencies between the service's packages, checked on the code.

Data flows one way, intake → profiles → segments → rules → actions, and what reads it
(decisions, health, the synthetic store) sits above. A package may import only those
before it in LAYERS; the top-level modules of the kernel (settings, db, errors, …) may
be imported by any. A package not listed fails the test until it is placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"

# Lowest first. Each may import the ones before it, never the ones after.
LAYERS = [
    "auth",  # API keys
    "pipeline",  # set-aside items, the stage kernel
    "events",  # intake: webhooks, events API, the quarantine
    "language",  # the rule and segment file language and its engine
    "ruleset",  # versions of the rule and segment files, the active deployment (RUNTIME)
    "profiles",  # identity resolution, traits, profile facts
    "segments",
    # bucketing and statistics; exposures, read with conversions and orders
    "experiments",
    "rules",
    "actions",
    "decisions",
    "health",
    "synthetic",
]
# Modules at the top that wire the packages together (they may import any of them).
COMPOSITION = {"app", "cli", "flow", "timers", "models"}

# Imports that still go against the flow, each with what removes it. The list only
# shrinks: an exception that no longer occurs fails the test, so it is taken off.
KNOWN: dict[tuple[str, str], str] = {}


def imports() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) → the modules where it happens."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in SERVICE.rglob("*.py"):
        parts = path.relative_to(SERVICE).parts
        if len(parts) < 2:
            continue  # top-level modules: the kernel and the composition
        package = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                bits = name.split(".")
                if bits[0] != "service" or len(bits) < 2 or bits[1] == package:
                    continue
                found.setdefault((package, bits[1]), []).append(str(path.relative_to(SERVICE)))
    return found


def test_every_package_has_a_place() -> None:
    packages = {p.name for p in SERVICE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS), "place the package in LAYERS"


def test_packages_import_only_those_below_them() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = {
        (a, b): where
        for (a, b), where in imports().items()
        if b in rank and a in rank and rank[b] > rank[a]
    }
    unexpected = {edge: where for edge, where in upward.items() if edge not in KNOWN}
    assert unexpected == {}, f"imports against the flow: {unexpected}"
    gone = set(KNOWN) - set(upward)
    assert gone == set(), f"no longer imported, take off KNOWN: {gone}"


def test_packages_do_not_import_the_composition() -> None:
    wrong = {edge: where for edge, where in imports().items() if edge[1] in COMPOSITION}
    assert wrong == {}, wrong


# --- import cycles, module by module ----------------------------------------------------

# Imports that close a cycle on purpose, each with why; the list only shrinks.
CYCLES_ALLOWED = {
    ("worker", "flow"): "the Celery app makes the stages' tasks when it is first asked for",
}


def module_imports() -> dict[str, set[str]]:
    """Every service module ("rules.cli", "cli") → the service modules it imports, at its
    top or deferred inside a function (a deferred import is a dependency all the same)."""
    paths = {_module_name(p): p for p in SERVICE.rglob("*.py")}
    paths.pop("", None)  # service/__init__.py

    def resolve(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                target = (
                    resolve(name.removeprefix("service.")) if name.startswith("service.") else None
                )
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not."""
    reach = {module: _reachable(graph, module) for module in graph}
    found: list[list[str]] = []
    done: set[str] = set()
    for module in sorted(graph):
        if module in done or module not in reach[module]:
            continue
        group = {other for other in reach[module] if module in reach[other]}
        done |= group
        found.append(sorted(group))
    return found


def _unit(module: str) -> str:
    """The package of a module; a top-level module is a unit of its own."""
    return module.split(".")[0]


def _rank(module: str) -> int:
    """Lowest first: the kernel's top-level modules, LAYERS, then the composition."""
    unit = _unit(module)
    if unit in LAYERS:
        return LAYERS.index(unit)
    return len(LAYERS) if unit in COMPOSITION else -1


def _without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    kept = {module: set(targets) for module, targets in graph.items()}
    for importer, imported in CYCLES_ALLOWED:
        assert imported in kept[importer], f"take off CYCLES_ALLOWED: {(importer, imported)}"
        kept[importer].discard(imported)
    return kept


def test_no_import_cycle_between_packages() -> None:
    graph = _without_allowed(module_imports())
    between = [group for group in cycles(graph) if len({_unit(m) for m in group}) > 1]
    # The imports in each cycle that go against LAYERS: removing them breaks it.
    against = [
        sorted((a, b) for a in group for b in graph[a] & set(group) if _rank(b) >= _rank(a))
        for group in between
    ]
    assert between == [], f"import cycles between packages, closed by: {against}"


def test_no_import_cycle_inside_a_package() -> None:
    graph = _without_allowed(module_imports())
    inside = [group for group in cycles(graph) if len({_unit(m) for m in group}) == 1]
    assert inside == [], f"modules of one package that import each other: {inside}"


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(SERVICE))
        for p in SERVICE.rglob("*.py")
        if len(p.read_text().splitlines()) > 400
    }
    assert long == set(), "split it: modules are read at once"
