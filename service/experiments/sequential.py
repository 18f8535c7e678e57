"""Always-valid sequential test: the mixture sequential probability ratio test (mSPRT).

The estimate Δ (mean_t - mean_c) has standard error se (se² = var_c / n_c + var_t / n_t).
With the normal mixture N(0, τ²) over the effect under the alternative, the likelihood ratio
of "Δ is drawn from the mixture" against "Δ = 0" is (Johari, Koomen, Pekelis and Walsh,
"Always valid inference", 2017/2022):

    Λ = sqrt(se² / (se² + τ²)) · exp(τ² Δ² / (2 se² (se² + τ²)))

Under the null, Λ over time is a martingale, so by Ville's inequality it ever exceeds 1/alpha
with probability at most alpha, however often it is looked at. The always-valid p-value at a
look is min(1, 1/Λ), and over the looks its running minimum (`running_minimum`); the test
rejects once it falls under alpha. The always-valid interval is the set of Δ₀ not rejected:

    Δ ± sqrt(se² (se² + τ²) / τ² · (2 ln(1/alpha) + ln((se² + τ²) / se²)))

τ² follows GrowthBook's tuning: with N = n_c + n_t and s² = se² N the per-unit variance,
τ² = ρ² s² and ρ² = (-2 ln alpha + ln(1 - 2 ln alpha)) / N*, N* being the total sample size at which
the interval is tightest (default 5,000; Waudby-Smith et al. 2023, eq. 161). This is the
same formula as GrowthBook's sequential t-test, written with τ².
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from service.experiments.aggregates import Moments

TUNING_SAMPLE_SIZE = 5000


@dataclass(frozen=True)
class SequentialResult:
    """One look: Δ, its always-valid interval and p-value, and the mixing variance used."""

    estimate: float
    low: float
    high: float
    p_value: float
    mixing_variance: float


def mixing_variance(
    *, standard_error: float, n: int, alpha: float, tuning_sample_size: float
) -> float:
    """τ² = ρ² s² with ρ² tuned so the interval is tightest at `tuning_sample_size` units."""
    if not 0 < alpha < 1 or tuning_sample_size <= 0:
        raise ValueError("alpha in (0, 1) and a positive tuning sample size")
    log_alpha = math.log(alpha)
    rho_squared = (-2 * log_alpha + math.log(1 - 2 * log_alpha)) / tuning_sample_size
    return rho_squared * standard_error**2 * n


def sequential_test(
    *,
    control: Moments,
    treatment: Moments,
    alpha: float = 0.05,
    tuning_sample_size: float = TUNING_SAMPLE_SIZE,
    tau_squared: float | None = None,
) -> SequentialResult:
    """The mSPRT at one look; `tau_squared` overrides the tuned mixing variance."""
    estimate = treatment.mean - control.mean
    se2 = control.variance / control.n + treatment.variance / treatment.n
    if se2 <= 0:
        return SequentialResult(estimate, estimate, estimate, 1.0, 0.0)
    if tau_squared is not None and tau_squared <= 0:
        raise ValueError("the mixing variance must be positive")
    tau2 = tau_squared
    if tau2 is None:
        tau2 = mixing_variance(
            standard_error=math.sqrt(se2),
            n=control.n + treatment.n,
            alpha=alpha,
            tuning_sample_size=tuning_sample_size,
        )
    log_lambda = 0.5 * math.log(se2 / (se2 + tau2)) + tau2 * estimate**2 / (2 * se2 * (se2 + tau2))
    p_value = 1.0 if log_lambda <= 0 else math.exp(-log_lambda)
    half = math.sqrt(
        se2 * (se2 + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((se2 + tau2) / se2))
    )
    return SequentialResult(
        estimate=estimate,
        low=estimate - half,
        high=estimate + half,
        p_value=p_value,
        mixing_variance=tau2,
    )


def running_minimum(p_values: Iterable[float]) -> list[float]:
    """The always-valid p-value at each look: the lowest seen so far."""
    return list(itertools.accumulate(p_values, min))
