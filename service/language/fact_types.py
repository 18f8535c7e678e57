"""What kind of value each profile fact holds, and comparisons that cannot hold for it.

`profile.total_spent: {gt: "lots"}` is valid YAML and a valid comparison, but no number
is greater than a word: the rule would silently never act. The profile's computed facts
are numbers or lists of names (segments, categories), and consent is true or false; a
comparison with an operand of another kind is an error. Event properties, context and traits come
from the shop as it sends them: they have no declared kind and are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from service.language.schema import Comparison

Kind = Literal["number", "boolean", "list"]

# Kinds are declared here for every computed fact, whether or not a profile has it yet
# (facts.PROFILE_FACTS says which it has; a path naming another is refused first).
NUMBER_FACTS = frozenset(
    {
        "orders_count",
        "total_spent",
        "average_order_value",
        "clv",
        "discount_orders",
        "discount_share",
    }
)
# days_since_last_order, rfm_recency, orders_90d, spent_30d, …
NUMBER_PREFIXES = ("days_since_", "rfm_", "orders_", "spent_")
LIST_FACTS = frozenset({"segments", "categories_viewed", "categories_bought"})
ORDERED = frozenset({"gt", "gte", "lt", "lte"})
SINGLE = frozenset({"eq", "ne", *ORDERED})
LISTED = frozenset({"in", "not_in"})
HOLDS = frozenset({"contains", "not_contains"})


def kind(path: str) -> Kind | None:
    """The kind of value at a fact path; None when it is not declared."""
    parts = path.split(".")
    if parts[0] != "profile" or len(parts) < 2:
        return None
    name = parts[1]
    if len(parts) == 2 and (name in NUMBER_FACTS or name.startswith(NUMBER_PREFIXES)):
        return "number"
    if len(parts) == 2 and name in LIST_FACTS:
        return "list"
    if len(parts) == 3 and name == "consent":
        return "boolean"
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def comparison_problem(path: str, comparison: Comparison) -> str | None:
    """Why comparing the fact at `path` this way can never hold, or None."""
    op, operand = comparison.operator, comparison.operand
    expected = kind(path)
    if expected is None or op == "exists":
        return None
    if expected == "number":
        return _number(path, op, operand)
    if expected == "boolean":
        return _boolean(path, op, operand)
    return _names(path, op, operand)


def _number(path: str, op: str, operand: Any) -> str | None:
    if op in HOLDS:
        return f"{path} is a number: {op} tests a list (use eq, gt, gte, lt, lte, in)"
    values = operand if op in LISTED else [operand]
    wrongs = [v for v in values if v is not None and not is_number(v)]
    if not wrongs:
        return None
    wrong = wrongs[0]
    if isinstance(wrong, str) and _numeric(wrong):
        return f"{path} is a number: {wrong!r} is text, write {wrong.strip()} without quotes"
    example = "[1, 2]" if op in LISTED else "100"
    return f"{path} is a number: {op} {wrong!r} never holds (write e.g. {op}: {example})"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _boolean(path: str, op: str, operand: Any) -> str | None:
    if op in ORDERED or op in HOLDS:
        return f"{path} is true or false: write `{path}: true` (or false)"
    values = operand if op in LISTED else [operand]
    wrong = [v for v in values if v is not None and not isinstance(v, bool)]
    if wrong:
        return f"{path} is true or false, not {wrong[0]!r}"
    return None


def _names(path: str, op: str, operand: Any) -> str | None:
    what = "segment names" if path == "profile.segments" else "names"
    if op not in HOLDS:
        return f"{path} is a list of {what}: use contains or not_contains"
    if not isinstance(operand, str):
        return f"{path}: {op} takes a name, not {operand!r}"
    return None


def given_problems(profile: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(fact, why) for a test profile's computed facts given as something they never
    are (`orders_count: two`); null is allowed (never happened)."""
    for name, value in profile.items():
        path = f"profile.{name}"
        if value is not None and kind(path) == "number" and not is_number(value):
            yield name, f"{name} is a number, not {value!r}"
