"""Statistics over seeds and trials: what a benchmark may conclude from a handful of runs.

    python -m suite benchmark gan_fashion dcgan_fashion --seeds 8

Intervals of a mean are Student-t: at n = 3-10 seeds a percentile bootstrap covers the mean in
only 77-88 % of cases (issue 16; tests/test_seeds.py measures both). Two specs are compared
paired by seed — the same seed gives both the same data order — by a paired t-test (power at
small n; assumes roughly normal differences) or the exact sign-flip permutation test (assumes
only symmetry; its smallest two-sided p-value is 2 / 2^n), Holm-corrected over the benchmark's
pairs. `min_detectable` is the difference the test actually run would find with 80 % power.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import optimize, stats

LEVEL = 0.95  # of every interval
ALPHA = 0.05  # family-wise, over a benchmark's pairs (Holm)
POWER = 0.80  # of min_detectable
TESTS = {  # --test choices: the name the output carries
    "t": "paired t-test",
    "permutation": "exact sign-flip permutation test",
}
INTERVAL = "Student-t 95 % interval over seeds"


def t_interval(values, level: float = LEVEL) -> dict:
    """n, mean, std (ddof 1) and the Student-t interval of the mean; no interval below n = 2."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else None, "std": float(x.std(ddof=1)) if n > 1 else None,
           "ci_low": None, "ci_high": None}
    if n > 1 and out["std"] == 0:
        out["ci_low"] = out["ci_high"] = out["mean"]  # no spread at all (scipy's interval is NaN there)
    elif n > 1:
        low, high = stats.t.interval(level, n - 1, loc=out["mean"], scale=out["std"] / math.sqrt(n))
        out["ci_low"], out["ci_high"] = float(low), float(high)
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (scipy has only the BH / BY false-discovery versions)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def smallest_p(n: int, test: str) -> float:
    """The smallest two-sided p-value `test` can return with n pairs."""
    if test == "permutation":
        return 2.0 / 2**n if n else 1.0
    return 0.0 if n >= 2 else 1.0


def seeds_needed(pairs: int, test: str, alpha: float = ALPHA) -> int:
    """Fewest seeds with which `test`, Holm-corrected over `pairs`, can reject at all. The t-test
    is also held to 3 (at 2 seeds it has one degree of freedom and no estimate of spread worth
    the name)."""
    if test == "t":
        return 3
    level = alpha / max(pairs, 1)  # Holm's first step
    return next(n for n in itertools.count(1) if smallest_p(n, test) <= level)


def _sign_flip_p(d: np.ndarray) -> np.ndarray:
    """Exact two-sided sign-flip p-values of the mean of each row of `d` (all 2^n sign patterns).
    By hand: scipy.stats.permutation_test gives the same p-values (tests/test_seeds.py) but takes
    3x as long in the power simulations behind min_detectable."""
    n = d.shape[-1]
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # 2^n x n
    observed = np.abs(d.mean(-1, keepdims=True))
    null = np.abs(d @ signs.T / n)
    return ((null >= observed - 1e-12 * (np.abs(observed) + 1)).sum(-1)) / len(signs)


def paired(a, b, test: str = "t", level: float = LEVEL) -> dict:
    """Mean of a - b paired by seed, its Student-t interval, and the test's two-sided p-value."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    out = {"n": n, "diff": float(d.mean()) if n else None, "ci_low": None, "ci_high": None, "p_value": None,
           "sd_diff": float(d.std(ddof=1)) if n > 1 else None}
    if n < 2:
        return out
    ci = t_interval(d, level)
    out["ci_low"], out["ci_high"] = ci["ci_low"], ci["ci_high"]
    if test == "permutation":
        out["p_value"] = float(_sign_flip_p(d[None])[0])
    elif np.all(d == d[0]):  # no spread: the t statistic is undefined (identical runs, or a constant gap)
        out["p_value"] = 1.0 if d[0] == 0 else 0.0
    else:
        out["p_value"] = float(stats.ttest_rel(a, b).pvalue)
    return out


def t_power(delta: float, n: int, sd: float, alpha: float) -> float:
    """Power of the two-sided paired t-test at level alpha for a true mean difference delta."""
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta * math.sqrt(n) / sd
    upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
    # far in the tails scipy's noncentral t returns NaN for what is 1 (upper) or 0 (lower)
    upper = (1.0 if nc > crit else 0.0) if math.isnan(upper) else upper
    return float(upper + (0.0 if math.isnan(lower) else lower))


def permutation_power(delta: float, n: int, sd: float, alpha: float, sims: int = 4000, seed: int = 0) -> float:
    """Power of the exact sign-flip test on normal differences N(delta, sd^2), by simulation
    (common random numbers across delta, so the curve is monotone and root-finding is stable)."""
    z = np.random.default_rng(seed).standard_normal((sims, n))
    return float((_sign_flip_p(delta + sd * z) <= alpha).mean())


def min_detectable(n: int, sd: float | None, alpha: float, test: str = "t", power: float = POWER) -> float | None:
    """The smallest true difference the test, run at level alpha with n seeds, detects with the
    given power when the per-seed differences spread like the observed sd. None: no test is
    possible (too few seeds); inf: the test can never reject at this alpha."""
    if sd is None or n < 2 or not math.isfinite(sd):
        return None
    if smallest_p(n, test) > alpha:
        return math.inf
    if sd == 0:
        return 0.0
    fn = t_power if test == "t" else permutation_power
    hi = sd
    while fn(hi, n, sd, alpha) < power:
        hi *= 2
        if hi > 1e6 * sd:
            return math.inf
    return float(optimize.brentq(lambda x: fn(x, n, sd, alpha) - power, 0.0, hi, xtol=1e-6 * sd))


def expected_best(values, k: int, maximize: bool) -> float:
    """Expected best of k trials drawn with replacement from `values` — the limit of the bootstrap
    over trials that Lucic et al. 2018 plot against budget (exact, from the order statistics)."""
    v = np.sort(np.asarray(values, dtype=float))
    if not maximize:
        v = -v[::-1]
    n = len(v)
    i = np.arange(1, n + 1)
    weights = (i / n) ** k - ((i - 1) / n) ** k
    best = float((weights * v).sum())
    return best if maximize else -best


def budget_curve(values, maximize: bool, boot: int = 1000, seed: int = 0) -> list[dict]:
    """For k = 1..len(values): the expected best of k trials and a 95 % band of the best of k
    (percentiles over bootstrap draws of k trials)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(1, len(v) + 1):
        draws = rng.choice(v, size=(boot, k), replace=True)
        best = draws.max(1) if maximize else draws.min(1)
        out.append({"k": k, "expected_best": expected_best(v, k, maximize),
                    "band_low": float(np.percentile(best, 2.5)), "band_high": float(np.percentile(best, 97.5))})
    return out


def in_words(c: dict) -> str:
    """One comparison of a benchmark (evaluation.leaderboard.comparisons) as a sentence."""
    head = f"{c['a']} vs {c['b']} on {c['metric']}: "
    if c["verdict"] == "too few seeds":
        return head + f"no verdict ({c['note']})"
    sequential = c.get("design") == "sequential"
    interval = "repeated 95 % CI" if sequential else "95 % CI"
    diff = (f"difference {c['diff']:+.4g}, {interval} [{c['ci_low']:.4g}, {c['ci_high']:.4g}], "
            f"p = {c['p_holm']:.3g} (Holm{', sequential' if sequential else ''})")
    at = f"; decided at {c['decided_at']} seeds" if sequential and c.get("decided_at") else ""
    if c["verdict"].startswith("equivalent"):
        return head + (f"{c['verdict']} (difference {c['diff']:+.4g}, {interval} [{c['ci_low']:.4g}, "
                       f"{c['ci_high']:.4g}], TOST p = {c['p_holm_equivalent']:.3g} (Holm){at})")
    if c["verdict"] == "no detectable difference":
        where = f" after {c['n']} seeds (the most allowed)" if sequential else ""
        if not c.get("min_detectable"):
            return head + f"no detectable difference{where} ({diff}): every seed gave the same difference"
        return head + (f"no detectable difference{where} ({diff}); differences of {c['min_detectable']:.3g} or more "
                       "would have been found with 80 % power")
    within = f", and within the margin {c['margin']:g}" if c.get("within_margin") else ""
    return head + f"{c['a'] if c['verdict'] == 'a better' else c['b']} is better ({diff}{at}{within})"


def preferred(rows: list[dict]) -> list[dict]:
    """Leaderboard rows at the best checkpoint, or at the last step for a metric measured only at
    the end of a run (KID, precision / recall, memorization): one row per spec and metric."""
    have_best = {(r["spec"], r["metric"]) for r in rows if r["at"] == "best"}
    return [r for r in rows if r["at"] == "best" or (r["spec"], r["metric"]) not in have_best]
