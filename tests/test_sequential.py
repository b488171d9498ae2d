"""Sequential verdicts (evaluation/sequential.py): the family-wise error holds across the looks
where the naive repeated t-test's does not, every per-look statistic equals scipy's / statsmodels'
own, equivalence is a verdict of its own, and a decided pair keeps its look's result.
Simulations only: the statistics are functions of per-seed values, no training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from evaluation import leaderboard, seeds, sequential

DESIGN = sequential.Design(max_seeds=11, sequential=True)  # looks at 3, 5, 7, 9, 11
SIMS = 2000
FID = "fid10k_points_ring8_train"  # a logged name: the metric table knows its direction


def bound(alpha: float, sims: int) -> float:
    """alpha plus 2.6 binomial standard errors (a 0.5 % one-sided false alarm of this test)."""
    return alpha + 2.6 * math.sqrt(alpha * (1 - alpha) / sims)


@pytest.mark.parametrize("n_specs,noise", [(2, "normal"), (4, "normal"), (2, "t3"), (4, "t3")])
def test_family_wise_error_holds_across_the_looks(n_specs, noise):
    r = sequential.simulate(n_specs, noise, 0.0, DESIGN, SIMS, seed=7)
    assert r["fwer"] <= bound(seeds.ALPHA, SIMS), r


def test_the_naive_repeated_t_test_does_not_hold_it():
    """The t-test rerun after every round, stopping at its first rejection: the error the design avoids."""
    r = sequential.simulate(2, "normal", 0.0, DESIGN, SIMS, seed=7, naive=True)
    assert r["fwer_low"] > seeds.ALPHA, r


def test_large_differences_stop_early_and_small_ones_later():
    big = sequential.simulate(2, "normal", 3.0, DESIGN, 500, seed=3)
    small = sequential.simulate(2, "normal", 1.0, DESIGN, 500, seed=3)
    assert big["power"] > 0.95 and big["mean_seeds"] < 5, big
    assert small["mean_seeds"] > big["mean_seeds"] + 2, (small, big)


def test_calibration_is_sharper_than_bonferroni_and_never_above_it():
    cal = sequential.calibration(3, 2)
    assert math.isclose(cal.weights.sum(), 1.0)
    for u in (1e-4, 1e-3, 0.01, 0.05, 0.2):
        assert cal.p(u) <= u and cal.p(u, one_sided=True) <= u
    assert cal.p(0.05) < 0.05 * 0.75  # the looks are correlated: the union bound is far from tight
    c = cal.boundary(0.05)
    assert abs(cal.p(c) - 0.05) < 0.003


def test_one_look_equals_scipys_t_test_interval_and_two_one_sided_tests():
    rng = np.random.default_rng(0)
    d = rng.normal(0.4, 1.0, 9)
    lk = sequential.look(d, margin=1.5, test="t", level=0.9)
    assert lk["p_value"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-10)
    low, high = stats.t.interval(0.9, 8, loc=d.mean(), scale=stats.sem(d))
    assert (lk["ci_low"], lk["ci_high"]) == pytest.approx((low, high), rel=1e-10)
    tost = max(stats.ttest_1samp(d, -1.5, alternative="greater").pvalue,
               stats.ttest_1samp(d, 1.5, alternative="less").pvalue)
    assert lk["p_equivalent"] == pytest.approx(tost, rel=1e-10)


def test_shaffer_holm_is_holm_with_one_hypothesis_per_pair_and_sharper_with_two():
    p = [0.001, 0.02, 0.04, 0.3, 0.011]
    holm = multipletests(p, method="holm")[1]
    assert sequential.shaffer_holm([(i, q) for i, q in enumerate(p)]) == pytest.approx(list(holm))
    # two hypotheses of one pair cannot both be true: the first step multiplies by the pairs (2), not 4
    two = sequential.shaffer_holm([("x", 0.02), ("x", 0.5), ("y", 0.03), ("y", 0.6)])
    assert two[0] == pytest.approx(0.04) and two[2] == pytest.approx(0.06)


def results_for(values: dict[str, list[float]]) -> dict:
    """Per spec, per seed, the cell values a benchmark collects (one metric, at the best checkpoint)."""
    return {spec: {s: {"best": {FID: v}, "last": {FID: v}} for s, v in enumerate(vals)}
            for spec, vals in values.items()}


def test_a_clear_pair_is_decided_at_the_first_look_and_keeps_that_looks_result():
    rng = np.random.default_rng(1)
    a = list(100 + rng.normal(0, 1, 11))
    b = list(140 + rng.normal(0, 1, 11))
    pairs = [("a", "b")]
    early = leaderboard.comparisons(pairs, results_for({"a": a[:3], "b": b[:3]}), {"a": FID, "b": FID}, [], "t",
                                    DESIGN, n_now=3)[0]
    assert early["verdict"] == "a better" and early["decided_at"] == 3 and early["design"] == "sequential"
    later = leaderboard.comparisons(pairs, results_for({"a": a, "b": b}), {"a": FID, "b": FID}, [], "t",
                                    DESIGN, n_now=11)[0]
    assert later == early  # replayed look by look: the same decision, at the same look, with its interval
    assert "decided at 3 seeds" in seeds.in_words(early) and "repeated 95 % CI" in seeds.in_words(early)


def test_equal_specs_are_declared_equivalent_within_a_margin_and_not_otherwise():
    rng = np.random.default_rng(2)
    common = rng.normal(100, 5, 11)  # shared seed effect: the two specs move together
    a, b = list(common + rng.normal(0, 0.3, 11)), list(common + rng.normal(0, 0.3, 11))
    res, prim = results_for({"a": a, "b": b}), {"a": FID, "b": FID}
    with_margin = leaderboard.comparisons([("a", "b")], res, prim, [], "t", DESIGN, {"": 1.0}, n_now=11)[0]
    assert with_margin["verdict"] == "equivalent within 1" and with_margin["decided_at"] is not None
    assert -1.0 < with_margin["ci_low"] < with_margin["ci_high"] < 1.0
    assert "equivalent within 1" in seeds.in_words(with_margin)
    plain = leaderboard.comparisons([("a", "b")], res, prim, [], "t", DESIGN, n_now=11)[0]
    assert plain["verdict"] == "no detectable difference" and plain["decided_at"] is None
    fixed = leaderboard.comparisons([("a", "b")], res, prim, [], "t", None, {"fid": 1.0})[0]  # TOST at fixed seeds
    assert fixed["verdict"] == "equivalent within 1" and fixed["design"] == "fixed seeds"


def test_repeated_intervals_cover_the_true_difference_at_every_look_at_once():
    rng = np.random.default_rng(5)
    cal = sequential.calibration(3, 2)
    c = cal.boundary(seeds.ALPHA)
    missed = 0
    for _ in range(1000):
        d = rng.normal(2.0, 1.0, 11)
        for j, n in enumerate(DESIGN.looks()):
            lk = sequential.look(d[:n], None, "t", 1 - c * cal.weight(j))
            if not lk["ci_low"] <= 2.0 <= lk["ci_high"]:
                missed += 1
                break
    assert missed / 1000 <= bound(seeds.ALPHA, 1000)
