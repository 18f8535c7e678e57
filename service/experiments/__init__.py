"""Experiments: A/B and multivariate tests on placements and rule actions.

Declared in rule files (the format: service/language/experiments.py) and made ready to
assign units by `declared.py`, which decisions, rule evaluation and the in-file tests all
call. The statistics are pure computation on aggregates: bucketing (`bucketing.py`),
per-variant aggregates (`aggregates.py`), conversion and revenue comparisons
(`frequentist.py`), CUPED (`cuped.py`), sample-ratio mismatch and multiple comparisons
(`checks.py`), always-valid sequential tests (`sequential.py`), the probability to beat
control (`bayesian.py`), sample size and power (`power.py`), a whole experiment read at
once (`report.py`). The domain's table is `experiment_exposures` (`models.py`,
`repository.py`, written by `exposures.py` and the decision log); `results.py` reads it
with conversions and orders; `service.py`, `router.py` and `cli.py` show the results;
`stopping.py` ends an experiment by a change to its file. docs/experiments.md is the
marketers' page, docs/statistics.md gives each formula and its references.
"""
