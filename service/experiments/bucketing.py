"""Deterministic assignment of a unit (a customer, an anonymous id) to an experiment's variant.

Every caller (decisions, rule evaluation, the in-file tester) goes through one
experiment's `Bucketer` (declared.py), which answers as `assign` or `assign_cell` with
every seed's bytes made once, so a unit sees the same variant wherever it is asked.

The hash: `unit_hash(seed, unit_id)` is the first 8 bytes of SHA-256 of the UTF-8 text
`seed + "/" + unit_id`, read as a big-endian unsigned integer and divided by 2**64, a
number in [0, 1). Seeds are made of names (`[A-Za-z0-9_-]`) joined by "." and never hold
"/", so the text is unambiguous. An experiment's seed is its key unless it names one.

In order, for one unit:

1. Holdout: `unit_hash(holdout.seed, unit) < holdout.share` keeps the unit out. The
   holdout has its own seed, so several experiments can share one.
2. Coverage: `unit_hash(seed, unit) < coverage` lets the unit in; raising the coverage only
   lets more units in.
3. Variant: each variant draws its own hash `u = unit_hash(seed + "." + variant, unit)` and
   the lowest `-ln(1 - u) / weight` wins (weighted rendezvous hashing: an exponential race,
   each variant winning with probability weight / total weight).

The race makes the variant stable when weights change. Raising one variant's weight, the
others as they were, moves units into it and only into it, taken from every other variant in
proportion; lowering it moves units out of it only. A new variant takes units only into
itself; a removed variant's units go to the others and nobody else moves. Contiguous ranges
(variant i owning [w0 + … + w(i-1), w0 + … + wi)) shift every later boundary instead.
No layout keeps every variant but the grown one in place for any change of several weights
at once when there are three variants or more (see docs/statistics.md).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import product

NAME = re.compile(r"[A-Za-z0-9_-]+")


class Exposure(StrEnum):
    """Why a unit got (or did not get) a variant."""

    HOLDOUT = "holdout"
    NOT_COVERED = "not_covered"
    ASSIGNED = "assigned"


def unit_hash(*, seed: str, unit_id: str) -> float:
    """The unit's place in [0, 1) under `seed`: SHA-256 of "seed/unit_id", first 8 bytes."""
    digest = hashlib.sha256(f"{seed}/{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_name(name: str, *, what: str) -> None:
    if not NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r}: letters, digits, '_' and '-' only")


def _check_share(share: float, *, what: str) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{what} {share!r}: a share in [0, 1]")


@dataclass(frozen=True)
class Variant:
    """A variant and its relative weight (weights need not sum to 1)."""

    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check_name(self.name, what="variant")
        if not (self.weight >= 0.0 and math.isfinite(self.weight)):
            raise ValueError(f"variant {self.name!r}: the weight must be finite and >= 0")


@dataclass(frozen=True)
class Holdout:
    """A share of units kept out of every experiment that names this holdout."""

    seed: str
    share: float

    def __post_init__(self) -> None:
        for part in self.seed.split("."):
            _check_name(part, what="holdout seed part")
        _check_share(self.share, what="holdout share")


def _check_variants(variants: Sequence[Variant], *, what: str) -> None:
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: variant names must be unique")
    if not any(v.weight > 0 for v in variants):
        raise ValueError(f"{what}: at least one variant needs a weight above 0")


@dataclass(frozen=True)
class Experiment:
    """An A/B/n test: its variants, the share of units it covers, an optional holdout."""

    key: str
    variants: tuple[Variant, ...]
    coverage: float = 1.0
    holdout: Holdout | None = None
    seed: str = ""

    def __post_init__(self) -> None:
        _check_name(self.key, what="experiment key")
        if self.seed:
            _check_name(self.seed, what="experiment seed")
        _check_share(self.coverage, what="coverage")
        _check_variants(self.variants, what=self.key)

    @property
    def hash_seed(self) -> str:
        return self.seed or self.key


@dataclass(frozen=True)
class Assignment:
    """One unit's outcome: the variant when `exposure` is ASSIGNED, else None."""

    exposure: Exposure
    variant: str | None = None


def choose(*, seed: str, variants: Sequence[Variant], unit_id: str) -> str:
    """The variant whose `-ln(1 - u) / weight` is lowest (first listed on a tie)."""
    best_name, best_score = "", math.inf
    for variant in variants:
        if variant.weight <= 0:
            continue
        u = unit_hash(seed=f"{seed}.{variant.name}", unit_id=unit_id)
        score = -math.log1p(-u) / variant.weight
        if score < best_score or not best_name:
            best_name, best_score = variant.name, score
    return best_name


def _gate(*, seed: str, coverage: float, holdout: Holdout | None, unit_id: str) -> Exposure | None:
    """HOLDOUT or NOT_COVERED when the unit stays out, None when it is in."""
    if holdout is not None and unit_hash(seed=holdout.seed, unit_id=unit_id) < holdout.share:
        return Exposure.HOLDOUT
    if unit_hash(seed=seed, unit_id=unit_id) >= coverage:
        return Exposure.NOT_COVERED
    return None


def assign(*, experiment: Experiment, unit_id: str) -> Assignment:
    """The unit's variant in `experiment`: holdout first, then coverage, then the race."""
    seed = experiment.hash_seed
    out = _gate(
        seed=seed, coverage=experiment.coverage, holdout=experiment.holdout, unit_id=unit_id
    )
    if out is not None:
        return Assignment(exposure=out)
    variant = choose(seed=seed, variants=experiment.variants, unit_id=unit_id)
    return Assignment(exposure=Exposure.ASSIGNED, variant=variant)


@dataclass(frozen=True)
class Factor:
    """One dimension of a multivariate test and its levels (weighted like variants)."""

    name: str
    levels: tuple[Variant, ...]

    def __post_init__(self) -> None:
        _check_name(self.name, what="factor")
        _check_variants(self.levels, what=self.name)


@dataclass(frozen=True)
class Cell:
    """A named combination of levels, one per factor, for a fractional design."""

    name: str
    levels: Mapping[str, str]
    weight: float = 1.0

    def __post_init__(self) -> None:
        Variant(name=self.name, weight=self.weight)  # the same rules as a variant


def cell_name(levels: Mapping[str, str]) -> str:
    """The name of a full-factorial cell: "factor=level" pairs joined by "," in factor order."""
    return ",".join(f"{factor}={level}" for factor, level in levels.items())


@dataclass(frozen=True)
class Multivariate:
    """Several factors tested at once.

    Full factorial (no `cells`): each factor draws its level with its own seed
    (`seed.factor`), so factors are independent and every combination occurs. Fractional:
    `cells` names the combinations that run, and the unit draws one cell, weighted.
    """

    key: str
    factors: tuple[Factor, ...]
    cells: tuple[Cell, ...] = field(default=())
    coverage: float = 1.0
    holdout: Holdout | None = None
    seed: str = ""

    def __post_init__(self) -> None:
        _check_name(self.key, what="experiment key")
        if self.seed:
            _check_name(self.seed, what="experiment seed")
        _check_share(self.coverage, what="coverage")
        names = [f.name for f in self.factors]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{self.key}: one factor at least, with unique names")
        levels = {f.name: {v.name for v in f.levels} for f in self.factors}
        for cell in self.cells:
            if set(cell.levels) != set(levels) or any(
                level not in levels[factor] for factor, level in cell.levels.items()
            ):
                raise ValueError(f"cell {cell.name!r}: one known level for each factor")
        if self.cells:
            _check_variants([Variant(c.name, c.weight) for c in self.cells], what=self.key)

    @property
    def hash_seed(self) -> str:
        return self.seed or self.key

    def all_cells(self) -> list[dict[str, str]]:
        """Every cell the design can assign, in factor order."""
        if self.cells:
            return [self._ordered(cell.levels) for cell in self.cells]
        names = [f.name for f in self.factors]
        combos = product(*[[v.name for v in f.levels if v.weight > 0] for f in self.factors])
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    def _ordered(self, levels: Mapping[str, str]) -> dict[str, str]:
        return {f.name: levels[f.name] for f in self.factors}


@dataclass(frozen=True)
class CellAssignment:
    """One unit's outcome in a multivariate test: its cell when ASSIGNED."""

    exposure: Exposure
    cell: str | None = None
    levels: dict[str, str] | None = None


def assign_cell(*, design: Multivariate, unit_id: str) -> CellAssignment:
    """The unit's cell: holdout and coverage as in `assign`, then a level per factor
    (full factorial) or one of the named cells (fractional)."""
    seed = design.hash_seed
    out = _gate(seed=seed, coverage=design.coverage, holdout=design.holdout, unit_id=unit_id)
    if out is not None:
        return CellAssignment(exposure=out)
    if design.cells:
        cells = {cell.name: cell for cell in design.cells}
        weighted = [Variant(c.name, c.weight) for c in design.cells]
        name = choose(seed=seed, variants=weighted, unit_id=unit_id)
        levels = design._ordered(cells[name].levels)
        return CellAssignment(exposure=Exposure.ASSIGNED, cell=name, levels=levels)
    levels = {
        f.name: choose(seed=f"{seed}.{f.name}", variants=f.levels, unit_id=unit_id)
        for f in design.factors
    }
    return CellAssignment(exposure=Exposure.ASSIGNED, cell=cell_name(levels), levels=levels)


# --- the same answers, each design's seeds made once -----------------------------------

_FIRST_8_BYTES = struct.Struct(">Q").unpack_from  # int.from_bytes(digest[:8], "big")
_SCALE = 2.0**64

# A race made ready: (b"<seed>.<name>/", name, weight) for each variant (or level, or
# cell) with a weight above 0, in order.
Race = tuple[tuple[bytes, str, float], ...]


def _race(seed: str, variants: Sequence[Variant]) -> Race:
    return tuple((f"{seed}.{v.name}/".encode(), v.name, v.weight) for v in variants if v.weight > 0)


def _run(race: Race, unit: bytes) -> str:
    """`choose` over a made-ready race: `unit_hash` and the score computed alike."""
    sha256, first_8_bytes, log1p = hashlib.sha256, _FIRST_8_BYTES, math.log1p
    best_name, best_score = "", math.inf
    for prefix, name, weight in race:
        score = -log1p(-(first_8_bytes(sha256(prefix + unit).digest())[0] / _SCALE)) / weight
        if score < best_score or not best_name:
            best_name, best_score = name, score
    return best_name


@dataclass(frozen=True)
class Bucketer:
    """`assign` (an Experiment) or `assign_cell` (a Multivariate) for one design, as
    (exposure, variant or cell name); the same hashes of the same bytes, with the seeds'
    bytes, the races and the full-factorial cells' names made once, not at every call.
    tests/experiments/test_bucketing.py holds it to the same answers."""

    holdout: tuple[bytes, float] | None  # (b"<holdout seed>/", share)
    coverage: tuple[bytes, float]  # (b"<seed>/", coverage)
    races: tuple[Race, ...]  # the variants' (or cells') race; or one race per factor
    cells: Mapping[tuple[str, ...], str] | None  # full factorial: levels → cell name

    @classmethod
    def of(cls, design: Experiment | Multivariate) -> Bucketer:
        seed = design.hash_seed
        holdout = (
            (f"{design.holdout.seed}/".encode(), design.holdout.share) if design.holdout else None
        )
        coverage = (f"{seed}/".encode(), design.coverage)
        if isinstance(design, Experiment):
            return cls(holdout, coverage, (_race(seed, design.variants),), None)
        if design.cells:
            weighted = [Variant(c.name, c.weight) for c in design.cells]
            return cls(holdout, coverage, (_race(seed, weighted),), None)
        races = tuple(_race(f"{seed}.{f.name}", f.levels) for f in design.factors)
        cells = {tuple(levels.values()): cell_name(levels) for levels in design.all_cells()}
        return cls(holdout, coverage, races, cells)

    def __call__(self, unit_id: str) -> tuple[Exposure, str | None]:
        unit = unit_id.encode()
        if self.holdout is not None:
            prefix, share = self.holdout
            if _FIRST_8_BYTES(hashlib.sha256(prefix + unit).digest())[0] / _SCALE < share:
                return Exposure.HOLDOUT, None
        prefix, coverage = self.coverage
        if _FIRST_8_BYTES(hashlib.sha256(prefix + unit).digest())[0] / _SCALE >= coverage:
            return Exposure.NOT_COVERED, None
        if self.cells is None:
            return Exposure.ASSIGNED, _run(self.races[0], unit)
        return Exposure.ASSIGNED, self.cells[tuple(_run(race, unit) for race in self.races)]
