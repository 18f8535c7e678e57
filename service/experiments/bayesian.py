"""The Bayesian probability that a treatment's conversion rate beats the control's.

Each rate has a Beta(a0 + conversions, b0 + units - conversions) posterior (a uniform prior,
a0 = b0 = 1, by default). With A the control and B the treatment, the probability that
p_B > p_A has a closed form (Miller, 2015; Cook, 2005), a sum over the treatment's
successes:

    P(p_B > p_A) = Σ_{i=0}^{a_B - 1} B(a_A + i, b_A + b_B) / ((b_B + i) B(1 + i, b_B) B(a_A, b_A))

computed in logs (scipy `betaln`). Past `EXACT_LIMIT` terms the normal approximation of the
two posteriors is used instead: Φ((m_B - m_A) / sqrt(v_B + v_A)), m and v the Beta means and
variances, which is then accurate to well under 0.001.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from service.experiments.aggregates import VariantTotals

EXACT_LIMIT = 1_000_000


def _posterior(v: VariantTotals, prior_alpha: float, prior_beta: float) -> tuple[float, float]:
    return prior_alpha + v.conversions, prior_beta + v.units - v.conversions


def _closed_form(a_a: float, b_a: float, a_b: float, b_b: float) -> float:
    i = np.arange(0, int(a_b))
    log_terms = (
        special.betaln(a_a + i, b_a + b_b)
        - np.log(b_b + i)
        - special.betaln(1 + i, b_b)
        - special.betaln(a_a, b_a)
    )
    return float(np.exp(special.logsumexp(log_terms)))


def _normal(a_a: float, b_a: float, a_b: float, b_b: float) -> float:
    mean_a, var_a = stats.beta.stats(a_a, b_a, moments="mv")
    mean_b, var_b = stats.beta.stats(a_b, b_b, moments="mv")
    return float(stats.norm.cdf((mean_b - mean_a) / np.sqrt(var_a + var_b)))


def probability_to_beat(
    *,
    control: VariantTotals,
    treatment: VariantTotals,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    exact_limit: int = EXACT_LIMIT,
) -> float:
    """P(p_treatment > p_control) under Beta posteriors."""
    a_a, b_a = _posterior(control, prior_alpha, prior_beta)
    a_b, b_b = _posterior(treatment, prior_alpha, prior_beta)
    if float(a_b).is_integer() and a_b <= exact_limit:
        return min(max(_closed_form(a_a, b_a, a_b, b_b), 0.0), 1.0)
    return _normal(a_a, b_a, a_b, b_b)
