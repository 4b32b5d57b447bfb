"""t intervals, power and seeds needed, against textbook values and synthetic groups whose
answer is known."""
import math

import numpy as np
import pytest
from scipy import stats

from utils.core.significance import (
    Summary,
    detectable_difference,
    paired_detectable,
    paired_interval,
    seeds_needed,
    t_test_power,
    welch_detectable,
    welch_interval,
)


def test_seeds_for_one_standard_deviation_at_80_percent_power():
    """Cohen's d = 1, 80% power, two-sided 5%: 16 per group by the normal formula
    2 (1.96 + 0.84)^2 = 15.7, 17 by the t test itself (G*Power: 17, power 0.807)."""
    assert seeds_needed(1.0, 1.0) == (17, 16)
    assert t_test_power(1.0, math.sqrt(2 / 17), 32) == pytest.approx(0.8070, abs=1e-4)
    assert t_test_power(1.0, math.sqrt(2 / 16), 30) < 0.8
    # d = 0.5: 63.8 -> 64 by the t test, 62.8 -> 63 by the normal formula
    assert seeds_needed(0.01, 0.02) == (64, 63)


def test_detectable_difference_is_the_z_sum_in_standard_errors_for_many_degrees():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 2.8016
    assert detectable_difference(1.0, 1e7) == pytest.approx(z, abs=1e-4)
    assert detectable_difference(0.01, 1e7) == pytest.approx(0.01 * z, abs=1e-6)
    # 4 degrees of freedom: wider (t(0.975, 4) + t(0.8, 4) = 3.72 approximates it), and
    # exactly at 80% power
    few = detectable_difference(1.0, 4)
    assert few > 3.7 and t_test_power(few, 1.0, 4) == pytest.approx(0.8, abs=1e-8)


def test_what_16_seeds_a_group_can_show():
    group = Summary(16, 0.0, 1.0, -2.0, 2.0)
    shown = welch_detectable(group, group)
    assert 1.0 < shown < 1.05  # 16 per group fall a little short of d = 1 at 80%
    assert t_test_power(shown, math.sqrt(2 / 16), 30) == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(welch_detectable(Summary.of([1.0]), group))


def _groups(rng, seeds, shared, noise, effect):
    """Group A and B under the same seeds: each seed moves both by the same ``shared`` draw
    (the initial weights, the sample order), each run adds its own ``noise``."""
    seed_effect = rng.normal(0, shared, seeds)
    a = 0.5 + seed_effect + rng.normal(0, noise, seeds)
    b = 0.5 + effect + seed_effect + rng.normal(0, noise, seeds)
    return a, b


def _widths_and_coverage(shared, trials=400, seeds=5, effect=0.01):
    rng = np.random.default_rng(0)
    widths, covered = [], {"paired": 0, "welch": 0}
    for _ in range(trials):
        a, b = _groups(rng, seeds, shared, 0.005, effect)
        _, pl, ph = paired_interval((b - a).tolist())
        _, wl, wh = welch_interval(Summary.of(a.tolist()), Summary.of(b.tolist()))
        widths.append((ph - pl) / (wh - wl))
        covered["paired"] += pl <= effect <= ph
        covered["welch"] += wl <= effect <= wh
    return np.array(widths), {k: v / trials for k, v in covered.items()}


def test_a_shared_seed_effect_makes_the_paired_interval_tighter():
    """Seed effect 0.02, run noise 0.005: pairing cancels the seed effect, so the paired
    interval is about a quarter as wide, and both hold the true difference about 95% of the
    time (Welch's more often: the shared effect makes its groups' means move together, which
    it does not know)."""
    ratio, covered = _widths_and_coverage(shared=0.02)
    assert np.median(ratio) < 0.4 and (ratio < 1).mean() > 0.95
    assert 0.92 <= covered["paired"] <= 0.98 and covered["welch"] >= 0.95


def test_without_a_shared_effect_pairing_only_costs_degrees_of_freedom():
    """No seed effect: the twins' differences carry both runs' noise, as Welch's does, but
    on n - 1 = 4 degrees of freedom instead of about 8: wider more often than not."""
    ratio, covered = _widths_and_coverage(shared=0.0)
    assert np.median(ratio) > 1.05
    assert 0.92 <= covered["paired"] <= 0.98 and 0.92 <= covered["welch"] <= 0.98


def test_paired_interval_and_power_by_hand():
    # differences 1, 2, 3: mean 2, std 1, se 1/sqrt(3), t(0.975, 2) = 4.3027
    mean, low, high = paired_interval([1.0, 2.0, 3.0])
    assert mean == 2 and low == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-4)
    assert high == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-4)
    assert paired_detectable([1.0, 2.0, 3.0]) == pytest.approx(
        detectable_difference(1 / math.sqrt(3), 2))
    assert math.isnan(paired_interval([1.0])[1])
