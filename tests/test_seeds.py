"""Statistics over seeds (evaluation/seeds.py): intervals that keep their coverage at 3-10 seeds,
paired tests at their nominal size, Holm and power as statsmodels computes them, budget curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evaluation import seeds


@pytest.mark.parametrize("n", [3, 5, 10])
def test_student_t_interval_covers_a_known_mean_at_small_seed_counts(n):
    rng = np.random.default_rng(n)
    hits = 0
    for _ in range(1000):
        ci = seeds.t_interval(rng.normal(3.0, 2.0, n))
        hits += ci["ci_low"] <= 3.0 <= ci["ci_high"]
    assert 0.93 <= hits / 1000 <= 0.97, hits


@pytest.mark.parametrize("n", [3, 5])
def test_percentile_bootstrap_undercovers_where_student_t_does_not(n):
    """Why the leaderboard's interval is Student-t: scipy's percentile bootstrap of a mean, same data."""
    rng = np.random.default_rng(10 + n)
    boot = t = 0
    for _ in range(300):
        x = rng.normal(0.0, 1.0, n)
        b = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=400, random_state=rng).confidence_interval
        boot += b.low <= 0.0 <= b.high
        ci = seeds.t_interval(x)
        t += ci["ci_low"] <= 0.0 <= ci["ci_high"]
    assert boot / 300 < 0.9 < t / 300


def test_interval_refuses_one_value_and_ignores_non_finite():
    one = seeds.t_interval([1.0])
    assert one["n"] == 1 and one["ci_low"] is None
    assert seeds.t_interval([1.0, float("nan"), 2.0, 3.0])["n"] == 3


@pytest.mark.parametrize("n", [3, 5, 10])
def test_paired_t_test_false_positive_rate_is_nominal(n):
    rng = np.random.default_rng(100 + n)
    a, b = rng.normal(size=(2500, n)), rng.normal(size=(2500, n))  # binomial sd of the rate: 0.44 %
    rejected = np.mean([seeds.paired(a[i], b[i])["p_value"] < 0.05 for i in range(2500)])
    assert abs(rejected - 0.05) <= 0.015, rejected


def test_permutation_test_size_where_it_can_reject_and_its_floor():
    rng = np.random.default_rng(7)
    n = 10  # attainable levels near 5 %: 2 / 2^10 steps
    a, b = rng.normal(size=(2000, n)), rng.normal(size=(2000, n))
    rejected = np.mean([seeds.paired(a[i], b[i], "permutation")["p_value"] < 0.05 for i in range(2000)])
    assert abs(rejected - 0.05) <= 0.015, rejected
    # the exact floor 2 / 2^n: n = 5 with every difference positive
    assert seeds.paired(np.arange(5.0) + 10, np.arange(5.0), "permutation")["p_value"] == pytest.approx(2 / 32)
    assert seeds.smallest_p(3, "permutation") == 0.25
    assert seeds.seeds_needed(1, "permutation") == 6 and seeds.seeds_needed(6, "permutation") == 8


def test_sign_flip_p_value_equals_scipy_permutation_test():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, 7)
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                 alternative="two-sided").pvalue
    assert seeds.paired(d, np.zeros(7), "permutation")["p_value"] == pytest.approx(ref)


def test_planted_difference_is_detected_with_enough_seeds():
    rng = np.random.default_rng(5)
    detected = 0
    for _ in range(200):
        base = rng.normal(0, 1, 8)  # a seed's luck, shared by both specs (paired)
        a, b = base + rng.normal(0, 0.3, 8) + 1.0, base + rng.normal(0, 0.3, 8)
        detected += seeds.paired(a, b)["p_value"] < 0.05 / 6
    assert detected / 200 > 0.9


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04]
    assert seeds.holm(p) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]))


@pytest.mark.parametrize("n,alpha", [(3, 0.05 / 6), (5, 0.05), (10, 0.05 / 3)])
def test_min_detectable_matches_statsmodels_power_of_the_paired_t_test(n, alpha):
    """statsmodels' power function at our min_detectable is 80 %. (Its solve_power is not the
    reference at n = 3: there it returned an effect of 6.85 sd, at which its own power is 69 %.)"""
    power = pytest.importorskip("statsmodels.stats.power")
    delta = seeds.min_detectable(n, 2.0, alpha, "t")
    assert power.TTestPower().power(delta / 2.0, n, alpha, alternative="two-sided") == pytest.approx(0.8, abs=1e-5)
    if n > 3:
        effect = power.TTestPower().solve_power(nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
        assert delta == pytest.approx(2.0 * effect, rel=1e-4)


def test_min_detectable_of_the_permutation_test_is_infinite_below_its_floor_and_has_its_power():
    assert seeds.min_detectable(5, 1.0, 0.05 / 6, "permutation") == math.inf
    delta = seeds.min_detectable(10, 1.0, 0.05, "permutation")
    rng = np.random.default_rng(99)  # fresh draws, not the ones the root was found on
    d = rng.normal(delta, 1.0, (3000, 10))
    assert abs((seeds._sign_flip_p(d) <= 0.05).mean() - 0.8) < 0.03


def test_expected_best_of_k_equals_brute_force_bootstrap():
    values = [0.3, 0.9, 0.1, 0.5, 0.7]
    rng = np.random.default_rng(0)
    draws = rng.choice(values, size=(200_000, 3))
    assert seeds.expected_best(values, 3, maximize=True) == pytest.approx(draws.max(1).mean(), abs=2e-3)
    assert seeds.expected_best(values, 3, maximize=False) == pytest.approx(draws.min(1).mean(), abs=2e-3)
    curve = seeds.budget_curve(values, maximize=False)
    assert [c["k"] for c in curve] == [1, 2, 3, 4, 5]
    assert curve[0]["expected_best"] == pytest.approx(np.mean(values))
    assert all(x["expected_best"] >= y["expected_best"] for x, y in zip(curve, curve[1:]))  # more trials: lower


def test_the_sign_flip_p_values_equal_scipys_permutation_test():
    rng = np.random.default_rng(5)
    for n in (3, 5, 8):
        d = rng.normal(0.3, 1.0, (20, n))
        d[0, 1] = d[0, 0]  # ties among the flips too
        scipy_p = stats.permutation_test((d,), lambda x, axis: x.mean(axis), permutation_type="samples",
                                         vectorized=True, n_resamples=np.inf, alternative="two-sided", axis=-1).pvalue
        assert np.allclose(seeds._sign_flip_p(d), scipy_p, rtol=1e-12, atol=1e-12)
