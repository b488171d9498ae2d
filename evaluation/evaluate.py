"""The reference side of one dataset and the evaluation of sample sets against it:
samples -> features -> statistics -> metrics and checks.

    python -m suite evaluate --samples samples.npy --dataset fashion_mnist --json

`Context` loads the reference side once (real features and statistics from the cache, k-NN
radii, pixels for the memorization check) and then evaluates any number of sample sets:
those of a training run as it goes, a finished run's checkpoint, or a file from any model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch

from evaluation import bootstrap, collapse, copies, features, fid, isc, kid, memorization, plots, prdc, stats
from evaluation.defaults import DEFAULTS, PROTOCOL
from evaluation.metrics import METRICS, SPREADS, clip, flagged, interval_names, metric_name
from evaluation.neighbours import kth_radius
from evaluation.samples import check_samples, sample_format
from suite import data
from suite.core import paths
from suite.core.errors import DataError


@dataclass
class Options:
    n: int = DEFAULTS["n"]
    extractor: str | None = None  # None: the dataset's default (lenet / inception / points)
    device: str = "cpu"
    data_root: str | None = None
    inception_weights: str | None = None


@dataclass
class Result:
    metrics: dict[str, float]
    checks: dict[str, dict]
    figures: dict  # name -> uint8 HxWx3 array (not part of the JSON)
    primary: str

    def to_json(self) -> dict:
        return {"metrics": self.metrics, "checks": self.checks, "primary": self.primary}

    def files(self, step: int, tag: str) -> dict[str, str | np.ndarray]:
        """What a run keeps of this evaluation: artifact path -> JSON text or image pixels."""
        out: dict[str, str | np.ndarray] = {}
        if self.checks:
            out[f"eval/result_{tag}.json"] = json.dumps({"step": step, **self.to_json()}, indent=2, default=float)
        out.update({f"eval/{name}.png": fig for name, fig in self.figures.items()})
        return out

    def tags(self) -> dict[str, str]:
        """The checks' verdicts as run tags (filterable in the MLflow UI)."""
        if not self.checks:
            return {}
        tags = {"suite.mode_collapse": str(self.checks["mode_collapse"]["flagged"]),
                "suite.memorization": str(self.checks.get("memorization", {}).get("flagged", "not checked"))}
        if any(k.endswith(SPREADS[1]) for k in self.metrics):
            tags["suite.ci_method"] = bootstrap.METHOD
        return tags


# The fewest samples an evaluation takes: the Inception Score's splits need 2 samples each (with
# one, a split's KL term is 0 and IS is exactly 1), precision/recall need k + 1 for their radii.
MIN_SAMPLES = max(2 * DEFAULTS["isc_splits"], DEFAULTS["prdc_k"] + 1)


def min_samples_reason() -> str:
    return (f"an evaluation needs at least {MIN_SAMPLES} samples (Inception Score: {DEFAULTS['isc_splits']} splits "
            f"of 2 or more; precision/recall: k = {DEFAULTS['prdc_k']} neighbours besides each sample; KID and FID: 2)")


def kid_subset_size(n: int, n_ref: int) -> int:
    """The standard subset size, or all the samples there are (then named in the metric)."""
    return min(DEFAULTS["kid_subset_size"], n, n_ref)


class Context:
    """The reference side of one dataset under one extractor. `Context.shared` reuses one per
    process (a tuning worker evaluates many trials against the same reference)."""

    _shared: dict = {}

    @classmethod
    def shared(cls, dataset: str, options: Options) -> Context:
        key = (dataset, options.extractor, options.device, options.data_root, options.inception_weights)
        if key not in cls._shared:
            cls._shared[key] = cls(dataset, options)
        return cls._shared[key]

    def __init__(self, dataset: str, options: Options | None = None):
        self.opt = options or Options()
        self.base, self.kind, self.shape = sample_format(dataset)
        self.spec = data.get_spec(self.base)
        name = self.opt.extractor or features.default_for(self.base)
        self.extractor = features.get(name, self.base, device=self.opt.device,
                                      inception_weights=self.opt.inception_weights)
        self.pixels = features.get("points" if self.kind == "points" else "pixels", self.base)
        self.has_test = self.spec.has_test
        self._loaded: data.Loaded | None = None
        self._refs: dict = {}

    @property
    def loaded(self) -> data.Loaded:
        """The dataset itself, loaded only when a cache misses or the figures need images."""
        if self._loaded is None:
            self._loaded = data.load(self.base, data_root=self.opt.data_root)
        return self._loaded

    # -- cached reference pieces
    def ref(self, split: str, extractor=None, n: int | None = None) -> dict:
        extractor = extractor or self.extractor
        key = (split, extractor.name, n)
        if key not in self._refs:
            size = self.shape[-1] if self.kind != "points" else 0
            self._refs[key] = stats.reference(self.base, size, split, extractor, lambda: self.loaded, n)
        return self._refs[key]

    def real_radii(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = ("radii", n)
        if key not in self._refs:
            real = self.ref("train")["features"]
            idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(DEFAULTS["seed"]))[:n]
            self._refs[key] = (real[idx], kth_radius(real[idx], DEFAULTS["prdc_k"], dtype=torch.float64))
        return self._refs[key]

    def test_nn(self, space: str) -> torch.Tensor:
        """Held-out -> train nearest-neighbour distances (the memorization baseline)."""
        key = ("test_nn", space)
        if key not in self._refs:
            ext = self.pixels if space == "pixels" else self.extractor
            self._refs[key] = stats.heldout_nn(self.base, ext, self.ref("test", ext), self.ref("train", ext))
        return self._refs[key]

    def copy_search(self) -> tuple[copies.CopySearch, torch.Tensor]:
        """The edit-invariant copy search over the training images, and the held-out images'
        distances under it (the threshold's baseline), built once per context."""
        if "copies" not in self._refs:
            search = copies.CopySearch(stats.real_images(self.loaded, "train"))
            test, train = self.ref("test", self.pixels), self.ref("train", self.pixels)
            settings = "-".join(str(DEFAULTS[k]) for k in ("copy_shift", "copy_scales", "copy_candidates"))
            key = hashlib.sha256(f"{PROTOCOL}|{settings}|{test['key']}|{train['key']}".encode()).hexdigest()[:16]
            path = paths.cache_dir("stats") / f"{self.base}-heldout-copies-{key}.pt"
            heldout = stats.cached_distances(path, lambda: search(stats.real_images(self.loaded, "test"))["distance"])
            self._refs["copies"] = (search, heldout)
        return self._refs["copies"]

    def names(self, n: int) -> dict[str, str]:
        ext, ds = self.extractor.name, self.base
        train_n = self.ref("train")["n"]
        kid_name = metric_name("kid", n, ext, ds, "train")
        subset = kid_subset_size(n, train_n)
        if subset != DEFAULTS["kid_subset_size"]:
            kid_name += f"_subset{subset}"  # fewer samples than the standard subsets: another protocol
        return {
            "fid": metric_name("fid", n, ext, ds, "train"),
            "fidinf": metric_name("fidinf", n, ext, ds, "train"),
            "kid": kid_name,
            "kid_std": kid_name + "_std",
            "is": metric_name("is", n, ext, ds),
            "is_std": metric_name("is", n, ext, ds) + "_std",
            **{m: metric_name(m, n, ext, ds, "train", min(n, train_n)) for m in ("precision", "recall", "density",
                                                                                  "coverage")},
            "modes_covered": metric_name("modes_covered", n, ext if self.kind != "points" else "points", ds),
            "mode_kl": metric_name("mode_kl", n, ext if self.kind != "points" else "points", ds),
            "mode_quality": metric_name("mode_quality", n, "points", ds),
        }

    def primary(self, n: int) -> str:
        """What picks the best checkpoint and a study's objective: FID, except for the 2D mixtures,
        which exist to show modes (VEEGAN, PacGAN) and which a Gaussian fit cannot see."""
        return self.names(n)["mode_quality" if self.kind == "points" else "fid"]

    # -- evaluation
    def evaluate(self, samples: torch.Tensor, full: bool = True) -> Result:
        """full=False (during training): FID, IS and the collapse check. full=True adds KID,
        precision/recall/density/coverage, the memorization checks and the figures."""
        samples = check_samples(samples, self.kind, self.shape)
        n = len(samples)
        if n < MIN_SAMPLES:
            raise DataError(f"got {n} samples: {min_samples_reason()}")
        names = self.names(n)
        out = self.extractor(samples)
        gen_f = out["features"]
        ref = self.ref("train")
        metrics = {names["fid"]: fid.frechet_distance(*fid.statistics(gen_f), ref["mu"], ref["sigma"])}
        if full and n >= 2:  # 100 kernel subsets: at the end of a run, not at every evaluation
            k_mean, k_std = kid.kid(gen_f, ref["features"], subset_size=kid_subset_size(n, ref["n"]))
            metrics.update({names["kid"]: k_mean, names["kid_std"]: k_std})
            metrics[names["fidinf"]] = fid.fid_infinity(
                gen_f, ref["mu"], ref["sigma"], seed=DEFAULTS["seed"])
        checks: dict[str, dict] = {}
        figs: dict = {}
        if self.kind == "points":
            modes, std = data.mixture_modes(self.base)
            mc = collapse.mixture_modes(samples, modes, std)
            metrics[names["modes_covered"]] = mc["modes_covered"]
            metrics[names["mode_kl"]] = mc["kl_to_uniform"]
            metrics[metric_name("hq_share", n, "points", self.base)] = mc["high_quality_share"]
            metrics[names["mode_quality"]] = mc["mode_quality"]
            total = max(sum(mc["per_mode"]), 1)
            metrics.update({f"mode_share/{i:02d}": c / total for i, c in enumerate(mc["per_mode"])})
            checks["mode_collapse"] = mc
            if full:
                figs["modes"] = plots.mode_figure(mc, samples, modes)
        elif "logits" in out:
            metrics[names["is"]], metrics[names["is_std"]] = isc.inception_score(out["logits"])
            if self.extractor.name == "lenet":
                n_classes = out["logits"].shape[1]
                ch = collapse.class_histogram(out["logits"], ref["class_counts"], n_classes)
                metrics[names["modes_covered"]] = ch["modes_covered"]
                metrics[names["mode_kl"]] = ch["kl_to_data"]
                metrics[metric_name("confidence", n, "lenet", self.base)] = ch["mean_confidence"]
                metrics.update({f"class_share/{i}": v for i, v in enumerate(ch["class_histogram"])})
                checks["mode_collapse"] = ch
                if full:
                    figs["modes"] = plots.class_figure(ch, self.spec.classes)
        if "mode_collapse" not in checks:
            checks["mode_collapse"] = {"flagged": False, "modes_covered": None, "modes_total": None,
                                       "note": "no class labels for this extractor: not checked"}
        pr_reps: dict = {}
        w = bootstrap.weights(n) if full else None  # one resampling serves every interval
        if full:
            real_sub, radii = self.real_radii(min(n, ref["n"]))
            pr, per_sample = prdc.prdc(gen_f, real_sub, real_radii=radii, per_sample=True)
            pr_reps = bootstrap.prdc_replicates(per_sample, w, bootstrap.weights(len(real_sub), seed=DEFAULTS["seed"] + 1))
            metrics.update({names[k]: v for k, v in pr.items()})
            mem, figs_mem = self.memorization(samples, gen_f, metrics[names["fid"]], n)
            metrics.update(mem.pop("_metrics"))
            checks["memorization"] = mem
            figs.update(figs_mem)
        if full and n >= 2:  # ~2 s at 10k samples (200 eigensolves): at full evaluations only
            metrics.update(self.intervals(gen_f, w, names, metrics, pr_reps))
        metrics = {k: float(v) for k, v in metrics.items()}
        return Result(metrics, checks, figs, self.primary(n))

    def intervals(self, gen_f: torch.Tensor, w: torch.Tensor, names: dict, values: dict,
                  prdc_reps: dict) -> dict[str, float]:
        """Sampling intervals (evaluation.bootstrap) of FID, KID and precision / recall / density /
        coverage at a full evaluation (the end of a run, `suite evaluate`)."""
        ref, n = self.ref("train"), len(gen_f)
        out = {names["fid"]: bootstrap.interval(values[names["fid"]], values[names["fid"]],
                                                bootstrap.fid_replicates(gen_f, ref["mu"], ref["sigma"], w))}
        if names["kid"] in values:
            real_sub, _ = self.real_radii(min(n, ref["n"]))  # as many real samples as generated ones
            reps = bootstrap.kid_replicates(gen_f, real_sub, torch.cat([torch.ones(1, n, dtype=torch.float64), w]))
            out[names["kid"]] = bootstrap.interval(values[names["kid"]], float(reps[0]), reps[1:])
        for key, reps in prdc_reps.items():
            out[names[key]] = bootstrap.interval(values[names[key]], values[names[key]], reps)
        return {key: v for name, pair in out.items() for key, v in zip(interval_names(name), clip(name, *pair))}

    def memorization(self, samples: torch.Tensor, gen_f: torch.Tensor, fid_value: float, n: int):
        if not self.has_test:
            return {"flagged": False, "note": "no held-out split: not checked", "_metrics": {}}, {}
        ds, ext = self.base, self.extractor.name
        gen_px = self.pixels(samples)["features"]
        train_px = self.ref("train", self.pixels)["features"]
        px_d, px_i = memorization.nn_distances(gen_px, train_px, DEFAULTS["nn_k"])
        ft_d, _ = memorization.nn_distances(gen_f, self.ref("train")["features"])
        px = memorization.copy_stats(px_d[:, 0], self.test_nn("pixels"))
        ft = memorization.copy_stats(ft_d[:, 0], self.test_nn("features"))
        ct = memorization.ct_statistic(self.ref("train")["features"], self.ref("test")["features"], gen_f)
        mi = memorization.mifid(fid_value, gen_f, self.ref("train")["features"])
        space = "points" if self.kind == "points" else "pixels"
        edits, found = None, None
        if self.kind != "points":
            search, heldout = self.copy_search()
            found = search(features.prepare_images(samples, self.shape[-1]))
            edits = copies.copy_shares(search, found, heldout)
        copying = (flagged("near_copies", max(px["near_copy_share"], ft["near_copy_share"])) or flagged("ct", ct)
                   or (edits is not None and flagged("edit_copies", edits["near_copy_share"])))
        m = {
            metric_name("nn_ratio", n, space, ds, "train"): px["nn_ratio"],
            metric_name("near_copies", n, space, ds, "train"): px["near_copy_share"],
            metric_name("nn_ratio", n, ext, ds, "train"): ft["nn_ratio"],
            metric_name("near_copies", n, ext, ds, "train"): ft["near_copy_share"],
            metric_name("ct", n, ext, ds, "train"): ct,
            metric_name("mifid", n, ext, ds, "train"): mi,
        }
        if edits is not None:
            m[metric_name("edit_copies", n, "pixels", ds, "train")] = edits["near_copy_share"]
            m.update({f"edit_copies/{kind}": share for kind, share in edits["by_edit"].items()})
        check = {"flagged": bool(copying), "pixels": px, "features": ft, "edits": edits, "ct": ct, "mifid": mi,
                 "near_copy_flag": METRICS["near_copies"].flag_above,
                 "ct_flag": METRICS["ct"].flag_below, "_metrics": m}
        figs = {}
        if self.kind != "points":
            train_imgs = stats.real_images(self.loaded, "train")
            figs["nn_grid"] = plots.nn_figure(samples, train_imgs, px_i, self.shape[-1], matched=found["index"])
        return check, figs
