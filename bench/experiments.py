"""Experiments: the statistics on simulated experiments at full size, and bucketing speed.

    uv run python -m bench.experiments      # BENCH_RUNS simulated experiments per figure
                                            # (default 2,000), BENCH_SEED (default 2026)

Every figure is the share of BENCH_RUNS seeded two-variant experiments in which a test
rejected at alpha 0.05, with its 95% Wilson interval:

- A/A, fixed horizon: conversion (5%, 10,000 units a variant, two-proportion z-test) and
  revenue per unit (5% buy, lognormal orders, 5,000 units a variant, Welch's t-test).
  Target: within [0.03, 0.07].
- A/A under daily peeking, 14 looks of 1,000 units a variant a day: the fixed-horizon
  z-test read every day, and the always-valid mSPRT p-value. Target: mSPRT <= 0.05.
- A planted +10% relative lift of a 5% conversion rate at the units per variant the
  sample-size calculator gives for 80% power. Target: the predicted power ±0.10. Beside
  it, the mSPRT's power with the same units spread over 14 daily looks, with the default
  tuning (N* = 5,000) and tuned to the planned total.
- A planted sample-ratio mismatch (52/48 on average, 50/50 expected, 20,000 units), and the
  false flags of an even split. Each run draws its split around 52/48, so about 99% of
  runs reach p < 0.001. Target: flagged in >= 98% of runs.
- Bucketing: `assign` per second for a three-variant experiment with a holdout.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from service.experiments.bucketing import Experiment, Holdout, Variant, assign
from service.experiments.power import (
    conversion_effect_size,
    conversion_units_per_variant,
    power_at,
)
from service.experiments.simulation import (
    conversion_rejections,
    peeking_rejections,
    revenue_rejections,
    srm_flags,
)

RUNS = int(os.environ.get("BENCH_RUNS", "2000"))
SEED = int(os.environ.get("BENCH_SEED", "2026"))


def figure(label: str, run: Callable[[np.random.Generator], float], target: str) -> float:
    """Run one simulation with its own generator and print the share with its interval."""
    started = time.perf_counter()
    share = run(np.random.default_rng([SEED, zlib.crc32(label.encode())]))
    low, high = proportion_confint(round(share * RUNS), RUNS, method="wilson")
    seconds = time.perf_counter() - started
    print(f"{label:<58}{share:>8.4f}  [{low:.4f}, {high:.4f}]  {target:<18}{seconds:>6.1f} s")
    return share


def bucketing_rate(units: int = 100_000) -> float:
    experiment = Experiment(
        key="hero",
        variants=(Variant("control", 2), Variant("b"), Variant("c")),
        holdout=Holdout(seed="holdout-2026", share=0.05),
    )
    started = time.perf_counter()
    for i in range(units):
        assign(experiment=experiment, unit_id=f"user-{i}")
    return units / (time.perf_counter() - started)


def main() -> None:
    print(f"{RUNS:,} simulated experiments per figure, seed {SEED}, alpha 0.05\n")
    print(f"{'figure':<58}{'share':>8}  {'95% interval':<18}  {'target':<18}{'time':>8}")
    figure(
        "A/A conversion, z-test at the horizon",
        lambda rng: conversion_rejections(rng=rng, runs=RUNS, units=10_000, rate=0.05),
        "in [0.03, 0.07]",
    )
    figure(
        "A/A revenue per unit, Welch at the horizon",
        lambda rng: revenue_rejections(rng=rng, runs=RUNS, units=5_000),
        "in [0.03, 0.07]",
    )
    peeking: dict[str, Any] = {"runs": RUNS, "units_per_day": 1_000, "days": 14, "rate": 0.05}
    figure(
        "A/A, 14 daily looks, fixed-horizon z-test each day",
        lambda rng: peeking_rejections(rng=rng, sequential=False, **peeking),
        "(inflated)",
    )
    figure(
        "A/A, 14 daily looks, mSPRT always-valid p-value",
        lambda rng: peeking_rejections(rng=rng, **peeking),
        "<= 0.05",
    )
    units = conversion_units_per_variant(baseline_rate=0.05, relative_mde=0.1, power=0.8)
    effect = conversion_effect_size(baseline_rate=0.05, relative_mde=0.1)
    predicted = power_at(effect_size=effect, units=units)
    figure(
        f"+10% lift, {units:,} units a variant, z-test at the horizon",
        lambda rng: conversion_rejections(rng=rng, runs=RUNS, units=units, rate=0.05, lift=0.1),
        f"{predicted:.3f} ± 0.10",
    )
    daily = -(-units // 14)
    figure(
        f"+10% lift, {daily:,} a variant a day x 14 looks, mSPRT",
        lambda rng: peeking_rejections(
            rng=rng, runs=RUNS, units_per_day=daily, days=14, rate=0.05, lift=0.1
        ),
        "(no target)",
    )
    figure(
        f"+10% lift, as above, mSPRT tuned to N* = {2 * daily * 14:,}",
        lambda rng: peeking_rejections(
            rng=rng,
            runs=RUNS,
            units_per_day=daily,
            days=14,
            rate=0.05,
            lift=0.1,
            tuning_sample_size=2 * daily * 14,
        ),
        "(no target)",
    )
    figure(
        "SRM 52/48 of 20,000 units flagged (p < 0.001)",
        lambda rng: srm_flags(rng=rng, runs=RUNS, units=20_000, observed_share=0.52),
        ">= 0.98",
    )
    figure(
        "SRM false flags, even split of 20,000 units",
        lambda rng: srm_flags(rng=rng, runs=RUNS, units=20_000, observed_share=0.5),
        "about 0.001",
    )
    print(f"\nbucketing: {bucketing_rate():,.0f} assignments/s (3 variants, a holdout)")


if __name__ == "__main__":
    main()
