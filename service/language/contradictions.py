"""Comparisons on one fact that no value satisfies together: a rule or segment whose
conditions (all of which must hold) contradict each other can never act.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from service.language.schema import AllCondition, Condition, FactCondition

OperatorTest = tuple[str, Any]  # an operator and its operand


def contradiction(conditions: list[Condition]) -> str | None:
    """The first fact whose comparisons (all of which must hold) no value satisfies."""
    by_path: dict[str, list[OperatorTest]] = {}
    for condition in _conjuncts(conditions):
        c = condition.comparison
        by_path.setdefault(condition.path, []).append((c.operator, c.operand))
    for path, tests in by_path.items():
        if len(tests) < 2:
            continue
        for check in (_equal_twice, _missing_and_compared, _empty_range, _equal_not_in):
            found = check(path, tests)
            if found:
                return found
    return None


def _equal_twice(path: str, tests: list[OperatorTest]) -> str | None:
    equal = {repr(v) for op, v in tests if op == "eq"}
    if len(equal) > 1:
        return f"{path} cannot equal both {' and '.join(sorted(equal))}"
    return None


def _missing_and_compared(path: str, tests: list[OperatorTest]) -> str | None:
    if ("exists", False) in tests and any(
        op not in ("exists", "ne", "not_in", "not_contains") for op, _ in tests
    ):
        return f"{path} must be missing and also compared"
    return None


def _empty_range(path: str, tests: list[OperatorTest]) -> str | None:
    numbers = [(op, v) for op, v in tests if isinstance(v, int | float) and not isinstance(v, bool)]
    low = max((v for op, v in numbers if op in ("gt", "gte", "eq")), default=None)
    high = min((v for op, v in numbers if op in ("lt", "lte", "eq")), default=None)
    if low is None or high is None:
        return None
    strict = any(op in ("gt", "lt") and v in (low, high) for op, v in numbers)
    if low > high or (low == high and strict):
        return f"no value of {path} is both ≥ {low} and ≤ {high}"
    return None


def _equal_not_in(path: str, tests: list[OperatorTest]) -> str | None:
    for op, v in tests:
        if op == "eq" and any(o == "in" and v not in values for o, values in tests):
            return f"{path} = {v!r} is not among the `in` values"
    return None


def _conjuncts(conditions: Iterable[BaseModel]) -> Iterator[FactCondition]:
    for condition in conditions:
        if isinstance(condition, FactCondition):
            yield condition
        elif isinstance(condition, AllCondition):
            yield from _conjuncts(condition.all)
