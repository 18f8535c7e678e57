"""Experiments: A/B and multivariate tests on placements and rule actions.

Pure computation, no table and no other package: deterministic bucketing of units into
variants (`bucketing.py`), per-variant aggregates (`aggregates.py`), and the statistics
read from them: conversion and revenue comparisons (`frequentist.py`), CUPED (`cuped.py`),
sample-ratio mismatch and multiple comparisons (`checks.py`), always-valid sequential tests
(`sequential.py`), the Bayesian probability to beat control (`bayesian.py`), sample size and
power (`power.py`), and a whole experiment read at once (`report.py`). docs/statistics.md
gives each formula and its references.
"""
