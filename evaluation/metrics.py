"""The one table of metric knowledge: every evaluation metric the suite logs, which way is
better, its unit, and the thresholds and words of the verdicts built on it (stylegan2-ada's
`metric_main` is the model). The tuning objective's direction, the best checkpoint, the
report's units, evaluation tables and verdicts, and any leaderboard sort derive from here.

Names encode the protocol: `<metric><samples>_<extractor>_<dataset>_<reference split>`, e.g.
`fid10k_lenet_fashion_mnist_train`; `metric_name` spells them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str  # the name's prefix, before the sample count
    title: str
    direction: str  # "min" | "max" | "" (a diagnostic with no better side: tuning needs --direction)
    unit: str
    flag_above: float | None = None  # the check it feeds is flagged above this value ...
    flag_below: float | None = None  # ... or below this one
    bounds: tuple[float, float] = (-math.inf, math.inf)  # the values it can take (intervals are clipped to them)


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.key in METRICS or metric.direction not in ("min", "max", ""):
        raise ValueError(f"bad metric registration: {metric.key}")
    METRICS[metric.key] = metric
    return metric


register(Metric("fid", "Fréchet distance (Heusel et al. 2017)", "min", "FID (lower is better)", bounds=(0.0, math.inf)))
register(Metric("fidinf", "FID extrapolated to infinitely many samples (Chong & Forsyth 2020)", "min",
                "FID (lower is better)"))
register(Metric("kid", "kernel inception distance (Bińkowski et al. 2018)", "min", "KID (lower is better)"))
register(Metric("is", "Inception Score (Salimans et al. 2016)", "max", "score (higher is better)"))
register(Metric("precision", "precision (Naeem et al. 2020)", "max", "share of samples", bounds=(0.0, 1.0)))
register(Metric("recall", "recall (Naeem et al. 2020)", "max", "share of real data", bounds=(0.0, 1.0)))
register(Metric("density", "density (Naeem et al. 2020)", "max", "density (1 = like data)", bounds=(0.0, math.inf)))
register(Metric("coverage", "coverage (Naeem et al. 2020)", "max", "share of real data", bounds=(0.0, 1.0)))
register(Metric("modes_covered", "modes or classes covered (VEEGAN / PacGAN)", "max", "modes / classes"))
register(Metric("mode_kl", "KL of the mode or class histogram to the data's", "min", "KL divergence"))
register(Metric("mode_quality", "modes covered / modes x high-quality share (the 2D toys' primary)", "max",
                "0 to 1 (1 = every mode, every sample near one)"))
register(Metric("hq_share", "share of samples within 3 std of a mode (VEEGAN)", "max", "share of samples"))
register(Metric("confidence", "mean top probability of the domain classifier", "max", "mean max probability"))
register(Metric("clipped", "share of generated pixel values outside [-1, 1], clipped before judging", "min",
                "share of pixel values"))
register(Metric("nn_ratio", "median NN distance to train over that of held-out images", "", "ratio"))
register(Metric("near_copies", "share of samples closer to train than 99 % of held-out images", "min",
                "share of samples", flag_above=0.05))
# C_T averages in-cell Z scores with weights summing to 1: under the null (no copying) its sd is
# at most 1, so C_T < -3 happens with probability <= 0.0013 by chance (one-sided).
register(Metric("edit_copies", "share of samples that are copies under small edits (shift, mirror, rescale, "
                "re-lighting, noise), against held-out images searched alike", "min", "share of samples",
                flag_above=0.05))
register(Metric("ct", "C_T data-copying statistic (Meehan et al. 2020, the authors' test)", "", "z-score",
                flag_below=-3.0))
register(Metric("mifid", "memorization-informed FID (Bai et al. 2021: distance averaged over generated samples)",
                "min", "FID (lower is better)"))
register(Metric("label_acc", "labels kept by a translation (domain classifier)", "max", "accuracy"))
register(Metric("l1_to_truth", "L1 distance to the known true translation", "min", "mean |error| in [-1, 1]"))
register(Metric("cycle_l1", "L1 distance of a cycle's reconstruction", "min", "mean |error| in [-1, 1]"))


def count(n: int) -> str:
    """10000 -> '10k', 1500 -> '1500' (stylegan's fid50k spelling)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def metric_name(metric: str, n: int, extractor: str, dataset: str | None = None, split: str | None = None,
                n_ref: int | None = None) -> str:
    """Protocol-encoded names, e.g. fid10k_lenet_fashion_mnist_train (full split) or
    fid10k_inception_celeba_train50k. The extractor is always spelled out, so a FID on the
    suite's LeNet features can never pass for an Inception FID."""
    if metric not in METRICS:
        raise KeyError(f"metric '{metric}' is not in evaluation.metrics.METRICS")
    name = f"{metric}{count(n)}_{extractor}"
    if dataset:
        name += f"_{dataset}"
    if split:
        name += f"_{split}" + (count(n_ref) if n_ref else "")
    return name


SPREADS = ("_std", "_ci_low", "_ci_high")  # suffixes of a metric's spread or interval, never a metric itself


def interval_names(name: str) -> tuple[str, str]:
    """The names of a metric's sampling interval (evaluation.bootstrap)."""
    return f"{name}_ci_low", f"{name}_ci_high"


def lookup(name: str) -> Metric | None:
    """The table entry of a logged name: the longest registered key followed by the sample count
    (`cycle_l1200_a` is cycle_l1 at 200 samples). None for anything that is not an evaluation
    metric (losses, learning rates, shares, spreads such as `..._std`)."""
    if name.endswith(SPREADS):
        return None
    keys = [k for k in METRICS if name.startswith(k) and name[len(k):len(k) + 1].isdigit()]
    return METRICS[max(keys, key=len)] if keys else None


def clip(name: str, low: float, high: float) -> tuple[float, float]:
    """An interval kept inside the values metric `name` can take (the basic bootstrap reflects the
    replicates around the estimate and can step outside: recall 0.996 got an upper end of 1.002)."""
    metric = lookup(name)
    if metric is None:
        return low, high
    lo, hi = metric.bounds
    return min(max(low, lo), hi), max(min(high, hi), lo)


def is_evaluation(name: str) -> bool:
    return lookup(name) is not None


def direction(name: str) -> str:
    """"min" or "max"; "" for a diagnostic with no better side or a name not in the table."""
    metric = lookup(name)
    return metric.direction if metric else ""


def unit(name: str) -> str:
    metric = lookup(name)
    return metric.unit if metric else name


def better(name: str, value: float, than: float | None) -> bool:
    """Is `value` of metric `name` better than `than` (None: nothing yet)?"""
    if not math.isfinite(value):
        return False
    if than is None:
        return True
    return value < than if direction(name) == "min" else value > than


def best(name: str, values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if direction(name) == "min" else max(finite)


def flagged(key: str, value: float) -> bool:
    """A value beyond its metric's verdict threshold (NaN never flags)."""
    metric = METRICS[key]
    if math.isnan(value):
        return False
    return ((metric.flag_above is not None and value > metric.flag_above)
            or (metric.flag_below is not None and value < metric.flag_below))


# --------------------------------------------------------------------------- verdicts in words

VERDICT_WORDS = {  # check -> (words when passed, words when flagged)
    "mode_collapse": ("No mode collapse: ", "Mode collapse FLAGGED: "),
    "memorization": ("No memorization found: ", "Memorization FLAGGED: "),
}


def verdicts(checks: dict) -> list[tuple[str, bool]]:
    """The collapse and memorization checks of one evaluation, in words: (sentence, passed)."""
    out = []
    mc = checks.get("mode_collapse")
    if mc and mc.get("modes_total"):
        what = "modes" if "per_mode" in mc else "classes"
        detail = (f"{mc['modes_covered']}/{mc['modes_total']} {what} covered"
                  + (f", KL to the data's class distribution {mc['kl_to_data']:.3f}, mean classifier confidence "
                     f"{mc['mean_confidence']:.2f}" if "kl_to_data" in mc else
                     f", {mc['high_quality_share']:.1%} of samples within 3 std of a mode, KL to uniform "
                     f"{mc['kl_to_uniform']:.3f}"))
        out.append((VERDICT_WORDS["mode_collapse"][bool(mc["flagged"])] + detail, not mc["flagged"]))
    mem = checks.get("memorization")
    if mem and "pixels" in mem:
        px, ft = mem["pixels"], mem["features"]
        detail = (f"{px['near_copy_share']:.2%} of samples are near copies in pixel space and {ft['near_copy_share']:.2%} "
                  f"in feature space (closer to a training image than 99 % of held-out images are); median "
                  f"distance to the nearest training image is {px['nn_ratio']:.2f}x that of held-out images; "
                  f"C_T = {mem['ct']:.2f} (data copying would be below {mem['ct_flag']})")
        if mem.get("edits"):
            kinds = ", ".join(f"{k} {v:.2%}" for k, v in mem["edits"]["by_edit"].items() if v)
            detail += (f"; {mem['edits']['near_copy_share']:.2%} are copies under small edits (shifts, mirroring, "
                       f"rescaling, re-lighting)" + (f": {kinds}" if kinds else ""))
        out.append((VERDICT_WORDS["memorization"][bool(mem["flagged"])] + detail, not mem["flagged"]))
    return out
