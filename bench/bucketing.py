"""Bucketing in process: what experiments declared in rule files add to choosing what
placements show, without HTTP, the database or the decision log.

    uv run python -m bench.bucketing    # BENCH_CALLS timed calls per measure (default
                                        # 10,000), in BENCH_ROUNDS (5) alternating turns

The experiments (EXPERIMENTS below) are appended to a copy of the shipped
`rules/placements.yaml`: an A/B/C test of `homepage_hero` (a control and two variants
with content, one with a templated param), a test of `cart_drawer` with a 10% holdout,
and a 2x2 multivariate test of `product_recs`. All split customers, so every
decision for a known customer buckets each placement it asks for. bench/decisions.py
serves the same files over HTTP.

- `Declared.arm` per call for each of the three experiments, over distinct unit ids,
  beside one `unit_hash` (one SHA-256: an A/B/C assignment hashes four times, a
  holdout adds one, the 2x2 test hashes five times).
- `service.decisions.service.choose` per call for each placement alone and for the
  three at once, with the shipped rules and with the shipped rules plus the
  experiments, for a mix of customers (10% `high_value`, a third with orders, 70% with
  marketing consent, 5% with an offer waiting for `cart_drawer`): what bucketing adds
  to choosing, as a share of it.

Each measure is timed with `timeit` over BENCH_CALLS calls per round, in this process's
CPU time (`time.process_time`: other processes on the shared cores do not count);
rounds of all measures alternate, so a noisy spell of the machine falls on all of them.
The figure is the median round.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import shutil
import statistics
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.decisions.repository import InboxEntry
from service.decisions.service import choose
from service.experiments.bucketing import unit_hash
from service.experiments.declared import catalogue
from service.language.engine import CompiledRuleset, Engine
from service.language.facts import Profile
from service.language.loader import load_directory

CALLS = int(os.environ.get("BENCH_CALLS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
RULES = Path(__file__).parents[1] / "rules"
PLACEMENTS = ["homepage_hero", "cart_drawer", "product_recs"]
NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
CONSENT_DEFAULTS = {"marketing": False}  # the service's default (settings.consent_defaults)

EXPERIMENTS = """
experiments:
  - key: bench_hero
    description: Three heroes, one a third of customers each.
    target: {placement: homepage_hero}
    variants:
      - {name: control}
      - {name: spring, content: spring_collection}
      - name: editorial
        content: editorial_picks
        params: {first_name: "{{ profile.traits.first_name }}"}

  - key: bench_cart
    description: Reassurance in the cart drawer, 10% held out.
    target: {placement: cart_drawer}
    holdout: {share: 0.1}
    variants:
      - {name: control}
      - {name: guarantee, content: cart_guarantee}

  - key: bench_recs
    description: Layout and ranking of recommendations, every combination.
    target: {placement: product_recs}
    factors:
      - name: layout
        levels: [{name: grid}, {name: carousel, content: recs_carousel}]
      - name: ranking
        levels: [{name: popular}, {name: personal, content: recs_personal}]
"""


@contextmanager
def rules_with_experiments() -> Iterator[Path]:
    """A copy of the shipped rule files with EXPERIMENTS declared in placements.yaml."""
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        directory = Path(tmp) / "rules"
        shutil.copytree(RULES, directory)
        with (directory / "placements.yaml").open("a") as file:
            file.write(EXPERIMENTS)
        yield directory


def main() -> None:
    engine = Engine()
    shipped = [engine.compile(item) for item in load_directory(RULES)]
    with rules_with_experiments() as directory:
        declared = [engine.compile(item) for item in load_directory(directory)]
    experiments = catalogue(declared)
    rng = random.Random(1)
    units = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(10_000)]
    customers = [customer(rng, i) for i in range(2_000)]

    measures: dict[str, Callable[[], object]] = {
        "unit_hash (one SHA-256)": cycling(
            units, lambda u: unit_hash(seed="bench_hero.control", unit_id=u)
        )
    }
    for key in ("bench_hero", "bench_cart", "bench_recs"):
        arm = functools.partial(experiments.by_key[key].arm, segments=(), now=NOW)
        measures[f"Declared.arm {key}"] = cycling(units, arm)
    for placements in [[p] for p in PLACEMENTS] + [PLACEMENTS]:
        for label, rulesets in (("without", shipped), ("with", declared)):
            measures[f"choose {'+'.join(placements)} {label}"] = cycling(
                customers, deciding(engine, rulesets, placements)
            )
    timings = measure(measures)

    print(f"\n{CALLS:,} calls a round, {ROUNDS} rounds, median round (all rounds) in µs a call")
    for label in list(measures)[:4]:
        print(f"{label:<40}{_row(timings[label])}")
    print(f"{'':<40}{'without':>9}{'with':>9}{'added':>9}   rounds without | with")
    for placements in [[p] for p in PLACEMENTS] + [PLACEMENTS]:
        name = "+".join(placements)
        without, with_ = timings[f"choose {name} without"], timings[f"choose {name} with"]
        a, b = statistics.median(without), statistics.median(with_)
        print(
            f"{'choose ' + name:<40}{a:>9.2f}{b:>9.2f}{(b - a) / a:>+9.1%}   "
            f"{_all(without)} | {_all(with_)}"
        )


def customer(rng: random.Random, i: int) -> tuple[Profile, list[InboxEntry]]:
    profile = Profile(
        customer_id=uuid.UUID(int=rng.getrandbits(128)),
        orders_count=1 + i % 4 if i % 3 == 0 else 0,
        traits={"first_name": "Sam"},
        segments=("high_value",) if i % 10 == 0 else (),
        consent={"marketing": i % 10 < 7},
    )
    inbox = []
    if i % 20 == 0:
        expires = NOW + timedelta(days=7)
        inbox.append(InboxEntry(i, "offer", "CART10", "cart_drawer", {}, expires))
    return profile, inbox


def deciding(
    engine: Engine, rulesets: list[CompiledRuleset], placements: list[str]
) -> Callable[[tuple[Profile, list[InboxEntry]]], object]:
    def decide(item: tuple[Profile, list[InboxEntry]]) -> object:
        profile, inbox = item
        return choose(
            engine=engine,
            rulesets=rulesets,
            placements=placements,
            profile=profile,
            context={"cart": {"value": 20}, "device": "mobile"},
            inbox=inbox,
            now=NOW,
            consent_defaults=CONSENT_DEFAULTS,
            explain=False,
        )

    return decide


def cycling(items: list[Any], call: Callable[[Any], object]) -> Callable[[], object]:
    """A call without arguments that takes the next of `items` each time."""
    following = itertools.cycle(items).__next__
    return lambda: call(following())


def measure(measures: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """µs a call, one figure per round for each measure; rounds alternate measures."""
    for call in measures.values():
        timeit.Timer(call).timeit(number=max(1, CALLS // 10))  # warm-up
    timings: dict[str, list[float]] = {label: [] for label in measures}
    for _ in range(ROUNDS):
        for label, call in measures.items():
            timer = timeit.Timer(call, timer=time.process_time)
            timings[label].append(timer.timeit(number=CALLS) / CALLS * 1e6)
    return timings


def _row(values: list[float]) -> str:
    return f"{statistics.median(values):>9.2f}   ({_all(values)})"


def _all(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
