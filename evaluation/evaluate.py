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

from evaluation import bootstrap, collapse, copies, features, measures, plots, stats
from evaluation.defaults import DEFAULTS, PROTOCOL
from evaluation.metrics import METRICS, SPREADS, Metric, Protocol, clip, interval_names
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
            self._refs[key] = stats.reference(self.base, size, split, extractor, lambda: self.loaded, n,
                                              data.fingerprint(self.base, self.opt.data_root))
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
            settings = "-".join(str(DEFAULTS[k]) for k in ("copy_shift", "copy_scales", "copy_angles", "copy_candidates"))
            key = hashlib.sha256(f"{PROTOCOL}|{settings}|{test['key']}|{train['key']}".encode()).hexdigest()[:16]
            path = paths.cache_dir("stats") / f"{self.base}-heldout-copies-{key}.pt"
            heldout = stats.cached_distances(path, lambda: search(stats.real_images(self.loaded, "test"))["distance"])
            self._refs["copies"] = (search, heldout)
        return self._refs["copies"]

    def modes(self):
        """The 2D mixture's mode centres and standard deviation."""
        return data.mixture_modes(self.base)

    def confusion(self, n_classes: int) -> torch.Tensor | None:
        """The classifier's confusion on the held-out split (None without labelled held-out images)."""
        if "confusion" not in self._refs:
            test = self.ref("test") if self.has_test else {}
            self._refs["confusion"] = None if "labels" not in test or "logits" not in test else \
                collapse.confusion_matrix(test["labels"], test["logits"], n_classes)
        return self._refs["confusion"]

    def protocol(self, n: int) -> Protocol:
        """What the names of an evaluation of n samples are built from."""
        return Protocol(n, self.extractor.name, self.base, self.kind, self.ref("train")["n"])

    def primary(self, n: int) -> str:
        """What picks the best checkpoint and a study's objective: FID, except for the 2D mixtures,
        which exist to show modes (VEEGAN, PacGAN) and which a Gaussian fit cannot see."""
        return METRICS["mode_quality" if self.kind == "points" else "fid"].logged_name(self.protocol(n))

    # -- evaluation
    def evaluate(self, samples: torch.Tensor, full: bool = True) -> Result:
        """Every registered metric that applies: full=False (during training) those not marked
        full_only (FID, IS, the collapse check); full=True all of them, their sampling intervals,
        the memorization check and the figures. A set of samples has no order: they are put in a
        canonical order first, so every split, subset and resample is the same for any shuffle."""
        samples = check_samples(samples, self.kind, self.shape)
        n = len(samples)
        if n < MIN_SAMPLES:
            raise DataError(f"got {n} samples: {min_samples_reason()}")
        samples = samples[canonical_order(samples)]
        inp = Inputs(self, samples, self.extractor(samples), full)
        values: dict[str, float] = {}
        for metric in list(METRICS.values()):
            if metric.compute is None or (metric.full_only and not full):
                continue
            values.update(inp.computed(metric))
        checks = {"mode_collapse": self.collapse_check(inp)}
        figs: dict = {}
        if full:
            for metric in list(METRICS.values()):
                name = metric.logged_name(inp)
                if metric.interval is not None and name in values:
                    values.update(zip(interval_names(name), clip(name, *metric.interval(inp, values[name]))))
            checks["memorization"] = measures.memorization_check(inp)
            figs = self.figures(inp)
        return Result({k: float(v) for k, v in values.items()}, checks, figs, self.primary(n))

    def collapse_check(self, inp: Inputs) -> dict:
        found = measures.collapse_result(inp)
        if found is None:
            return {"flagged": False, "modes_covered": None, "modes_total": None,
                    "note": "no class labels for this extractor: not checked"}
        return found

    def figures(self, inp: Inputs) -> dict:
        figs = {}
        found = measures.collapse_result(inp)
        if found is not None and "per_mode" in found:
            figs["modes"] = plots.mode_figure(found, inp.samples, self.modes()[0])
        elif found is not None:
            figs["modes"] = plots.class_figure(found, self.spec.classes)
        mem = measures.memorization_result(inp)
        if mem is not None and self.kind != "points":
            figs["nn_grid"] = plots.nn_figure(inp.samples, stats.real_images(self.loaded, "train"), mem["nn_index"],
                                              self.shape[-1], matched=mem["found"]["index"])
        return figs


def canonical_order(samples: torch.Tensor) -> torch.Tensor:
    """A permutation that sorts samples by their content (a hash of each one's bytes): the same
    set in any order comes out in the same order."""
    rows = samples.detach().contiguous().cpu().flatten(1).numpy()
    keys = [hashlib.blake2b(r.tobytes(), digest_size=8).digest() for r in rows]
    return torch.tensor(sorted(range(len(keys)), key=keys.__getitem__))


class Inputs(Protocol):
    """What a metric's `compute` sees: the samples, their features (and logits), the reference
    side (`ref`, `ctx`), the resampling weights of the intervals, and a cache for computations
    several metrics share. It is also the evaluation's Protocol, so `inp.name(key)` names a value."""

    def __init__(self, ctx: Context, samples: torch.Tensor, out: dict, full: bool):
        proto = ctx.protocol(len(samples))
        super().__init__(proto.n, proto.extractor, proto.dataset, proto.kind, proto.n_ref)
        object.__setattr__(self, "_state", {"ctx": ctx, "samples": samples, "out": out, "full": full, "cache": {},
                                            "values": {}})

    ctx = property(lambda self: self._state["ctx"])
    samples = property(lambda self: self._state["samples"])
    features = property(lambda self: self._state["out"]["features"])
    logits = property(lambda self: self._state["out"].get("logits"))
    full = property(lambda self: self._state["full"])
    ref = property(lambda self: self.ctx.ref("train"))

    @property
    def weights(self) -> torch.Tensor:
        """One set of bootstrap resampling weights serves every interval of the evaluation."""
        return self.cached("weights", lambda: bootstrap.weights(self.n))

    def cached(self, key: str, compute):
        cache = self._state["cache"]
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def computed(self, metric: Metric) -> dict[str, float]:
        """The metric's logged values for these inputs ({} where it does not apply), computed once."""
        done = self._state["values"]
        if metric.key not in done:
            value = metric.compute(self)
            done[metric.key] = {} if value is None else value if isinstance(value, dict) else \
                {metric.logged_name(self): value}
        return done[metric.key]

    def value(self, key: str) -> float:
        """Another metric's value (computed now if it was not yet), e.g. FID for MiFID."""
        metric = METRICS[key]
        return self.computed(metric)[metric.logged_name(self)]
