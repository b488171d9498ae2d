"""Verdicts for less compute: seeds trained in rounds, every pair tested after each round and
stopped once decided, the family-wise error held at alpha despite the repeated looks; and
equivalence within a margin as a verdict of its own.

    python -m suite benchmark gan_ring8 "gan_ring8:lr_d=1e-3" --until-decided --max-seeds 11 --margin 0.05
    python -m evaluation.sequential --sims 2000      # the error / power table in the README

The method, named in every output as METHOD: a group-sequential paired t-test. Look j has n_j
seeds (n0, n0 + b, n0 + 2b, ...) and the two-sided t-test p-value p_j; a hypothesis's
sequential p-value after look k is F(min_{j<=k} p_j / w_j), with look weights w_j ~ 1/j over
every look up to HORIZON seeds and F the distribution of min_j p_j / w_j under the null over the
whole horizon. With normal per-seed differences the t statistics are pivotal (their null law has
no unknown sd), so F is exact up to its Monte Carlo error; F(u) <= u (Bonferroni over the looks)
bounds it whatever the data. The sequential p-value never rises and F covers every look to the
horizon, so a benchmark may stop anywhere and a rerun may raise --max-seeds without spending the
error twice. Across pairs: Holm per metric, with Shaffer's restriction when a margin is given
(a pair's "no difference" and "not equivalent" cannot both be true). Equivalence: two one-sided
t-tests against -M and +M at each look (TOST), made sequential with the one-sided F. Intervals
are repeated confidence intervals (Jennison & Turnbull): they hold at every look at once.
"""

from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from evaluation import seeds

METHOD = "group-sequential paired t-test (weighted min-p over looks, calibrated under normal differences)"
FIXED = "fixed seeds"
HORIZON = 100  # seeds: F covers every look up to here, so --max-seeds may grow to it
SIMS = 50_000  # Monte Carlo paths behind F (its error near u = 0.01 is ~ 5 %, relative)
CALIBRATION_SEED = 22
EQUIVALENT = "equivalent within {margin:g}"
DECIDED = ("a better", "b better")


@dataclass(frozen=True)
class Design:
    """The seeds a comparison may use: one look at `max_seeds` (fixed), or rounds of `batch` seeds
    from `min_seeds` to `max_seeds` (sequential)."""

    max_seeds: int
    sequential: bool = False
    min_seeds: int = 3
    batch: int = 2
    alpha: float = seeds.ALPHA

    def looks(self) -> list[int]:
        if not self.sequential:
            return [self.max_seeds]
        return list(range(self.min_seeds, self.max_seeds + 1, self.batch))

    def method(self, test: str) -> str:
        return METHOD if self.sequential else seeds.TESTS[test]

    def plan(self, pairs: int, margins: dict[str, float]) -> str:
        """The design in words, said before anything trains."""
        if not self.sequential:
            return ""
        looks = self.looks()
        eq = "; equivalence within " + ", ".join(f"{m:g} ({k or 'primary'})" for k, m in margins.items()) if margins \
            else ""
        return (f"sequential: rounds of {self.batch} seed{'s' * (self.batch != 1)} from {looks[0]} to {looks[-1]} (looks at "
                f"{', '.join(map(str, looks))}); after each round every open pair is tested and stops once decided"
                f"{eq}; {METHOD}; family-wise error {self.alpha:.0%} over {pairs} pair{'s' * (pairs != 1)} (Holm) "
                f"whatever round they stop at")


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    weights: np.ndarray  # w_j of every look up to the horizon (they sum to 1)
    two_sided: np.ndarray  # sorted null draws of min_j p_j / w_j
    one_sided: np.ndarray

    def weight(self, j: int) -> float:
        return float(self.weights[j])

    def p(self, u: float, one_sided: bool = False) -> float:
        """The sequential p-value of a hypothesis whose smallest weighted p-value is u."""
        q = self.one_sided if one_sided else self.two_sided
        estimate = max(np.searchsorted(q, u, side="right") / len(q), 1 / len(q))
        return float(min(1.0, u, estimate))  # F(u) <= u holds exactly (Bonferroni); the estimate is sharper

    def boundary(self, alpha: float, one_sided: bool = False) -> float:
        """c with F(c) = alpha: a look j rejects when p_j <= c * w_j."""
        q = self.one_sided if one_sided else self.two_sided
        return float(max(np.quantile(q, alpha), alpha))


def weights(n_looks: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n_looks + 1)
    return w / w.sum()


def _look_t(d: np.ndarray, looks: list[int]) -> np.ndarray:
    """t statistics of the mean of d[..., :n] for every n in looks (paths x looks)."""
    n = np.asarray(looks)
    s1 = np.cumsum(d, -1)[..., n - 1]
    s2 = np.cumsum(d * d, -1)[..., n - 1]
    mean = s1 / n
    var = np.maximum(s2 - n * mean * mean, 0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean / np.sqrt(var / n)


@functools.lru_cache(maxsize=8)
def calibration(min_seeds: int, batch: int) -> Calibration:
    """F for the looks min_seeds, min_seeds + batch, ... up to HORIZON, from SIMS normal null paths
    (seeded: every host and every rerun computes the same boundaries)."""
    looks = list(range(min_seeds, HORIZON + 1, batch))
    w = weights(len(looks))
    rng = np.random.default_rng(CALIBRATION_SEED)
    two, one = [], []
    for chunk in np.array_split(np.arange(SIMS), 10):  # ~40 MB at a time
        t = _look_t(rng.standard_normal((len(chunk), looks[-1])), looks)
        df = np.asarray(looks) - 1
        two.append((2 * stats.t.sf(np.abs(t), df) / w).min(-1))
        one.append((stats.t.sf(t, df) / w).min(-1))
    return Calibration(w, np.sort(np.concatenate(two)), np.sort(np.concatenate(one)))


# --------------------------------------------------------------------------- one look


def look(d: np.ndarray, margin: float | None, test: str, level: float) -> dict:
    """A look at the per-seed differences d: mean, sd, the two-sided p-value, the TOST p-value
    against +-margin, and the Student-t interval at `level` (no test below 2 seeds). The t
    distribution through scipy.special: the simulations call this ~10^5 times."""
    n = len(d)
    out = {"n": n, "diff": float(d.mean()) if n else None, "sd_diff": float(d.std(ddof=1)) if n > 1 else None,
           "p_value": None, "p_equivalent": None, "ci_low": None, "ci_high": None}
    if n < 2:
        return out
    mean, sd, df = out["diff"], out["sd_diff"], n - 1
    if sd == 0:  # no spread: the interval is the point, the tests are decided by where it lies
        out["ci_low"] = out["ci_high"] = mean
        out["p_value"] = 1.0 if mean == 0 else 0.0
        if margin is not None:
            out["p_equivalent"] = 0.0 if abs(mean) < margin else 1.0
        return out
    se = sd / math.sqrt(n)
    if test == "t":
        out["p_value"] = float(2 * special.stdtr(df, -abs(mean) / se))
    else:
        out["p_value"] = seeds.paired(d, np.zeros(n), test)["p_value"]
    half = float(special.stdtrit(df, 1 - (1 - level) / 2)) * se
    out["ci_low"], out["ci_high"] = mean - half, mean + half
    if margin is not None:
        out["p_equivalent"] = float(max(special.stdtr(df, -(mean + margin) / se), special.stdtr(df, (mean - margin) / se)))
    return out


# --------------------------------------------------------------------------- across pairs


def shaffer_holm(hypotheses: list[tuple[object, float]]) -> list[float]:
    """Adjusted p-values of (group, p) hypotheses: Holm's step-down, where at each step the
    multiplier is the number of groups still holding an unrejected hypothesis (at most one
    hypothesis of a group can be true: Shaffer 1986). One hypothesis per group: Holm itself."""
    order = sorted(range(len(hypotheses)), key=lambda i: hypotheses[i][1])
    adjusted = [1.0] * len(hypotheses)
    running = 0.0
    for rank, i in enumerate(order):
        left = {hypotheses[k][0] for k in order[rank:]}
        running = max(running, min(1.0, len(left) * hypotheses[i][1]))
        adjusted[i] = running
    return adjusted


def verdicts(hypotheses: list[dict], design: Design, test: str = "t", n_now: int | None = None) -> list[dict]:
    """Each hypothesis {"pair", "family", "diffs" (per seed, in seed order), "margin" (or None),
    "smaller_better"} judged under `design` with the looks up to n_now seeds: replayed look by
    look, a hypothesis decided at a look keeps that look's result. Holm (Shaffer) per family."""
    looks = [n for n in design.looks() if n_now is None or n <= n_now]
    if not design.sequential:
        looks = [max(len(h["diffs"]) for h in hypotheses)] if hypotheses else []
    cal = calibration(design.min_seeds, design.batch) if design.sequential else None
    state = [{"open": True, "u": math.inf, "u_eq": math.inf, "at": None, "kinds": set()} for _ in hypotheses]
    for j, n in enumerate(looks):
        level = 1 - (cal.boundary(design.alpha) * cal.weight(j) if cal else design.alpha)
        for h, s in zip(hypotheses, state):
            if not s["open"]:
                continue
            s["look"] = look(np.asarray(h["diffs"][:n], dtype=float), h["margin"], test, level)
            s["look"]["index"] = j
            w = cal.weight(j) if cal else 1.0
            if s["look"]["p_value"] is not None:
                s["u"] = min(s["u"], s["look"]["p_value"] / w)
            if s["look"]["p_equivalent"] is not None:
                s["u_eq"] = min(s["u_eq"], s["look"]["p_equivalent"] / w)
        _decide(hypotheses, state, cal, design, n, final=j == len(looks) - 1)
    return [_row(h, s, design, test) for h, s in zip(hypotheses, state)]


def _decide(hypotheses, state, cal, design: Design, n: int, final: bool) -> None:
    """Holm / Shaffer per family on the current sequential p-values; newly decided ones close."""
    for family in {h["family"] for h in hypotheses}:
        idx = [i for i, h in enumerate(hypotheses) if h["family"] == family]
        tests = []  # (index, kind, sequential p)
        for i in idx:
            s = state[i]
            if math.isfinite(s["u"]):
                s["p_seq"] = cal.p(s["u"]) if cal else s["u"]
                tests.append((i, "difference", s["p_seq"]))
            if math.isfinite(s["u_eq"]):
                s["p_seq_eq"] = cal.p(s["u_eq"], one_sided=True) if cal else s["u_eq"]
                tests.append((i, "equivalence", s["p_seq_eq"]))
        adjusted = shaffer_holm([(i, p) for i, _, p in tests])
        for (i, kind, _), p in zip(tests, adjusted):
            s = state[i]
            s["p_holm" if kind == "difference" else "p_holm_eq"] = p
            s["pairs"] = len(idx)
            if s["open"] and p < design.alpha:
                s["kinds"].add(kind)
        for i in idx:
            if state[i]["open"] and state[i]["kinds"]:
                state[i]["open"], state[i]["at"] = False, n
        if final:
            for i in idx:
                state[i]["open"] = False


def _row(h: dict, s: dict, design: Design, test: str) -> dict:
    lk = s.get("look", look(np.asarray([], dtype=float), None, test, 1 - design.alpha))
    row = {**{k: lk[k] for k in ("n", "diff", "ci_low", "ci_high", "p_value", "sd_diff")},
           "p_holm": s.get("p_holm", 1.0), "pairs": s.get("pairs", 1), "decided_at": s["at"],
           "p_sequential": s.get("p_seq") if design.sequential else None, "margin": h["margin"],
           "p_equivalent": s.get("p_seq_eq"), "p_holm_equivalent": s.get("p_holm_eq"), "look": lk.get("index")}
    row["within_margin"] = "equivalence" in s["kinds"]  # both can hold: a real difference smaller than the margin
    if "difference" in s["kinds"]:
        better = (lk["diff"] < 0) == h["smaller_better"]
        row["verdict"] = "a better" if better else "b better"
    elif "equivalence" in s["kinds"]:
        row["verdict"] = EQUIVALENT.format(margin=h["margin"])
    else:
        row["verdict"] = "no detectable difference"
    return row


# --------------------------------------------------------------------------- simulation


NOISE = {  # per-seed noise of a spec's value, mean 0, sd 1 (skewness 0, 0 (4th moment infinite), 2, 6.2)
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t3": lambda rng, shape: rng.standard_t(3, shape) / math.sqrt(3.0),
    "skewed (exponential)": lambda rng, shape: rng.exponential(1.0, shape) - 1.0,
    "skewed (lognormal)": lambda rng, shape: (rng.lognormal(0.0, 1.0, shape) - math.exp(0.5))
    / math.sqrt((math.e - 1) * math.e),
}
NULL_SCALES = (1.0, 0.2, 0.5, 0.1)  # unequal spec noise under the null, so that pair differences keep the skew
LAYOUTS = {  # spec k's mean in sd of a pair difference (smaller is better)
    "null": lambda k, effect: 0.0,
    "ladder": lambda k, effect: k * effect,  # every pair differs by >= effect
    "one better": lambda k, effect: 0.0 if k else -effect,  # one spec better, the others equal
}


def simulate(n_specs: int, noise: str, effect: float, design: Design, sims: int, seed: int = 0,
             naive: bool = False, layout: str = "ladder") -> dict:
    """`sims` benchmarks of n_specs specs (all pairs, one metric) judged by `verdicts`. Under the
    null the specs' noise has unequal scales (NULL_SCALES); otherwise equal, and spec k's mean is
    LAYOUTS[layout](k, effect) sd of the pair differences. Returns the family-wise error (a pair of
    equal means declared different), the power over the pairs that differ, and the mean seeds each
    spec trained. naive: the fixed-seeds test rerun after every round, stopping when it rejects."""
    rng = np.random.default_rng([seed, n_specs, int(effect * 10), len(noise), len(layout)])
    layout = "null" if effect == 0 else layout
    scales = np.asarray(NULL_SCALES[:n_specs] if layout == "null" else [math.sqrt(0.5)] * n_specs)
    means = np.asarray([LAYOUTS[layout](k, effect) for k in range(n_specs)])
    pairs = [(a, b) for a in range(n_specs) for b in range(a + 1, n_specs)]
    differ = [means[a] != means[b] for a, b in pairs]
    errors = hits = 0
    seeds_used = []
    for _ in range(sims):
        values = means[:, None] + NOISE[noise](rng, (n_specs, design.looks()[-1])) * scales[:, None]
        hyp = [{"pair": (a, b), "family": "m", "diffs": values[a] - values[b], "margin": None, "smaller_better": True}
               for a, b in pairs]
        rows = _naive(hyp, design) if naive else verdicts(hyp, design)
        errors += any(r["verdict"] in DECIDED for r, f in zip(rows, differ) if not f)
        hits += sum(r["verdict"] == ("a better" if means[a] < means[b] else "b better")
                    for (a, b), r, f in zip(pairs, rows, differ) if f)
        used = dict.fromkeys(range(n_specs), 0)
        for (a, b), r in zip(pairs, rows):
            stop = r["decided_at"] or design.looks()[-1]
            used[a], used[b] = max(used[a], stop), max(used[b], stop)
        seeds_used.append(np.mean(list(used.values())))
    low, high = stats.binomtest(errors, sims).proportion_ci(0.95, method="exact")
    return {"fwer": errors / sims, "fwer_low": low, "fwer_high": high,
            "power": hits / (sims * sum(differ)) if any(differ) else None, "mean_seeds": float(np.mean(seeds_used))}


def _naive(hyp: list[dict], design: Design) -> list[dict]:
    """Fixed-seeds Holm verdicts recomputed at every look; a pair stops at its first rejection."""
    out = [None] * len(hyp)
    for n in design.looks():
        fixed = Design(max_seeds=n, alpha=design.alpha)
        open_idx = [i for i in range(len(hyp)) if out[i] is None]
        rows = verdicts([{**hyp[i], "diffs": hyp[i]["diffs"][:n]} for i in range(len(hyp))], fixed)
        for i in open_idx:
            if rows[i]["verdict"] in DECIDED:
                out[i] = {**rows[i], "decided_at": n}
    return [o or {"verdict": "no detectable difference", "decided_at": None} for o in out]


def fixed_seeds_for_power(n_specs: int, effect: float, power: float, design: Design, sims: int, layout: str,
                          limit: int = 40) -> int | None:
    """Fewest seeds with which the fixed design (Holm over the same pairs) reaches `power`, by the
    same simulation."""
    for n in range(3, limit + 1):
        fixed = Design(max_seeds=n, alpha=design.alpha)
        if simulate(n_specs, "normal", effect, fixed, sims, layout=layout)["power"] >= power:
            return n
    return None


def table(sims: int, design: Design) -> list[dict]:
    """The README's table: error under the null (sequential, the fixed design at max seeds, the
    naive repeated test) and power / seeds under alternatives beside the fixed design of equal power."""
    rows = []
    fixed = Design(max_seeds=design.max_seeds, alpha=design.alpha)
    for n_specs in (2, 4):
        for noise in NOISE:
            rows.append({"specs": n_specs, "noise": noise, "effect": 0.0, "layout": "null", "design": "sequential",
                         **simulate(n_specs, noise, 0.0, design, sims)})
            if noise != "normal":
                rows.append({"specs": n_specs, "noise": noise, "effect": 0.0, "layout": "null",
                             "design": f"fixed {design.max_seeds} seeds", **simulate(n_specs, noise, 0.0, fixed, sims)})
        rows.append({"specs": n_specs, "noise": "normal", "effect": 0.0, "layout": "null",
                     "design": "naive: t-test after every round", **simulate(n_specs, "normal", 0.0, design, sims,
                                                                              naive=True)})
        alternatives = [("ladder", e) for e in (1.0, 2.0, 3.0)] + ([("one better", 2.0)] if n_specs > 2 else [])
        for layout, effect in alternatives:
            r = simulate(n_specs, "normal", effect, design, sims, layout=layout)
            rows.append({"specs": n_specs, "noise": "normal", "effect": effect, "layout": layout,
                         "design": "sequential", **r,
                         "fixed_seeds": fixed_seeds_for_power(n_specs, effect, r["power"], design, sims, layout)})
    return rows


def markdown(rows: list[dict], design: Design, sims: int) -> str:
    lines = [f"{sims} simulated benchmarks per row; looks at {', '.join(map(str, design.looks()))} seeds; "
             f"alpha {design.alpha:g}; all pairs compared.", "",
             "| specs | per-seed noise | true differences | design | family-wise error [95 % CI] | power | "
             "mean seeds per spec | fixed seeds for equal power |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        power = f"{r['power']:.2f}" if r["power"] is not None else "-"
        fixed = str(r.get("fixed_seeds") or "-") if r["effect"] else "-"
        truth = "none" if not r["effect"] else f"{r['effect']:g} sd" + (" (one spec better)" if r["layout"] == "one better"
                                                                       else " per rank" if r["specs"] > 2 else "")
        lines.append(f"| {r['specs']} | {r['noise']} | {truth} | {r['design']} | {r['fwer']:.3f} "
                     f"[{r['fwer_low']:.3f}, {r['fwer_high']:.3f}] | {power} | {r['mean_seeds']:.1f} | {fixed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.sequential", description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=2000)
    p.add_argument("--min-seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--max-seeds", type=int, default=11)
    a = p.parse_args(argv)
    design = Design(max_seeds=a.max_seeds, sequential=True, min_seeds=a.min_seeds, batch=a.batch)
    print(markdown(table(a.sims, design), design, a.sims))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
