"""Is a difference of means real, and how large a one could these runs show? t intervals for
two groups (Welch's, unpaired; the paired t for twins that share a seed), the power of those t
tests, the seeds a planned difference needs, and the verdict's words.

Power comes from the noncentral t distribution, the t test's own, not from the normal
approximation: with a handful of seeds the normal one promises too much (it asks 16 seeds per
group for a difference of one standard deviation at 80% power and a two-sided 5% level; the t
test needs 17). Unequal spreads use Welch's degrees of freedom, itself an approximation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

POWER = 0.8
ALPHA = 0.05


@dataclass
class Summary:
    """One metric of one group at one point: n finite values, mean, sample std, min, max."""
    n: int
    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        v = np.array([x for x in values if math.isfinite(x)], dtype=float)
        if not len(v):
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        return cls(len(v), float(v.mean()), std, float(v.min()), float(v.max()))


def _welch_se_df(a: Summary, b: Summary) -> tuple[float, float]:
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1)) if se else math.inf
    return se, df


def welch_interval(a: Summary, b: Summary, level: float = 0.95) -> tuple[float, float, float]:
    """(difference b - a, low, high) of the means at ``level``, by Welch's t; NaN bounds when a
    group has fewer than 2 values. Two groups without any spread give a zero-width interval."""
    diff = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return diff, math.nan, math.nan
    se, df = _welch_se_df(a, b)
    if se == 0:
        return diff, diff, diff
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return diff, diff - half, diff + half


def paired_interval(differences: list[float], level: float = 0.95
                    ) -> tuple[float, float, float]:
    """(mean difference, low, high) at ``level`` by the paired t: one difference per pair of
    twins, [n]. What the twins share (initial weights, sample order) cancels in each
    difference; NaN bounds under 2 pairs."""
    d = Summary.of(differences)
    if d.n < 2:
        return d.mean, math.nan, math.nan
    se = d.std / math.sqrt(d.n)
    half = float(stats.t.ppf(0.5 + level / 2, d.n - 1)) * se if se else 0.0
    return d.mean, d.mean - half, d.mean + half


def t_test_power(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided t test at level ``alpha`` against a true difference ``effect``
    whose estimate has standard error ``se`` and ``df`` degrees of freedom."""
    if se == 0:
        return 1.0 if effect else alpha
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = abs(effect) / se
    # The far tail on the wrong side: below 1e-100 once the shift is large, where scipy's
    # noncentral t can return NaN for it.
    wrong_side = float(np.nan_to_num(stats.nct.cdf(-critical, df, shift)))
    return float(stats.nct.sf(critical, df, shift)) + wrong_side


def detectable_difference(se: float, df: float, power: float = POWER,
                          alpha: float = ALPHA) -> float:
    """The smallest true difference the t test finds with probability ``power``: for an
    estimate of standard error ``se`` on ``df`` degrees of freedom. Solved in standard errors
    (the answer scales with ``se``), up to 50 of them: t(0.975, 1) is 12.7."""
    if not math.isfinite(se) or not df or df < 1:
        return math.nan
    if se == 0:
        return 0.0
    shift = optimize.brentq(lambda k: t_test_power(k, 1.0, df, alpha) - power, 0.0, 50.0,
                            xtol=1e-10)
    return float(shift * se)


def welch_detectable(a: Summary, b: Summary, power: float = POWER, alpha: float = ALPHA
                     ) -> float:
    """:func:`detectable_difference` for Welch's comparison of two groups."""
    if a.n < 2 or b.n < 2:
        return math.nan
    return detectable_difference(*_welch_se_df(a, b), power, alpha)


def paired_detectable(differences: list[float], power: float = POWER, alpha: float = ALPHA
                      ) -> float:
    """:func:`detectable_difference` for the paired t over these twins' differences."""
    d = Summary.of(differences)
    if d.n < 2:
        return math.nan
    return detectable_difference(d.std / math.sqrt(d.n), d.n - 1, power, alpha)


def seeds_needed(effect: float, std: float, power: float = POWER, alpha: float = ALPHA,
                 limit: int = 100_000) -> tuple[int, int]:
    """Seeds per group to show a true difference ``effect`` between two groups that each
    spread with standard deviation ``std``: (by the two-sample t test's power, by the normal
    approximation 2 ((z_{1-alpha/2} + z_power) std / effect)^2). At least 2 each: one seed has
    no spread."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    normal = max(2, math.ceil(2 * (z * std / effect) ** 2))
    n = max(2, normal - 1)
    while n < limit and t_test_power(effect, std * math.sqrt(2 / n), 2 * n - 2, alpha) < power:
        n += 1
    return n, normal


def verdict_sentence(metric: str, diff: float, low: float, high: float,
                     higher_is_better: bool, noise: str) -> tuple[str, bool]:
    """The verdict's words on one metric (difference B - A with its interval) and whether the
    interval excludes 0. ``noise``: what the interval measures ("seed", "image")."""
    spread = {"seed": "the seed spread", "image": "the images' sampling noise"}[noise]
    if low > 0 or high < 0:
        better = "B" if (diff > 0) == higher_is_better else "A"
        word = "beats" if better == "B" else "is worse than"
        return (f"{metric}: B {word} A by {diff:+.4g}, 95% interval {low:+.4g} to {high:+.4g}: "
                f"larger than {spread}", True)
    return (f"{metric}: within {noise} noise: difference {diff:+.4g}, 95% interval {low:+.4g} "
            f"to {high:+.4g}", False)
