"""Sample size and power for a relative minimal detectable effect (two-sided, equal split).

Conversion with baseline rate p₁ and relative MDE m: p₂ = p₁ (1 + m), and the
standardized effect d = (p₂ - p₁) / sqrt((p₁(1 - p₁) + p₂(1 - p₂)) / 2), so that
statsmodels' `NormalIndPower` gives units per variant

    n = (z_{1-alpha/2} + z_{1-β})² (p₁(1 - p₁) + p₂(1 - p₂)) / (p₂ - p₁)²

(ignoring the negligible far tail). Revenue per unit with mean μ and standard deviation sd:
d = m μ / sd, n = 2 (z_{1-alpha/2} + z_{1-β})² sd² / (m μ)². CUPED shrinks sd² by (1 - ρ²).
"""

from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower


def conversion_effect_size(*, baseline_rate: float, relative_mde: float) -> float:
    """The standardized difference d for a relative lift of the baseline rate."""
    p1 = baseline_rate
    p2 = baseline_rate * (1 + relative_mde)
    if not (0 < p1 < 1 and 0 < p2 < 1):
        raise ValueError("baseline and lifted rates must be within (0, 1)")
    return (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)


def mean_effect_size(*, mean: float, std: float, relative_mde: float) -> float:
    """The standardized difference d for a relative lift of a mean."""
    if std <= 0:
        raise ValueError("the standard deviation must be positive")
    return relative_mde * mean / std


def units_per_variant(*, effect_size: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Units each variant needs to detect `effect_size` with `power` (rounded up)."""
    n = NormalIndPower().solve_power(
        effect_size=abs(effect_size), alpha=alpha, power=power, ratio=1.0
    )
    return math.ceil(float(n))


def power_at(*, effect_size: float, units: int, alpha: float = 0.05) -> float:
    """The probability of a significant result with `units` in each variant."""
    return float(NormalIndPower().power(effect_size=abs(effect_size), nobs1=units, alpha=alpha))


def conversion_units_per_variant(
    *, baseline_rate: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Units per variant to detect a relative lift of a conversion rate."""
    d = conversion_effect_size(baseline_rate=baseline_rate, relative_mde=relative_mde)
    return units_per_variant(effect_size=d, alpha=alpha, power=power)


def revenue_units_per_variant(
    *, mean: float, std: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Units per variant to detect a relative lift of revenue per unit."""
    d = mean_effect_size(mean=mean, std=std, relative_mde=relative_mde)
    return units_per_variant(effect_size=d, alpha=alpha, power=power)
