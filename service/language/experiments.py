"""Experiments as a rule file declares them (`experiments:`), and the checks of one
file that the schema cannot express.

An experiment splits the customers a target reaches into variants: a placement (the
variant chooses what it shows), a rule (the variant changes its offer, template, params
or delay, or suppresses its actions: a control group), or every rule of the file's
ruleset. The first variant is the control. `factors` instead of `variants` makes it
multivariate: every combination of the factors' levels (full factorial), or only the
`cells` listed (fractional). docs/experiments.md is the marketers' page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from service.language.names import EventName
from service.language.schema import IDENTIFIER, Duration, Params, Rule, Strict, parse_duration
from service.language.suggest import hint

NAME = r"^[A-Za-z0-9_-]{1,64}$"  # a variant, factor, level or cell (also a hash seed part)
ORDER_COMPLETED = "Order Completed"

Problem = tuple[tuple[Any, ...], str]


class Changes(Strict):
    """What a variant (or a factor's level) changes; nothing: the target as written.

    Placements: `content` (and its `params`) shown instead, or `suppress` (the
    placement's default, no personalization). Rules: the offer's `offer` code,
    `template` and `params`, the rule's `delay`, or `suppress` (nothing is sent)."""

    content: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    offer: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    template: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    delay: Duration | None = None
    params: Params = Field(default_factory=dict)
    suppress: bool = False

    def fields_set(self) -> set[str]:
        return {
            name
            for name in ("content", "offer", "template", "delay", "params")
            if getattr(self, name)
        } | ({"suppress"} if self.suppress else set())


class VariantSpec(Changes):
    name: Annotated[str, Field(pattern=NAME)]
    weight: float = Field(default=1.0, ge=0.0, le=1e6)


class FactorSpec(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    levels: list[VariantSpec] = Field(min_length=2)


class CellSpec(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    levels: dict[str, str]
    weight: float = Field(default=1.0, ge=0.0, le=1e6)


class HoldoutSpec(Strict):
    """A share of customers who get nothing from the target (a placement's default, no
    action from the rule or the ruleset). Experiments naming the same `seed` hold out
    the same customers."""

    share: float = Field(gt=0.0, lt=1.0)
    seed: Annotated[str, Field(pattern=NAME)] | None = None


class Target(Strict):
    placement: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    rule: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    ruleset: Annotated[str, Field(pattern=IDENTIFIER)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        if sum(x is not None for x in (self.placement, self.rule, self.ruleset)) != 1:
            raise ValueError("give one of placement, rule or ruleset")
        return self


class Metric(Strict):
    """Units that do `event` within `window` of their first exposure convert; revenue
    is the total of their orders in the same window."""

    event: EventName = ORDER_COMPLETED
    window: Duration = "7d"


class ExperimentSpec(Strict):
    key: Annotated[str, Field(pattern=IDENTIFIER)]
    description: str = ""
    target: Target
    # Who is split: customers (by profile id), or visitors by the storefront's
    # anonymous id (placements only; it stays with them when they sign in).
    unit: Literal["customer", "anonymous"] = "customer"
    segment: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    start: AwareDatetime | None = None
    stop: AwareDatetime | None = None
    coverage: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: Annotated[str, Field(pattern=NAME)] | None = None
    variants: list[VariantSpec] = Field(default_factory=list)
    factors: list[FactorSpec] = Field(default_factory=list)
    cells: list[CellSpec] = Field(default_factory=list)
    holdout: HoldoutSpec | None = None
    metric: Metric = Field(default_factory=Metric)
    guardrails: list[Metric] = Field(default_factory=list)
    # The smallest relative lift worth finding: the sample size still needed is for it.
    minimum_effect: float = Field(default=0.10, gt=0.0, le=10.0)

    @model_validator(mode="after")
    def _design(self) -> ExperimentSpec:
        if bool(self.variants) == bool(self.factors):
            raise ValueError("give either variants or factors")
        if self.variants and len(self.variants) < 2:
            raise ValueError("give two variants at least: the first is the control")
        if self.cells and not self.factors:
            raise ValueError("cells choose combinations of factors: give factors")
        if self.start and self.stop and self.stop <= self.start:
            raise ValueError("stop must come after start")
        return self


def variant_names(spec: ExperimentSpec) -> set[str]:
    """What a unit of this experiment can be counted under: its variants (or cells;
    full-factorial cells are named `factor=level,…`), and `holdout` when it has one."""
    if spec.variants:
        names = {v.name for v in spec.variants}
    elif spec.cells:
        names = {c.name for c in spec.cells}
    else:
        names = {""}
        for factor in spec.factors:
            names = {
                f"{prefix},{factor.name}={level.name}".lstrip(",")
                for prefix in names
                for level in factor.levels
            }
    return names | ({"holdout"} if spec.holdout else set())


# --- checks of one file --------------------------------------------------------------


def check(
    experiments: list[ExperimentSpec],
    *,
    ruleset: str,
    rules: list[Rule],
    events: frozenset[str] | set[str],
) -> Iterator[Problem]:
    """Each experiment's target is in this file (rules, the ruleset) and its variants
    change only what the target has; names are unique; metrics name known events."""
    keys: set[str] = set()
    by_id = {rule.id: rule for rule in rules}
    for i, spec in enumerate(experiments):
        if spec.key in keys:
            yield ("experiments", i, "key"), f"experiment {spec.key!r} is declared twice"
        keys.add(spec.key)
        for path, message in _experiment(spec, ruleset=ruleset, by_id=by_id, events=events):
            yield ("experiments", i, *path), message


def _experiment(
    spec: ExperimentSpec, *, ruleset: str, by_id: dict[str, Rule], events: frozenset[str] | set[str]
) -> Iterator[Problem]:
    target = spec.target
    if target.ruleset is not None and target.ruleset != ruleset:
        yield ("target", "ruleset"), f"experiments here apply to this file's ruleset, {ruleset!r}"
    rule = by_id.get(target.rule) if target.rule else None
    if target.rule is not None and rule is None:
        yield ("target", "rule"), f"no rule {target.rule!r} in this file" + hint(target.rule, by_id)
    if rule is not None and rule.trigger.placement is not None:
        yield (
            ("target", "rule"),
            f"{target.rule} answers a placement: target placement {rule.trigger.placement}",
        )
    if spec.unit == "anonymous" and target.placement is None:
        yield ("unit",), "rules act on customers: unit anonymous is for placements only"
    for j, metric in enumerate([spec.metric, *spec.guardrails]):
        path = ("metric",) if j == 0 else ("guardrails", j - 1)
        if metric.event not in events:
            yield (*path, "event"), f"unknown event {metric.event!r}" + hint(metric.event, events)
        parse_duration(metric.window)
    yield from _design(spec)
    for path, changes in _all_changes(spec):
        for message in _changes(changes, target=target, rule=rule):
            yield path, message


def _design(spec: ExperimentSpec) -> Iterator[Problem]:
    names = [v.name for v in spec.variants]
    if len(set(names)) != len(names):
        yield ("variants",), "variant names must be unique"
    if spec.variants and not any(v.weight > 0 for v in spec.variants):
        yield ("variants",), "one variant at least needs a weight above 0"
    levels: dict[str, set[str]] = {}
    for i, factor in enumerate(spec.factors):
        if factor.name in levels:
            yield ("factors", i, "name"), f"factor {factor.name!r} is declared twice"
        levels[factor.name] = {level.name for level in factor.levels}
        if len(levels[factor.name]) != len(factor.levels):
            yield ("factors", i, "levels"), "level names must be unique"
        if not any(level.weight > 0 for level in factor.levels):
            yield ("factors", i, "levels"), "one level at least needs a weight above 0"
    cells: set[str] = set()
    for i, cell in enumerate(spec.cells):
        if cell.name in cells:
            yield ("cells", i, "name"), f"cell {cell.name!r} is declared twice"
        cells.add(cell.name)
        if set(cell.levels) != set(levels) or any(
            level not in levels.get(factor, ()) for factor, level in cell.levels.items()
        ):
            yield ("cells", i, "levels"), "name one of its levels for every factor"
    if spec.cells and len(spec.cells) < 2:
        yield ("cells",), "give two cells at least: the first is the control"
    if spec.cells and not any(cell.weight > 0 for cell in spec.cells):
        yield ("cells",), "one cell at least needs a weight above 0"


def _all_changes(spec: ExperimentSpec) -> Iterator[tuple[tuple[Any, ...], Changes]]:
    for i, variant in enumerate(spec.variants):
        yield ("variants", i), variant
    for i, factor in enumerate(spec.factors):
        for j, level in enumerate(factor.levels):
            yield ("factors", i, "levels", j), level


def _changes(changes: Changes, *, target: Target, rule: Rule | None) -> Iterator[str]:
    used = changes.fields_set()
    if target.placement is not None:
        allowed = {"content", "params", "suppress"}
        if "params" in used and "content" not in used:
            yield "params go with the content they fill: give content too"
    elif target.ruleset is not None:
        allowed = {"suppress"}
    else:
        allowed = {"offer", "template", "params", "delay", "suppress"}
        kinds = {next(iter(type(a).model_fields)) for a in rule.actions} if rule else set()
        if used & {"offer", "template"} and "offer" not in kinds:
            yield f"{target.rule} sends no offer: nothing for offer or template to change"
    for name in sorted(used - allowed):
        what = next(k for k in ("placement", "rule", "ruleset") if getattr(target, k))
        yield f"{name}: a variant of a {what} changes only {', '.join(sorted(allowed))}"
    if changes.suppress and used - {"suppress"}:
        yield "a suppressed variant shows or sends nothing: give suppress alone"
    if changes.delay is not None:
        parse_duration(changes.delay)
