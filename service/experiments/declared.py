"""The experiments the active rule files declare, ready to assign units: what decisions,
rule evaluation and the in-file tester all ask (`Catalogue.for_placement`,
`Catalogue.for_rule`, then `Declared.arm`).

An arm is what one unit gets from one experiment: its variant's changes, or, held out,
nothing (`suppress`). A unit outside the experiment (not running, not in its segment, not
covered) gets no arm and sees the target as written.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.experiments.bucketing import (
    Bucketer,
    Cell,
    Experiment,
    Exposure,
    Factor,
    Holdout,
    Multivariate,
    Variant,
    cell_name,
)
from service.language.engine import CompiledRule, CompiledRuleset
from service.language.experiments import Changes, ExperimentSpec
from service.language.facts import render
from service.language.schema import parse_duration

HOLDOUT = "holdout"  # the variant name a held-out unit is counted under
SUPPRESS = Changes(suppress=True)


@dataclass(frozen=True)
class Arm:
    """One unit's lot in one experiment."""

    experiment: str
    variant: str
    changes: Changes
    segments: tuple[str, ...] = ()  # the unit's segments when assigned (for breakdowns)

    @property
    def suppressed(self) -> bool:
        return self.changes.suppress

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "variant": self.variant,
            "segments": list(self.segments),
        }


@dataclass(frozen=True)
class Declared:
    """One declared experiment: its spec, its bucketing design, each variant's changes."""

    spec: ExperimentSpec
    ruleset: str
    design: Experiment | Multivariate
    changes: dict[str, Changes]  # variant (or cell) name → what it changes
    weights: dict[str, float]  # variant (or cell) name → its expected share
    # The design's seeds made ready once: decisions bucket on every request.
    bucket: Bucketer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket", Bucketer.of(self.design))

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def control(self) -> str:
        return next(iter(self.weights))

    def running(self, now: datetime) -> bool:
        spec = self.spec
        return (spec.start is None or spec.start <= now) and (spec.stop is None or now < spec.stop)

    def arm(
        self,
        unit_id: str,
        *,
        segments: Collection[str],
        now: datetime,
        pinned: Mapping[str, str] | None = None,
    ) -> Arm | None:
        """The unit's arm, or None when the experiment does not reach it. `pinned`
        (an in-file test's `variants:`) names the variant instead of the hash."""
        if pinned and self.key in pinned:
            chosen = pinned[self.key]
            changes = SUPPRESS if chosen == HOLDOUT else self.changes[chosen]
            return Arm(self.key, chosen, changes, tuple(sorted(segments)))
        if not self.running(now) or (self.spec.segment and self.spec.segment not in segments):
            return None
        exposure, name = self.bucket(unit_id)
        if exposure is Exposure.ASSIGNED and name is not None:
            return Arm(self.key, name, self.changes[name], tuple(sorted(segments)))
        if exposure is Exposure.HOLDOUT:
            return Arm(self.key, HOLDOUT, SUPPRESS, tuple(sorted(segments)))
        return None


def declare(spec: ExperimentSpec, *, ruleset: str) -> Declared:
    holdout = None
    if spec.holdout is not None:
        seed = spec.holdout.seed or f"{spec.seed or spec.key}.{HOLDOUT}"
        holdout = Holdout(seed=seed, share=spec.holdout.share)
    common: dict[str, Any] = {
        "key": spec.key,
        "coverage": spec.coverage,
        "holdout": holdout,
        "seed": spec.seed or "",
    }
    if spec.variants:
        variants = tuple(Variant(v.name, v.weight) for v in spec.variants)
        total = sum(v.weight for v in spec.variants)
        return Declared(
            spec=spec,
            ruleset=ruleset,
            design=Experiment(variants=variants, **common),
            changes={
                v.name: Changes(**v.model_dump(exclude={"name", "weight"})) for v in spec.variants
            },
            weights={v.name: v.weight / total for v in spec.variants},
        )
    factors = tuple(
        Factor(f.name, tuple(Variant(level.name, level.weight) for level in f.levels))
        for f in spec.factors
    )
    cells = tuple(Cell(c.name, c.levels, c.weight) for c in spec.cells)
    design = Multivariate(factors=factors, cells=cells, **common)
    levels = {f.name: {level.name: level for level in f.levels} for f in spec.factors}
    changes: dict[str, Changes] = {}
    weights: dict[str, float] = {}
    for combination in design.all_cells():
        chosen = [levels[factor][level] for factor, level in combination.items()]
        name = next((c.name for c in cells if dict(c.levels) == combination), None)
        name = name or cell_name(combination)
        changes[name] = _merge(chosen)
        weights[name] = (
            next(c.weight for c in cells if c.name == name)
            if cells
            else _product(
                [
                    level.weight / _level_total(spec, f)
                    for f, level in zip(combination, chosen, strict=True)
                ]
            )
        )
    total = sum(weights.values())
    return Declared(
        spec=spec,
        ruleset=ruleset,
        design=design,
        changes=changes,
        weights={name: w / total for name, w in weights.items()},
    )


def _level_total(spec: ExperimentSpec, factor: str) -> float:
    return sum(level.weight for f in spec.factors if f.name == factor for level in f.levels)


def _product(values: Iterable[float]) -> float:
    result = 1.0
    for value in values:
        result *= value
    return result


def _merge(levels: Iterable[Changes]) -> Changes:
    """One cell's changes: each level's, later factors' fields over earlier ones'."""
    merged: dict[str, Any] = {"params": {}}
    for level in levels:
        for name in level.fields_set():
            value = getattr(level, name)
            merged[name] = {**merged["params"], **value} if name == "params" else value
    return Changes(**merged)


@dataclass
class Catalogue:
    """The declared experiments by what they target, in the files' order."""

    by_key: dict[str, Declared] = field(default_factory=dict)
    by_placement: dict[str, list[Declared]] = field(default_factory=dict)
    by_rule: dict[tuple[str, str], list[Declared]] = field(default_factory=dict)

    def for_placement(self, placement: str) -> list[Declared]:
        return self.by_placement.get(placement, [])

    def for_rule(self, ruleset: str, rule_id: str) -> list[Declared]:
        return self.by_rule.get((ruleset, rule_id), [])

    def arms_from(self, stored: Iterable[Mapping[str, Any]]) -> list[Arm]:
        """Arms as a firing keeps them (`Arm.as_dict`), with their changes as declared
        now; an experiment no longer declared (or its variant) no longer changes anything."""
        arms = []
        for item in stored:
            declared = self.by_key.get(item["experiment"])
            name, kept = item["variant"], tuple(item.get("segments", ()))
            if name == HOLDOUT and declared is not None:
                arms.append(Arm(declared.key, name, SUPPRESS, kept))
            elif declared is not None and name in declared.changes:
                arms.append(Arm(declared.key, name, declared.changes[name], kept))
        return arms


def catalogue(rulesets: Iterable[CompiledRuleset]) -> Catalogue:
    """The experiments of these rulesets (cached: the same rulesets give the same one)."""
    rulesets = list(rulesets)
    token = tuple(id(r) for r in rulesets)
    with _lock:
        found = _cache.get(token)
        if found is not None and all(a is b for a, b in zip(found[0], rulesets, strict=True)):
            return found[1]
    built = Catalogue()
    for ruleset in rulesets:
        for spec in ruleset.loaded.definition.experiments:
            declared = declare(spec, ruleset=ruleset.name)
            built.by_key[spec.key] = declared
            target = spec.target
            if target.placement is not None:
                built.by_placement.setdefault(target.placement, []).append(declared)
            for rule_id in (
                [target.rule] if target.rule else list(ruleset.rules) if target.ruleset else []
            ):
                built.by_rule.setdefault((ruleset.name, rule_id), []).append(declared)
    with _lock:
        if len(_cache) >= 8:
            _cache.pop(next(iter(_cache)))
        _cache[token] = (rulesets, built)
    return built


_cache: dict[tuple[int, ...], tuple[list[CompiledRuleset], Catalogue]] = {}
_lock = threading.Lock()


# --- applying an arm -----------------------------------------------------------------


def arms_for_rule(
    catalogue: Catalogue,
    *,
    ruleset: str,
    rule_id: str,
    unit_id: str,
    segments: Collection[str],
    now: datetime,
    pinned: Mapping[str, str] | None = None,
) -> list[Arm]:
    """The unit's arms in the experiments on this rule, up to the first that suppresses."""
    arms: list[Arm] = []
    for declared in catalogue.for_rule(ruleset, rule_id):
        arm = declared.arm(unit_id, segments=segments, now=now, pinned=pinned)
        if arm is not None:
            arms.append(arm)
            if arm.suppressed:
                break
    return arms


def wait(rule: CompiledRule, arms: Iterable[Arm]) -> timedelta:
    """How long after its trigger the rule acts, with a variant's delay for the rule's."""
    delays = [parse_duration(a.changes.delay) for a in arms if a.changes.delay]
    if not delays:
        return rule.wait
    spans = [parse_duration(w.spec.within) for w in rule.windows if w.is_absence]
    return max([*spans, delays[-1]])


def change_actions(
    actions: list[dict[str, Any]], arms: Iterable[Arm], *, tree: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rule's rendered actions as the arms change them: none when suppressed; a
    variant's offer, template and params on its offers."""
    changed = actions
    for arm in arms:
        if arm.suppressed:
            return []
        c = arm.changes
        if not (c.offer or c.template or c.params):
            continue
        params = render(c.params, tree)
        changed = [
            a
            | {k: v for k, v in (("offer", c.offer), ("template", c.template)) if v}
            | {"params": {**a.get("params", {}), **params}}
            if a["type"] == "offer"
            else a
            for a in changed
        ]
    return changed
