"""Bucketing: the documented hash, weights honoured, and units that stay put when weights,
coverage or the set of variants change."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime

import pytest
from scipy import stats

from service.experiments.bucketing import (
    Bucketer,
    Cell,
    Experiment,
    Exposure,
    Factor,
    Holdout,
    Multivariate,
    Variant,
    assign,
    assign_cell,
    unit_hash,
)
from service.experiments.checks import sample_ratio_mismatch
from service.experiments.declared import HOLDOUT, declare
from service.language.experiments import ExperimentSpec

IDS = [f"user-{i}" for i in range(10_000)]


def experiment(*weights: float, names: str = "abcdefgh", **kwargs: object) -> Experiment:
    variants = tuple(Variant(names[i], w) for i, w in enumerate(weights))
    return Experiment(key="hero", variants=variants, **kwargs)  # type: ignore[arg-type]


def variants_of(exp: Experiment, ids: list[str] = IDS) -> dict[str, str | None]:
    return {uid: assign(experiment=exp, unit_id=uid).variant for uid in ids}


def test_the_hash_is_the_first_8_bytes_of_sha256_of_seed_slash_unit() -> None:
    digest = hashlib.sha256(b"hero/user-1").digest()
    assert unit_hash(seed="hero", unit_id="user-1") == int.from_bytes(digest[:8]) / 2**64
    # Pinned: a change of the hash reshuffles every running experiment.
    assert unit_hash(seed="hero", unit_id="user-1") == pytest.approx(0.5634573178988636, abs=1e-15)
    values = [unit_hash(seed="s", unit_id=u) for u in IDS]
    assert all(0 <= v < 1 for v in values)
    assert stats.kstest(values, "uniform").pvalue > 0.001


def test_the_same_unit_gets_the_same_variant_every_time() -> None:
    exp = experiment(1, 1, 1)
    assert variants_of(exp, IDS[:500]) == variants_of(exp, IDS[:500])
    reordered = Experiment(key="hero", variants=tuple(reversed(exp.variants)))
    assert variants_of(reordered, IDS[:500]) == variants_of(exp, IDS[:500])


def test_weights_are_honoured_without_a_sample_ratio_mismatch() -> None:
    weights = [0.5, 0.3, 0.2]
    counts = Counter(variants_of(experiment(*weights)).values())
    srm = sample_ratio_mismatch(units=[counts[n] for n in "abc"], weights=weights)
    assert not srm.mismatch, (counts, srm)
    assert counts["a"] / len(IDS) == pytest.approx(0.5, abs=0.015)


def test_a_zero_weight_variant_gets_nobody() -> None:
    assert set(variants_of(experiment(1, 0, 1), IDS[:2000]).values()) == {"a", "c"}


def moved(before: dict[str, str | None], after: dict[str, str | None]) -> Counter[tuple]:
    return Counter((before[u], after[u]) for u in before if before[u] != after[u])


@pytest.mark.parametrize("grown", ["a", "b", "c"])
def test_raising_one_weight_moves_units_only_into_it(grown: str) -> None:
    old = experiment(1, 1, 1)
    new = experiment(*[2 if n == grown else 1 for n in "abc"])
    moves = moved(variants_of(old), variants_of(new))
    assert {to for _, to in moves} == {grown}
    share = sum(moves.values()) / len(IDS)
    assert share == pytest.approx(2 / 4 - 1 / 3, abs=0.012)  # exactly the share it gained
    losers = [moves[(n, grown)] for n in "abc" if n != grown]
    assert abs(losers[0] - losers[1]) < 0.1 * sum(losers)  # taken from the others alike


def test_lowering_one_weight_moves_units_only_out_of_it() -> None:
    moves = moved(variants_of(experiment(2, 1, 1)), variants_of(experiment(1, 1, 1)))
    assert {frm for frm, _ in moves} == {"a"}
    assert sum(moves.values()) / len(IDS) == pytest.approx(2 / 4 - 1 / 3, abs=0.012)


def test_two_variants_move_only_the_changed_share() -> None:
    moves = moved(variants_of(experiment(50, 50)), variants_of(experiment(70, 30)))
    assert set(moves) == {("b", "a")}
    assert sum(moves.values()) / len(IDS) == pytest.approx(0.2, abs=0.012)


def test_adding_a_variant_moves_units_only_into_it_and_removing_it_moves_them_back() -> None:
    two, three = variants_of(experiment(1, 1)), variants_of(experiment(1, 1, 1))
    moves = moved(two, three)
    assert {to for _, to in moves} == {"c"}
    assert sum(moves.values()) / len(IDS) == pytest.approx(1 / 3, abs=0.012)
    assert moved(three, two).keys() == {("c", "a"), ("c", "b")}


def test_coverage_lets_in_more_units_without_moving_those_already_in() -> None:
    small = variants_of(experiment(1, 1, coverage=0.2))
    large = variants_of(experiment(1, 1, coverage=0.6))
    inside = [u for u in IDS if small[u] is not None]
    assert len(inside) / len(IDS) == pytest.approx(0.2, abs=0.012)
    assert sum(v is not None for v in large.values()) / len(IDS) == pytest.approx(0.6, abs=0.012)
    assert all(large[u] == small[u] for u in inside)
    counts = Counter(v for v in large.values() if v)
    assert not sample_ratio_mismatch(units=[counts["a"], counts["b"]], weights=[1, 1]).mismatch


def test_the_holdout_comes_first_with_its_own_seed() -> None:
    holdout = Holdout(seed="holdout-2026", share=0.1)
    first = experiment(1, 1, holdout=holdout)
    second = Experiment(key="banner", variants=first.variants, holdout=holdout)
    first_got = {u: assign(experiment=first, unit_id=u) for u in IDS}
    out_first = {u for u, a in first_got.items() if a.exposure == Exposure.HOLDOUT}
    out_second = {
        u for u in IDS if assign(experiment=second, unit_id=u).exposure == Exposure.HOLDOUT
    }
    assert out_first == out_second  # one holdout shared by both experiments
    assert len(out_first) / len(IDS) == pytest.approx(0.1, abs=0.01)
    # Independent of the variant hash: the others keep the variant they had without it.
    no_holdout = variants_of(experiment(1, 1))
    assert all(first_got[u].variant == no_holdout[u] for u in IDS if u not in out_first)


def test_full_factorial_factors_are_independent() -> None:
    colour = Factor("colour", (Variant("red"), Variant("blue"), Variant("green")))
    size = Factor("size", (Variant("small"), Variant("large", 3)))
    design = Multivariate(key="hero-grid", factors=(colour, size))
    cells = [assign_cell(design=design, unit_id=u) for u in IDS]
    assert {c.cell for c in cells} == {
        f"colour={c},size={s}" for c in ("red", "blue", "green") for s in ("small", "large")
    }
    assert len(design.all_cells()) == 6
    table = Counter((c.levels["colour"], c.levels["size"]) for c in cells if c.levels)
    grid = [[table[(c, s)] for s in ("small", "large")] for c in ("red", "blue", "green")]
    assert stats.chi2_contingency(grid).pvalue > 0.001  # no dependence between factors
    large = sum(row[1] for row in grid) / len(IDS)
    assert large == pytest.approx(0.75, abs=0.015)


def test_a_fractional_design_assigns_only_the_named_cells() -> None:
    colour = Factor("colour", (Variant("red"), Variant("blue")))
    size = Factor("size", (Variant("small"), Variant("large")))
    cells = (
        Cell("red-small", {"colour": "red", "size": "small"}),
        Cell("blue-large", {"size": "large", "colour": "blue"}, weight=3),
    )
    design = Multivariate(key="hero-grid", factors=(colour, size), cells=cells)
    got = Counter(assign_cell(design=design, unit_id=u).cell for u in IDS)
    assert set(got) == {"red-small", "blue-large"}
    assert got["blue-large"] / len(IDS) == pytest.approx(0.75, abs=0.02)
    one = assign_cell(design=design, unit_id="user-1")
    assert list(one.levels or {}) == ["colour", "size"]


def test_invalid_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="letters"):
        Experiment(key="a/b", variants=(Variant("x"),))
    with pytest.raises(ValueError, match="unique"):
        experiment(1, 1, names="aa")
    with pytest.raises(ValueError, match="above 0"):
        experiment(0, 0)
    with pytest.raises(ValueError, match="weight"):
        Variant("x", -1)
    with pytest.raises(ValueError, match="coverage"):
        experiment(1, coverage=1.5)
    colour = Factor("colour", (Variant("red"),))
    with pytest.raises(ValueError, match="known level"):
        Multivariate(key="m", factors=(colour,), cells=(Cell("x", {"colour": "blue"}),))


COLOUR = Factor("colour", (Variant("red"), Variant("blue", 0), Variant("green", 2.5)))
SIZE = Factor("size", (Variant("small"), Variant("large", 3)))
DESIGNS = {
    "a/b/c": experiment(1, 1, 1),
    "weights, a zero, coverage, holdout, seed": experiment(
        5, 0, 2.5, coverage=0.7, holdout=Holdout(seed="shared.holdout", share=0.2), seed="s2"
    ),
    "full factorial, holdout": Multivariate(
        key="grid", factors=(COLOUR, SIZE), holdout=Holdout(seed="h", share=0.1)
    ),
    "fractional, coverage": Multivariate(
        key="grid",
        factors=(COLOUR, SIZE),
        cells=(
            Cell("red-small", {"colour": "red", "size": "small"}),
            Cell("green-large", {"size": "large", "colour": "green"}, weight=3),
        ),
        coverage=0.5,
    ),
}


@pytest.mark.parametrize("name", DESIGNS)
def test_the_bucketer_answers_as_assign_and_assign_cell(name: str) -> None:
    design = DESIGNS[name]
    bucket = Bucketer.of(design)
    for unit in [*IDS, "", "café-ü", "0" * 200]:
        if isinstance(design, Multivariate):
            cell = assign_cell(design=design, unit_id=unit)
            expected = (cell.exposure, cell.cell)
        else:
            single = assign(experiment=design, unit_id=unit)
            expected = (single.exposure, single.variant)
        assert bucket(unit) == expected, unit


def test_a_declared_experiment_gives_each_unit_its_arm() -> None:
    spec = ExperimentSpec.model_validate(
        {
            "key": "hero",
            "target": {"placement": "homepage_hero"},
            "coverage": 0.8,
            "holdout": {"share": 0.1},
            "variants": [{"name": "a"}, {"name": "b", "content": "spring", "weight": 2}],
        }
    )
    declared = declare(spec, ruleset="placements")
    design = Experiment(
        key="hero",
        variants=(Variant("a"), Variant("b", 2)),
        coverage=0.8,
        holdout=Holdout(seed="hero.holdout", share=0.1),
    )
    seen: Counter[Exposure] = Counter()
    for unit in IDS[:3000]:
        arm = declared.arm(unit, segments=["vip", "new"], now=datetime.now(UTC))
        expected = assign(experiment=design, unit_id=unit)
        seen[expected.exposure] += 1
        if expected.exposure == Exposure.NOT_COVERED:
            assert arm is None
            continue
        assert arm is not None
        assert arm.segments == ("new", "vip")
        if expected.exposure == Exposure.HOLDOUT:
            assert (arm.variant, arm.suppressed) == (HOLDOUT, True)
        else:
            assert arm.variant == expected.variant
            assert arm.changes.content == ("spring" if arm.variant == "b" else None)
    assert len(seen) == 3  # each way out and in was met
