"""Reading an experiment's results, without the database where the numbers can be given:
the holdout's expected share, and the verdict in words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np

from service.experiments.aggregates import VariantTotals
from service.experiments.declared import HOLDOUT, declare
from service.experiments.report import analyze
from service.experiments.results import Outcomes, Unit, holdout_report
from service.experiments.service import verdict
from service.language.experiments import ExperimentSpec

AT = datetime(2026, 12, 1, tzinfo=UTC)


def spec(**fields: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "key": "hero",
            "target": {"placement": "homepage_hero"},
            "variants": [{"name": "control"}, {"name": "premium", "content": "premium"}],
            **fields,
        }
    )


def outcomes(counts: dict[str, int]) -> Outcomes:
    units = [
        Unit(str(uuid.uuid4()), None, name, AT, ()) for name, n in counts.items() for _ in range(n)
    ]
    zeros = np.zeros(len(units))
    return Outcomes(
        units=units,
        converted=np.arange(len(units)) % 10 == 0,
        revenue=zeros,
        pre_period=zeros,
        guardrails=[],
    )


def test_a_holdout_with_partial_coverage_expects_its_own_share_of_everyone() -> None:
    # 1,000 units: 100 held out first, then half of the other 900 covered (225 + 225).
    # Before, the holdout was compared at share : 1 - share and flagged a mismatch.
    declared = declare(spec(holdout={"share": 0.1}, coverage=0.5), ruleset="placements")
    found = holdout_report(outcomes({HOLDOUT: 100, "control": 225, "premium": 225}), declared)
    assert found is not None
    _, report = found
    assert report.sample_ratio.mismatch is False
    assert report.sample_ratio.p_value > 0.5
    skewed = holdout_report(outcomes({HOLDOUT: 40, "control": 225, "premium": 225}), declared)
    assert skewed is not None
    assert skewed[1].sample_ratio.mismatch is True


def test_the_verdict_waits_then_decides_and_says_a_guardrail_first() -> None:
    declared = declare(spec(), ruleset="placements")
    even = analyze(
        variants=[
            VariantTotals(name="control", units=1000, conversions=100),
            VariantTotals(name="premium", units=1000, conversions=104),
        ],
        weights=[0.5, 0.5],
    )
    assert verdict(even, needed=15_000, smallest=1000, item=declared).startswith("Keep running")
    assert "14000 more" in verdict(even, needed=15_000, smallest=1000, item=declared)
    assert verdict(even, needed=900, smallest=1000, item=declared).startswith("No difference")
    better = analyze(
        variants=[
            VariantTotals(name="control", units=20_000, conversions=2000),
            VariantTotals(name="premium", units=20_000, conversions=2400),
        ],
        weights=[0.5, 0.5],
    )
    said = verdict(better, needed=15_000, smallest=20_000, item=declared)
    assert said.startswith("premium converts better than control")
    guard = [
        {
            "event": "Order Refunded",
            "window": "7d",
            "treatments": [
                {"variant": "premium", "rate": 0.05, "control_rate": 0.02, "p_value": 0.001}
            ],
        }
    ]
    warned = verdict(better, needed=15_000, smallest=20_000, item=declared, guardrails=guard)
    assert warned.startswith("Guardrail Order Refunded rises in premium")
    assert verdict(None, needed=None, smallest=1, item=declared).startswith("Collecting")
