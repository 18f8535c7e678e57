"""Checks on a whole experiment: sample-ratio mismatch, and several variants at once.

Sample-ratio mismatch (SRM): the units each variant received against the weights it should
have received, by Pearson's chi-square goodness of fit (scipy `chisquare`). A p-value under
0.001 flags the experiment: assignment or logging is broken, and no comparison in it can be
trusted until the cause is found (Fabijan et al., 2019).

Several treatments against one control: Holm's step-down correction of their p-values
(as statsmodels `multipletests` computes it), which keeps the family-wise error rate at alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SampleRatio:
    """The goodness-of-fit statistic, its p-value, and whether it is a mismatch."""

    statistic: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(
    *, units: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SampleRatio:
    """Chi-square of the observed units against total x weight / sum of weights."""
    if len(units) != len(weights) or len(units) < 2:
        raise ValueError("one weight per variant, two variants at least")
    observed = np.asarray(units, dtype=float)
    share = np.asarray(weights, dtype=float) / float(np.sum(weights))
    result = stats.chisquare(observed, f_exp=observed.sum() * share)
    p = float(result.pvalue)
    return SampleRatio(statistic=float(result.statistic), p_value=p, mismatch=p < threshold)


@dataclass(frozen=True)
class Corrected:
    """Holm-adjusted p-values, in the order given, and which of them are rejected."""

    p_values: list[float]
    rejected: list[bool]


def holm(p_values: Sequence[float], *, alpha: float = 0.05) -> Corrected:
    """Holm's step-down adjustment of several p-values: sorted ascending, the i-th
    (from 0) times (m - i), the running maximum, capped at 1. The same numbers as
    statsmodels' `multipletests(method="holm")`, which also runs a full garbage
    collection on every call: a tenth of a second in a process holding much (an API
    worker, a read of tens of thousands of units), twice for each experiment shown."""
    if not p_values:
        return Corrected(p_values=[], rejected=[])
    raw = np.asarray(p_values, dtype=float)
    order = np.argsort(raw, kind="stable")
    stepped = np.maximum.accumulate(raw[order] * np.arange(len(raw), 0, -1))
    adjusted = np.empty_like(raw)
    adjusted[order] = np.minimum(stepped, 1.0)
    return Corrected(
        p_values=[float(p) for p in adjusted], rejected=[bool(p <= alpha) for p in adjusted]
    )
