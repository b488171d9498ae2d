"""The built-in metrics, one `register` each: the table row, the name, how it is computed from an
evaluation's inputs, its sampling interval. A plugin metric is the same call in its own file
(examples/plugins/vendi.py).

    python -m suite evaluate --samples samples.npy --dataset fashion_mnist --json

A group of metrics that come from one computation (precision, recall, density and coverage from
one set of k-NN radii; the memorization statistics) shares it through `Inputs.cached`.
"""

from __future__ import annotations

import math

import torch

from evaluation import bootstrap, collapse, copies, features, fid, isc, kid, memorization, prdc
from evaluation.defaults import DEFAULTS
from evaluation.metrics import METRICS, Metric, Protocol, flagged, register

# --------------------------------------------------------------------------- distances to the reference


def _fid(inp) -> float:
    ref = inp.ref
    return fid.frechet_distance(*fid.statistics(inp.features), ref["mu"], ref["sigma"])


def _fid_interval(inp, value: float) -> tuple[float, float]:
    ref = inp.ref
    return bootstrap.interval(value, value, bootstrap.fid_replicates(inp.features, ref["mu"], ref["sigma"], inp.weights))


register(Metric("fid", "Fréchet distance (Heusel et al. 2017)", "min", "FID (lower is better)", bounds=(0.0, math.inf),
                compute=_fid, interval=_fid_interval, full_only=False))


def kid_subset_size(n: int, n_ref: int) -> int:
    """The standard subset size, or all the samples there are (then named in the metric)."""
    return min(DEFAULTS["kid_subset_size"], n, n_ref)


def _kid_name(p: Protocol) -> str:
    name = p.name("kid")
    subset = kid_subset_size(p.n, p.n_ref)
    return name + (f"_subset{subset}" if subset != DEFAULTS["kid_subset_size"] else "")  # another protocol


def _kid(inp) -> dict[str, float]:
    mean, std = kid.kid(inp.features, inp.ref["features"], subset_size=kid_subset_size(inp.n, inp.n_ref))
    name = _kid_name(inp)
    return {name: mean, name + "_std": std}


def _kid_interval(inp, value: float) -> tuple[float, float]:
    real_sub, _ = inp.ctx.real_radii(min(inp.n, inp.n_ref))  # as many real samples as generated ones
    w = inp.weights
    reps = bootstrap.kid_replicates(inp.features, real_sub, torch.cat([torch.ones(1, inp.n, dtype=w.dtype), w]))
    return bootstrap.interval(value, float(reps[0]), reps[1:])


register(Metric("kid", "kernel inception distance (Bińkowski et al. 2018)", "min", "KID (lower is better)",
                compute=_kid, name=_kid_name, interval=_kid_interval))


def _fidinf(inp) -> float:
    return fid.fid_infinity(inp.features, inp.ref["mu"], inp.ref["sigma"], seed=DEFAULTS["seed"])


register(Metric("fidinf", "FID extrapolated to infinitely many samples (Chong & Forsyth 2020: 15 counts from 5,000 to N)",
                "min", "FID (lower is better)", compute=lambda inp: _fidinf(inp) if fid.fidinf_original(inp.n) else None))
register(Metric("fidinf_rel", f"FID extrapolated like Chong & Forsyth's, with 15 counts from N/10 to N (for N <= "
                f"{fid.FIDINF_START:,}, where the original protocol does not exist)", "min", "FID (lower is better)",
                compute=lambda inp: None if fid.fidinf_original(inp.n) else _fidinf(inp)))

# --------------------------------------------------------------------------- classes and modes


def _is(inp) -> dict[str, float] | None:
    if inp.logits is None or inp.kind == "points":
        return None
    name = inp.name("is", split=None)
    mean, std = isc.inception_score(inp.logits)
    return {name: mean, name + "_std": std}


register(Metric("is", "Inception Score (Salimans et al. 2016)", "max", "score (higher is better)", compute=_is,
                name=lambda p: p.name("is", split=None), full_only=False))


def collapse_result(inp) -> dict | None:
    """The mode-collapse check's numbers: modes of a 2D mixture, or classes under the domain classifier."""
    def compute():
        if inp.kind == "points":
            modes, std = inp.ctx.modes()
            return collapse.mixture_modes(inp.samples, modes, std)
        if inp.logits is not None and inp.extractor == "lenet":
            return collapse.class_histogram(inp.logits, inp.ref["class_counts"], inp.logits.shape[1],
                                            confusion=inp.ctx.confusion(inp.logits.shape[1]))
        return None
    return inp.cached("collapse", compute)


def _mode_space(p: Protocol) -> str:
    return "points" if p.kind == "points" else p.extractor


def _from_collapse(key: str, field: str):
    def compute(inp):
        c = collapse_result(inp)
        return None if c is None or field not in c else c[field]
    return compute


def _class_shares(inp) -> dict[str, float] | None:
    c = collapse_result(inp)
    if c is None or "class_histogram" not in c:
        return None
    return {inp.name("confidence", split=None, extractor="lenet"): c["mean_confidence"],
            **{f"class_share/{i}": v for i, v in enumerate(c["class_histogram"])}}


def _mode_quality(inp) -> dict[str, float] | None:
    c = collapse_result(inp)
    if c is None or "per_mode" not in c:
        return None
    total = max(sum(c["per_mode"]), 1)
    return {inp.name("mode_quality", split=None, extractor="points"): c["mode_quality"],
            **{f"mode_share/{i:02d}": n / total for i, n in enumerate(c["per_mode"])}}


register(Metric("modes_covered", "modes or classes covered (VEEGAN / PacGAN)", "max", "modes / classes",
                compute=_from_collapse("modes_covered", "modes_covered"),
                name=lambda p: p.name("modes_covered", split=None, extractor=_mode_space(p)), full_only=False))
register(Metric("mode_kl", "KL of the mode or class histogram to the data's", "min", "KL divergence",
                compute=lambda inp: (c := collapse_result(inp)) and c.get("kl_to_uniform", c.get("kl_to_data")),
                name=lambda p: p.name("mode_kl", split=None, extractor=_mode_space(p)), full_only=False))
register(Metric("mode_quality", "modes covered / modes x high-quality share (the 2D toys' primary)", "max",
                "0 to 1 (1 = every mode, every sample near one)", compute=_mode_quality,
                name=lambda p: p.name("mode_quality", split=None, extractor="points"), full_only=False))
register(Metric("hq_share", "share of samples within 3 std of a mode (VEEGAN)", "max", "share of samples",
                compute=_from_collapse("hq_share", "high_quality_share"),
                name=lambda p: p.name("hq_share", split=None, extractor="points"), full_only=False))
register(Metric("confidence", "mean top probability of the domain classifier", "max", "mean max probability",
                compute=_class_shares, name=lambda p: p.name("confidence", split=None, extractor="lenet"),
                full_only=False))

# --------------------------------------------------------------------------- precision, recall, density, coverage


def _prdc(inp) -> tuple[dict, dict]:
    def compute():
        real_sub, radii = inp.ctx.real_radii(min(inp.n, inp.n_ref))
        values, per_sample = prdc.prdc(inp.features, real_sub, real_radii=radii, per_sample=True)
        reps = bootstrap.prdc_replicates(per_sample, inp.weights,
                                         bootstrap.weights(len(real_sub), seed=DEFAULTS["seed"] + 1))
        return values, reps
    return inp.cached("prdc", compute)


def _prdc_entry(key: str, title: str, unit: str, bounds: tuple[float, float]) -> Metric:
    def interval(inp, value):
        return bootstrap.interval(value, value, _prdc(inp)[1][key])
    return Metric(key, title, "max", unit, bounds=bounds, compute=lambda inp: _prdc(inp)[0][key],
                  name=lambda p: p.name(key, n_ref=min(p.n, p.n_ref)), interval=interval)


register(_prdc_entry("precision", "precision (Naeem et al. 2020)", "share of samples", (0.0, 1.0)))
register(_prdc_entry("recall", "recall (Naeem et al. 2020)", "share of real data", (0.0, 1.0)))
register(_prdc_entry("density", "density (Naeem et al. 2020)", "density (1 = like data)", (0.0, math.inf)))
register(_prdc_entry("coverage", "coverage (Naeem et al. 2020)", "share of real data", (0.0, 1.0)))

# --------------------------------------------------------------------------- memorization


def memorization_result(inp) -> dict | None:
    """Nearest training neighbours in pixel and feature space against the held-out baseline, C_T,
    MiFID and the edit-invariant copy search; None without a held-out split."""
    def compute():
        ctx = inp.ctx
        if not ctx.has_test:
            return None
        gen_px = ctx.pixels(inp.samples)["features"]
        px_d, px_i = memorization.nn_distances(gen_px, ctx.ref("train", ctx.pixels)["features"], DEFAULTS["nn_k"])
        ft_d, _ = memorization.nn_distances(inp.features, inp.ref["features"])
        out = {"pixels": memorization.copy_stats(px_d[:, 0], ctx.test_nn("pixels")),
               "features": memorization.copy_stats(ft_d[:, 0], ctx.test_nn("features")),
               "ct": memorization.ct_statistic(inp.ref["features"], ctx.ref("test")["features"], inp.features),
               "nn_index": px_i, "edits": None, "found": None}
        if inp.kind != "points":
            search, heldout = ctx.copy_search()
            out["found"] = search(features.prepare_images(inp.samples, ctx.shape[-1]))
            out["edits"] = copies.copy_shares(search, out["found"], heldout)
        return out
    return inp.cached("memorization", compute)


def _space(p: Protocol) -> str:
    return "points" if p.kind == "points" else "pixels"


def _nn_stat(key: str, field: str):
    def compute(inp):
        mem = memorization_result(inp)
        if mem is None:
            return None
        return {inp.name(key, extractor=_space(inp)): mem["pixels"][field], inp.name(key): mem["features"][field]}
    return compute


register(Metric("nn_ratio", "median NN distance to train over that of held-out images", "", "ratio",
                compute=_nn_stat("nn_ratio", "nn_ratio")))
register(Metric("near_copies", "share of samples closer to train than 99 % of held-out images", "min",
                "share of samples", flag_above=0.05, compute=_nn_stat("near_copies", "near_copy_share")))


def _edit_copies(inp) -> dict[str, float] | None:
    mem = memorization_result(inp)
    if mem is None or mem["edits"] is None:
        return None
    return {inp.name("edit_copies", extractor="pixels"): mem["edits"]["near_copy_share"],
            **{f"edit_copies/{kind}": share for kind, share in mem["edits"]["by_edit"].items()}}


register(Metric("edit_copies", "share of samples that are copies under small edits (shift, mirror, rescale, "
                "re-lighting, noise), against held-out images searched alike", "min", "share of samples",
                flag_above=0.05, compute=_edit_copies, name=lambda p: p.name("edit_copies", extractor="pixels")))
# C_T averages in-cell Z scores with weights summing to 1: under the null (no copying) its sd is
# at most 1, so C_T < -3 happens with probability <= 0.0013 by chance (one-sided).
register(Metric("ct", "C_T data-copying statistic (Meehan et al. 2020, the authors' test)", "", "z-score",
                flag_below=-3.0, compute=lambda inp: None if (m := memorization_result(inp)) is None else m["ct"]))


def _mifid(inp) -> float | None:
    if memorization_result(inp) is None:
        return None
    return memorization.mifid(inp.value("fid"), inp.features, inp.ref["features"])


register(Metric("mifid", "memorization-informed FID (Bai et al. 2021: distance averaged over generated samples)",
                "min", "FID (lower is better)", compute=_mifid))


def memorization_check(inp) -> dict:
    """The memorization verdict: near copies in either space, or copies under small edits."""
    mem = memorization_result(inp)
    if mem is None:
        return {"flagged": False, "note": "no held-out split: not checked"}
    px, ft, edits = mem["pixels"], mem["features"], mem["edits"]
    # C_T is reported, not decisive: a cell-wise distance test that a collapsed but honest set fails too
    copying = (flagged("near_copies", max(px["near_copy_share"], ft["near_copy_share"]))
               or (edits is not None and flagged("edit_copies", edits["near_copy_share"])))
    return {"flagged": bool(copying), "pixels": px, "features": ft, "edits": edits, "ct": mem["ct"],
            "mifid": inp.value("mifid"), "near_copy_flag": METRICS["near_copies"].flag_above,
            "ct_flag": METRICS["ct"].flag_below}

# --------------------------------------------------------------------------- logged by the training evaluators

register(Metric("clipped", "share of generated pixel values outside [-1, 1], clipped before judging", "min",
                "share of pixel values"))
register(Metric("label_acc", "labels kept by a translation (domain classifier)", "max", "accuracy"))
register(Metric("l1_to_truth", "L1 distance to the known true translation", "min", "mean |error| in [-1, 1]"))
register(Metric("cycle_l1", "L1 distance of a cycle's reconstruction", "min", "mean |error| in [-1, 1]"))
