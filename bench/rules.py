"""Rule evaluation on one core: the shipped rule files (`rules/*.yaml`) against a mix of
storefront events, beside the engines underneath, measured in the same run.

    uv run python -m bench.rules        # BENCH_EVALS evaluations per measure (default 50,000)
    uv run python -m bench.rules --reads  # and the profile reads, on a database (see
                                          # bench/facts_reads.py)

One process, one thread, pinned to one CPU (BENCH_CPU, else the first this process may
use). The events are BENCH_MESSAGES distinct ones (product views, adds to cart with a
cart, page views of the homepage and of other pages, orders) for profiles of every
kind (new and repeat customers, big and small spenders, with and without RFM scores,
with and without marketing consent), replayed in turn. Each measure runs BENCH_WARMUP
evaluations first, then BENCH_EVALS timed one by one, in BENCH_ROUNDS (5) turns that
alternate with the other measures' so that a noisy spell of the machine is shared:
evaluations/s over the timed loops, and the median and 99th percentile of one
evaluation. An evaluation is one event against every ruleset its trigger concerns.

- `Engine.match` alone: the facts tree and the count/absence values are computed before
  the timed loop; each evaluation projects the facts and asserts and retracts one fact
  per ruleset, as the evaluator does, calling the C engine directly (orjson-encoded
  facts, queued actions taken without durable-rules' Python closures).
- `evaluator.evaluate` end to end: the facts tree, history values, matching,
  arbitration (priority and cooldown groups) and action rendering. Its store answers
  count, first_of and group_acted from values precomputed per event, in O(1): the
  database is not measured here, its history queries come on top of this figure.
  The target is 15,000 evaluations/s on one core.
- durable-rules raw: the same compiled rulesets in a bare durable-rules Host, asserting
  and retracting pre-built messages through its documented Python API (each action a
  Python callback): the library as an application would use it.
- zen-engine: the same rules written as JDM decision tables (ZEN_TABLES below) over a
  flat context of the same facts and history values, built beforehand, evaluated with
  `ZenEngine.evaluate` as one table of all the rules, and as one table per rule file
  (evaluated for the files the trigger concerns); and the same combined graph through
  `ZenDecision.evaluate`, the call `create_decision` gives.

- The marketers' profile facts (orders and spend in the last 30/90/365 days, CLV,
  discount use, categories viewed and bought): `Engine.match` and `evaluator.evaluate`
  over the shipped files and a file of rules on those facts (bench/rules_facts.py), and
  over the shipped files and a file of the same rules on older facts (total spent,
  orders, segments), beside the shipped files alone; every profile has every fact.
- With `--reads`, the database reads that give rules, segments and decisions their
  profiles, with and without the new facts (bench/facts_reads.py), in the same run.

Before timing, every distinct event is evaluated each way, and the run stops unless each
way fires the same set of rules as `Engine.match` for every one of them.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import zen
from durable import engine as durable

from bench.rules_facts import CATEGORIES, FACTS, FILES, LIKE, check_file, facts_before
from service.language.engine import TRIGGER_KEY, CompiledRuleset, Engine, _Compiler, _Host, project
from service.language.facts import WINDOW_DAYS, Profile, TriggerEvent, lookup
from service.language.loader import load_directory, load_source
from service.language.schema import CountSpec
from service.rules import evaluator

EVALS = int(os.environ.get("BENCH_EVALS", "50000"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "5000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "2000"))
SEED = int(os.environ.get("BENCH_SEED", "1"))
TARGET = 15_000  # evaluator.evaluate, evaluations/s on one core
RULES = Path(__file__).parents[1] / "rules"
NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
CONSENT_DEFAULTS = {"marketing": False}  # the service's default (settings.consent_defaults)

# --- the same rules for zen-engine -------------------------------------------------------

# The flat context zen reads: fact path → field.
FLAT_FACTS = {
    "event.name": "event",
    "event.properties.cart_id": "cart_id",
    "event.properties.product_id": "product_id",
    "event.properties.path": "path",
    "profile.consent.marketing": "consent_marketing",
    "profile.orders_count": "orders_count",
    "profile.total_spent": "total_spent",
    "profile.rfm_monetary": "rfm_monetary",
}
# (ruleset, count or absent, within) → field holding that window's value.
FLAT_WINDOWS = {
    ("cart_abandonment", "absent", "24h"): "no_checkout_24h",
    ("browse_abandonment", "count", "24h"): "views_24h",
    ("browse_abandonment", "absent", "2h"): "not_bought_2h",
    ("win_back", "absent", "90d"): "no_order_90d",
}
# One row per rule: `rule` is the output, every other key a column of that name whose
# cell is a unary test of the field's value (`$`); a column a row leaves out matches
# anything. In zen an ordering test on null (`null >= 3`) is an evaluation error, and a
# cell that errs, or does not parse, silently fails its row; in a cell `and` and `or`
# bind equally, left to right, and a parenthesised `and` does not parse. So tests on
# facts that can be missing check for null first (`$ != null and $ >= 3`) or default it
# (`($ ?? 0) >= 500`, right for positive thresholds): a missing fact compares false, as
# in the service.
ZEN_TABLES: dict[str, list[dict[str, str]]] = {
    "browse_abandonment": [
        {
            "rule": "product_viewed_often",
            "event": '"Product Viewed"',
            "product_id": "$ != null",
            "consent_marketing": "true",
            "views_24h": "$ != null and $ >= 3",
            "not_bought_2h": "true",
        }
    ],
    "cart_abandonment": [
        {
            "rule": "cart_abandoned",
            "event": '"Product Added"',
            "cart_id": "$ != null",
            "consent_marketing": "true",
            "no_checkout_24h": "true",
        }
    ],
    "first_purchase": [
        {
            "rule": "first_purchase_welcome",
            "event": '"Order Completed"',
            "orders_count": "1",
        }
    ],
    "high_value_homepage": [
        {
            "rule": "premium_homepage",
            "event": '"Page Viewed"',
            "path": '"/"',
            "total_spent": "($ ?? 0) >= 500 or (rfm_monetary ?? 0) >= 5",
        }
    ],
    "win_back": [
        {
            "rule": "win_back_90_days",
            "event": '"Order Completed"',
            "consent_marketing": "true",
            "no_order_90d": "true",
        }
    ],
}
NOT_STOREFRONT_EVENTS = frozenset({"placements", "segment_entries"})

ALL_RULES = "all_rules"  # the zen decision holding every row in one table


def jdm(rows: list[dict[str, str]]) -> dict[str, Any]:
    """A JDM decision graph: request → one decision table that collects the `rule` of
    every matching row → response."""
    columns = list(dict.fromkeys(key for row in rows for key in row if key != "rule"))
    table = {
        "hitPolicy": "collect",
        "inputs": [{"id": c, "name": c, "type": "expression", "field": c} for c in columns],
        "outputs": [{"id": "rule", "name": "rule", "type": "expression", "field": "rule"}],
        "rules": [
            {
                "_id": row["rule"],
                **{c: row.get(c, "") for c in columns},
                "rule": json.dumps(row["rule"]),
            }
            for row in rows
        ],
    }
    return {
        "contentType": "application/vnd.gorules.decision",
        "nodes": [
            {"id": "request", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
            {
                "id": "rules",
                "type": "decisionTableNode",
                "name": "Rules",
                "position": {"x": 250, "y": 0},
                "content": table,
            },
            {
                "id": "response",
                "type": "outputNode",
                "name": "Response",
                "position": {"x": 500, "y": 0},
            },
        ],
        "edges": [
            {"id": "in", "type": "edge", "sourceId": "request", "targetId": "rules"},
            {"id": "out", "type": "edge", "sourceId": "rules", "targetId": "response"},
        ],
    }


# --- events, profiles and their history ----------------------------------------------------


@dataclass
class Message:
    """One event to evaluate, with everything each measure needs made beforehand."""

    event: TriggerEvent
    trigger: str
    profile: Profile
    answers: dict[Any, Any]  # what the store answers for this event
    tree: dict[str, Any]  # the facts, as rules see them
    matches: list[tuple[CompiledRuleset, dict[str, Any]]]  # rulesets concerned, history
    # Per file of bench/rules_facts.py: `matches` and that file if the trigger concerns it.
    plus: dict[str, list[tuple[CompiledRuleset, dict[str, Any]]]]
    raw: list[tuple[str, dict[str, Any]]]  # durable ruleset, projected fact
    flat: dict[str, Any]  # zen's context
    zen_keys: list[str]  # zen decisions of the rule files concerned


class AnswerStore:
    """The evaluator's Store, answering from the current message's precomputed values."""

    def __init__(self) -> None:
        self.answers: dict[Any, Any] = {}

    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int:
        return int(self.answers[event])

    def first_of(
        self,
        *,
        customer: uuid.UUID,
        events: list[str],
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
        exclude: int,
    ) -> tuple[str, datetime] | None:
        found: tuple[str, datetime] | None = self.answers[tuple(events)]
        return found

    def group_acted(
        self, *, customer: uuid.UUID, group: str, since: datetime, exclude: int | None
    ) -> datetime | None:
        acted: datetime | None = self.answers.get(group)
        return acted


def make_profiles(rng: random.Random, n: int) -> list[Profile]:
    """Profiles of every kind. The marketers' facts are drawn from a generator of their
    own, so the other facts, and the events, are the same as without them."""
    extra = random.Random(SEED + 1)
    profiles = []
    for _ in range(n):
        orders = rng.choices([0, 1, 2, 4, 12], weights=[30, 20, 20, 20, 10])[0]
        cents = [rng.randrange(1500, 30000) for _ in range(orders)]
        spent = Decimal(sum(cents)) / 100
        # Days since each order: most recent, some years ago.
        ages = [min(900, int(extra.expovariate(1 / 120))) for _ in range(orders)]
        scored = orders and rng.random() < 0.7
        consent = rng.choices([{"marketing": True}, {"marketing": False}, {}], [55, 15, 30])[0]
        profiles.append(
            Profile(
                customer_id=uuid.uuid4(),
                orders_count=orders,
                total_spent=spent,
                first_order_at=NOW - timedelta(days=rng.randrange(30, 900)) if orders else None,
                last_order_at=NOW - timedelta(days=rng.randrange(0, 30)) if orders else None,
                last_seen_at=NOW - timedelta(minutes=rng.randrange(1, 600)),
                orders_in=tuple(sum(1 for a in ages if a <= d) for d in WINDOW_DAYS),
                spent_in=tuple(
                    float(Decimal(sum(c for c, a in zip(cents, ages, strict=True) if a <= d)) / 100)
                    for d in WINDOW_DAYS
                ),
                discount_orders=sum(1 for _ in range(orders) if extra.random() < 0.5),
                categories_viewed=tuple(sorted(extra.sample(CATEGORIES, extra.randrange(4)))),
                categories_bought=tuple(
                    sorted(extra.sample(CATEGORIES, min(orders, extra.randrange(3))))
                ),
                rfm=(
                    (rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 5))
                    if scored
                    else (None, None, None)
                ),
                traits={"first_name": rng.choice(["Ada", "Sam", "Noor"])}
                if rng.random() < 0.7
                else {},
                segments=("customers",) if orders else (),
                consent=consent,
            )
        )
    return profiles


def make_event(rng: random.Random, i: int, profile: Profile) -> tuple[TriggerEvent, dict[Any, Any]]:
    """A storefront event, and what the store answers for it: views of the same product
    in the last day, whether a checkout or an order followed, whether a rule group
    acted within its cooldown."""
    occurred = NOW - timedelta(seconds=rng.randrange(1, 120))
    later = occurred + (NOW - occurred) / 2
    product = f"p{rng.randrange(500)}"
    kind = rng.random()
    type_, name = "track", None
    if kind < 0.45:
        name = "Product Viewed"
        properties: dict[str, Any] = {"name": "Desk lamp", "price": "39.00"}
        if rng.random() < 0.95:
            properties["product_id"] = product
    elif kind < 0.75:
        type_ = "page"
        path = "/" if rng.random() < 0.4 else rng.choice(["/collections/all", "/cart", "/faq"])
        properties = {"path": path, "title": "Shop", "url": f"https://shop.example{path}"}
    elif kind < 0.90:
        name = "Product Added"
        properties = {"product_id": product, "name": "Desk lamp", "quantity": 1}
        if rng.random() < 0.95:
            properties["cart_id"] = f"c{rng.randrange(10_000)}"
    else:
        name = "Order Completed"
        properties = {
            "order_id": f"o{i}",
            "total": "42.50",
            "currency": "USD",
            "products": [{"product_id": product}],
        }
    answers: dict[Any, Any] = {
        "Product Viewed": rng.choice([1, 1, 2, 2, 3, 4, 6]),
        ("Checkout Started", "Order Completed"): (
            None if rng.random() < 0.7 else ("Checkout Started", later)
        ),
        ("Order Completed",): None if rng.random() < 0.75 else ("Order Completed", later),
    }
    for group in ("cart_recovery", "browse_recovery", "win_back"):
        if rng.random() < 0.1:
            answers[group] = NOW - timedelta(days=1)
    event = TriggerEvent(
        id=i,
        customer_id=profile.customer_id or uuid.uuid4(),
        source="bench",
        type=type_,
        name=name,
        occurred_at=occurred,
        properties=properties,
        context={"locale": "en-US", "page": {"path": properties.get("path", "/products")}},
    )
    return event, answers


def make_messages(
    rulesets: list[CompiledRuleset],
    extra: dict[str, CompiledRuleset],
    raw_names: dict[str, str],
    store: AnswerStore,
) -> list[Message]:
    rng = random.Random(SEED)
    profiles = make_profiles(rng, max(1, MESSAGES // 4))
    messages = []
    for i in range(MESSAGES):
        profile = rng.choice(profiles)
        event, answers = make_event(rng, i, profile)
        trigger = event.trigger_name
        assert trigger is not None
        tree = evaluator.fact_tree(event, profile, now=NOW, consent_defaults=CONSENT_DEFAULTS)
        store.answers = answers
        matches = []
        flat = {f: v for path, f in FLAT_FACTS.items() if (v := lookup(tree, path)) is not None}
        for ruleset in rulesets:
            candidates = ruleset.by_trigger.get(trigger, ())
            if not candidates:
                continue
            history, _ = evaluator._windows(candidates, event, store, now=NOW)
            matches.append((ruleset, history))
            for rule in candidates:
                for window in rule.windows:
                    kind = "count" if isinstance(window.spec, CountSpec) else "absent"
                    field = FLAT_WINDOWS[(ruleset.name, kind, window.spec.within)]
                    flat[field] = history[window.key]
        raw = []
        for ruleset, history in matches:
            fact = project(ruleset.keys, tree)
            fact.update(history)
            fact[TRIGGER_KEY] = trigger
            fact["sid"] = "0"
            raw.append((raw_names[ruleset.engine_name], fact))
        messages.append(
            Message(
                event=event,
                trigger=trigger,
                profile=profile,
                answers=answers,
                tree=tree,
                matches=matches,
                plus={
                    name: matches + ([(file, {})] if file.by_trigger.get(trigger) else [])
                    for name, file in extra.items()
                },
                raw=raw,
                flat=flat,
                zen_keys=[r.name for r, _ in matches],
            )
        )
    return messages


def check_coverage(rulesets: list[CompiledRuleset]) -> None:
    """The zen tables must say what the rule files say: same files, rules, facts, windows."""
    problems = []
    if sorted(ZEN_TABLES) != sorted(r.name for r in rulesets):
        problems.append(f"zen tables {sorted(ZEN_TABLES)}, rule files {[r.name for r in rulesets]}")
    for ruleset in rulesets:
        rows = {row["rule"] for row in ZEN_TABLES.get(ruleset.name, [])}
        if rows != set(ruleset.rules):
            problems.append(f"{ruleset.name}: zen rows {sorted(rows)}, rules {list(ruleset.rules)}")
        problems += [
            f"{ruleset.name}: no zen field for {p}" for p in ruleset.keys if p not in FLAT_FACTS
        ]
        for rule in ruleset.rules.values():
            for w in rule.windows:
                kind = "count" if isinstance(w.spec, CountSpec) else "absent"
                if (ruleset.name, kind, w.spec.within) not in FLAT_WINDOWS:
                    problems.append(
                        f"{rule.rule.id}: no zen field for {kind} within {w.spec.within}"
                    )
    if problems:
        raise SystemExit("the zen tables no longer mirror rules/:\n" + "\n".join(problems))


# --- the raw durable-rules baseline -----------------------------------------------------------


class RawHost(_Host):
    """The service's own Host (no dispatch threads), used through durable-rules' Python
    API: each action runs as a Python callback that records its rule."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[str] = []

    def get_action(self, action_name: str) -> Any:
        def fired(_context: Any) -> None:
            self.fired.append(action_name)

        return fired


def raw_host(rulesets: list[CompiledRuleset]) -> tuple[RawHost, dict[str, str]]:
    """The compiled rulesets, as the service compiles them, in a Host of their own."""
    host = RawHost()
    names = {}
    for ruleset in rulesets:
        compiler = _Compiler()
        definition = {
            rule.id: compiler.rule(rule)[0]
            for rule in ruleset.loaded.definition.rules
            if rule.enabled
        }
        assert compiler.keys == ruleset.keys, ruleset.name
        names[ruleset.engine_name] = f"raw_{ruleset.name}"
        host.register_rulesets({names[ruleset.engine_name]: definition})
    return host, names


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    name: str
    rate: float
    p50_us: float
    p99_us: float


def measure(ways: dict[str, Callable[[Message], Any]], messages: list[Message]) -> list[Figures]:
    """Each way: WARMUP evaluations, then EVALS timed one by one, in ROUNDS turns taken
    in order, so that a slow spell of the machine falls on every way alike."""
    n = len(messages)
    for run in ways.values():
        for i in range(WARMUP):
            run(messages[i % n])
    took: dict[str, list[int]] = {name: [] for name in ways}
    elapsed = dict.fromkeys(ways, 0)
    clock = time.perf_counter_ns
    for turn in range(ROUNDS):
        start, stop = EVALS * turn // ROUNDS, EVALS * (turn + 1) // ROUNDS
        for name, run in ways.items():
            gc.collect()
            times = took[name]
            began = clock()
            for i in range(start, stop):
                message = messages[i % n]
                t0 = clock()
                run(message)
                times.append(clock() - t0)
            elapsed[name] += clock() - began
    figures = []
    for name, times in took.items():
        times.sort()
        figures.append(
            Figures(
                name,
                len(times) / elapsed[name] * 1e9,
                times[len(times) // 2] / 1000,
                times[len(times) * 99 // 100] / 1000,
            )
        )
    return figures


def pin() -> int | None:
    """Keep this process, and the threads it starts from now on, on one CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = int(os.environ.get("BENCH_CPU", min(os.sched_getaffinity(0))))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rules", description=__doc__)
    parser.add_argument("--reads", action="store_true", help="and the profile reads, on a database")
    args = parser.parse_args()
    cpu = pin()
    engine = Engine()
    loaded = load_directory(RULES)
    # Storefront events trigger these; placement rules are measured by bench.decisions and
    # rules on segment changes by bench.segments.
    left_out = [f.name for f in loaded if f.name in NOT_STOREFRONT_EVENTS]
    rulesets = [engine.compile(f) for f in loaded if f.name not in NOT_STOREFRONT_EVENTS]
    print(f"rule files measured: {[r.name for r in rulesets]}; not here: {left_out}")
    check_coverage(rulesets)
    host, raw_names = raw_host(rulesets)
    store = AnswerStore()
    extra = {
        name: engine.compile(load_source(f"{name}.yaml", text)) for name, text in FILES.items()
    }
    messages = make_messages(rulesets, extra, raw_names, store)

    tables = {name: jdm(rows) for name, rows in ZEN_TABLES.items()}
    tables[ALL_RULES] = jdm([row for rows in ZEN_TABLES.values() for row in rows])
    zen_engine = zen.ZenEngine({"loader": {"type": "static", "content": tables}})
    zen_decision = zen_engine.create_decision(json.dumps(tables[ALL_RULES]))
    ids = itertools.count()

    def match(m: Message) -> list[str]:
        fired: list[str] = []
        for ruleset, history in m.matches:
            fired += engine.match(ruleset, trigger=m.trigger, facts=m.tree, history=history)
        return fired

    def evaluate(m: Message, *, files: list[CompiledRuleset] = rulesets) -> list[evaluator.Outcome]:
        store.answers = m.answers
        return evaluator.evaluate(
            engine=engine,
            rulesets=files,
            event=m.event,
            profile=m.profile,
            store=store,
            now=NOW,
            consent_defaults=CONSENT_DEFAULTS,
        )

    def match_plus(name: str) -> Callable[[Message], list[str]]:
        def run(m: Message) -> list[str]:
            fired: list[str] = []
            for ruleset, history in m.plus[name]:
                fired += engine.match(ruleset, trigger=m.trigger, facts=m.tree, history=history)
            return fired

        return run

    def evaluate_plus(name: str) -> Callable[[Message], list[evaluator.Outcome]]:
        files = [*rulesets, extra[name]]
        return lambda m: evaluate(m, files=files)

    def raw(m: Message) -> list[str]:
        fired = host.fired = []
        for name, fact in m.raw:
            fact["id"] = next(ids)
            try:
                host.assert_fact(name, fact)
            except durable.MessageNotHandledException:
                continue
            host.retract_fact(name, fact)
        return fired

    def zen_all(m: Message) -> list[str]:
        return [row["rule"] for row in zen_engine.evaluate(ALL_RULES, m.flat)["result"]]

    def zen_per_file(m: Message) -> list[str]:
        return [
            row["rule"] for key in m.zen_keys for row in zen_engine.evaluate(key, m.flat)["result"]
        ]

    def zen_decision_evaluate(m: Message) -> list[str]:
        return [row["rule"] for row in zen_decision.evaluate(m.flat)["result"]]

    # Every way must fire the same set of rules as Engine.match, for every distinct event.
    ways: dict[str, Callable[[Message], list[str]]] = {
        "evaluator.evaluate": lambda m: [o.rule.rule.id for o in evaluate(m)],
        "durable-rules raw": raw,
        "zen, one table": zen_all,
        "zen, a table per file": zen_per_file,
        "zen, ZenDecision": zen_decision_evaluate,
    }
    agree: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    repeated: Counter[str] = Counter()  # rules Engine.match gave more than once for an event
    statuses: Counter[str] = Counter()
    disagreements = []
    for m in messages:
        matched = match(m)
        expected = set(matched)
        fired.update(expected or ["(none)"])
        repeated.update(r for r in expected if matched.count(r) > 1)
        statuses.update(o.status for o in evaluate(m))
        for way, run in ways.items():
            got = run(m)
            if set(got) == expected:
                agree[way] += 1
            else:
                disagreements.append(
                    f"{way} fired {sorted(got)}, Engine.match {sorted(matched)}: {m.flat}"
                )

    triggers = Counter(m.trigger for m in messages)
    homepage = sum(1 for m in messages if m.flat.get("path") == "/")
    print(
        f"\nrule evaluation on one core (CPU {cpu}, of {os.cpu_count()}), "
        f"{len(rulesets)} rule files, {EVALS:,} evaluations per measure "
        f"after {WARMUP:,} of warm-up, over {MESSAGES:,} distinct events"
    )
    print(
        "events: "
        + ", ".join(f"{name} {count}" for name, count in triggers.most_common())
        + f" ({homepage} of the homepage)"
    )
    print("events firing each rule: " + ", ".join(f"{r} {c}" for r, c in sorted(fired.items())))
    if repeated:
        print(
            "Engine.match gave a rule twice (once per branch of its `any` that holds) for: "
            + ", ".join(f"{r} {c} events" for r, c in sorted(repeated.items()))
        )
    print("evaluator outcomes: " + ", ".join(f"{s} {c}" for s, c in sorted(statuses.items())))
    for way in ways:
        print(f"same rules as Engine.match: {way} {agree[way]:,}/{len(messages):,}", flush=True)
    if disagreements:
        raise SystemExit(
            f"{len(disagreements)} disagreements, for example:\n" + "\n".join(disagreements[:10])
        )
    for name in FILES:
        check_file(name, messages, match_plus(name), evaluate_plus(name))

    results = measure(
        {
            "durable-rules raw (assert + retract)": raw,
            "Engine.match": match,
            "evaluator.evaluate (history precomputed)": evaluate,
            "zen-engine, one table (ZenEngine.evaluate)": zen_all,
            "zen-engine, a table per file": zen_per_file,
            "zen-engine, one table (ZenDecision.evaluate)": zen_decision_evaluate,
            "Engine.match, and a file on older facts": match_plus(LIKE),
            "Engine.match, and the same on the new facts": match_plus(FACTS),
            "evaluator.evaluate, and a file on older facts": evaluate_plus(LIKE),
            "evaluator.evaluate, and the same on the new facts": evaluate_plus(FACTS),
            "Profile.facts, as before the new facts": lambda m: facts_before(
                m.profile, now=NOW, consent_defaults=CONSENT_DEFAULTS
            ),
            "Profile.facts, with the new facts": lambda m: m.profile.facts(
                now=NOW, consent_defaults=CONSENT_DEFAULTS
            ),
        },
        messages,
    )

    baseline = results[0].rate
    print(f"\n{'measure':<48}{'evals/s':>10}{'p50 µs':>9}{'p99 µs':>9}{'vs raw':>8}")
    for r in results:
        print(
            f"{r.name:<48}{r.rate:>10,.0f}{r.p50_us:>9.1f}{r.p99_us:>9.1f}{r.rate / baseline:>8.2f}"
        )
    full = results[2]
    verdict = "met" if full.rate >= TARGET else "NOT met"
    print(f"evaluator.evaluate: {full.rate:,.0f}/s on one core, target {TARGET:,}/s: {verdict}")
    like, facts = results[8], results[9]
    verdict = "met" if facts.rate >= TARGET else "NOT met"
    print(
        f"evaluator.evaluate with the rules on the new facts: {facts.rate:,.0f}/s, "
        f"{facts.rate / like.rate:.2f} of the same rules on older facts, "
        f"{facts.rate / full.rate:.2f} of the shipped files alone; target {TARGET:,}/s: {verdict}"
    )
    before, after = results[10], results[11]
    print(
        f"a profile's facts, which every evaluation builds: {after.p50_us:.1f} µs (median), "
        f"{before.p50_us:.1f} µs before the new facts"
    )
    if args.reads:
        from bench import facts_reads

        facts_reads.main()


if __name__ == "__main__":
    main()
