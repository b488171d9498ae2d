"""The one table of metric knowledge: every evaluation metric the suite logs, which way is
better, its unit, the thresholds and words of the verdicts built on it, how its name is built
and how it is computed (stylegan2-ada's `metric_main` is the model). The built-in entries are
registered in evaluation/measures.py; a plugin metric is one `register` call in its own file. The tuning objective's direction, the best checkpoint, the
report's units, evaluation tables and verdicts, and any leaderboard sort derive from here.

Names encode the protocol: `<metric><samples>_<extractor>_<dataset>_<reference split>`, e.g.
`fid10k_lenet_fashion_mnist_train`; `metric_name` spells them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from suite.core.errors import PluginError
from suite.core.registration import check_name, origin


@dataclass(frozen=True)
class Protocol:
    """What a metric's name is built from: samples, extractor, reference set and its size."""

    n: int
    extractor: str
    dataset: str
    kind: str = "image"  # "image" | "points"
    n_ref: int = 0  # real samples of the reference split

    def name(self, key: str, split: str | None = "train", extractor: str | None = None, n_ref: int | None = None) -> str:
        return metric_name(key, self.n, extractor or self.extractor, self.dataset, split, n_ref)


@dataclass(frozen=True)
class Metric:
    """One metric: its table row, how its names are built, how it is computed from an evaluation's
    inputs (evaluation.evaluate.Inputs: features, logits, the reference side), and its interval."""

    key: str  # the name's prefix, before the sample count
    title: str
    direction: str  # "min" | "max" | "" (a diagnostic with no better side: tuning needs --direction)
    unit: str
    flag_above: float | None = None  # the check it feeds is flagged above this value ...
    flag_below: float | None = None  # ... or below this one
    bounds: tuple[float, float] = (-math.inf, math.inf)  # the values it can take (intervals are clipped to them)
    # value(s) from the inputs: a float (logged as `name`), a dict {logged name: value}, or None
    # (does not apply to these inputs); no compute: logged by another part (training evaluators)
    compute: Callable | None = None
    name: Callable[[Protocol], str] | None = None  # default: <key><n>_<extractor>_<dataset>_train
    interval: Callable | None = None  # (inputs, value) -> (low, high) at full evaluations
    full_only: bool = True  # computed at full evaluations only (the end of a run, `suite evaluate`)
    origin: dict = field(default_factory=dict)  # the plugin it came from (empty: built in)

    def logged_name(self, proto: Protocol) -> str:
        return self.name(proto) if self.name else proto.name(self.key)


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """The registration door for metrics, built-in (evaluation/measures.py) or plugin."""
    if not isinstance(metric, Metric):
        raise PluginError(f"register_metric takes an evaluation.metrics.Metric, got {type(metric).__name__}")
    check_name("metric", metric.key, METRICS)
    if metric.direction not in ("min", "max", ""):
        raise PluginError(f"metric '{metric.key}': direction must be 'min', 'max' or '' (no better side), "
                          f"got {metric.direction!r}")
    clash = [k for k in METRICS if k.startswith(metric.key) or metric.key.startswith(k)]
    if any(metric.key[len(k):len(k) + 1].isdigit() or k[len(metric.key):len(metric.key) + 1].isdigit() for k in clash):
        raise PluginError(f"metric '{metric.key}' would read like another metric's name followed by a sample count")
    if metric.compute is not None and not callable(metric.compute):
        raise PluginError(f"metric '{metric.key}': compute must be a function of the evaluation's inputs")
    lo, hi = metric.bounds
    if not lo <= hi:
        raise PluginError(f"metric '{metric.key}': bounds {metric.bounds} are not (low, high)")
    metric = dataclasses.replace(metric, origin=origin()) if origin() else metric
    METRICS[metric.key] = metric
    return metric


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
                  f"C_T = {mem['ct']:.2f} (reported, not decisive: below {mem['ct_flag']} in copying and in "
                  "collapsed but honest sets alike)")
        if mem.get("edits"):
            kinds = ", ".join(f"{k} {v:.2%}" for k, v in mem["edits"]["by_edit"].items() if v)
            detail += (f"; {mem['edits']['near_copy_share']:.2%} are copies under small edits (shifts, mirroring, "
                       f"rescaling, re-lighting)" + (f": {kinds}" if kinds else ""))
        words = VERDICT_WORDS["memorization"][bool(mem["flagged"])]
        if not mem["flagged"] and mc and mc.get("flagged"):
            words = "Collapsed, not memorized: "  # few modes, but no copies of training images
        out.append((words + detail, not mem["flagged"]))
    return out
