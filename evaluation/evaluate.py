"""One entry point for evaluation: samples -> features -> statistics -> metrics and checks.

    python -m suite evaluate --samples samples.npy --dataset fashion_mnist --json
    python -m suite evaluate RUN_ID --checkpoint best --n 10000

`Context` loads the reference side once (real features and statistics from the cache, k-NN
radii, pixels for the memorization check) and then evaluates any number of sample sets:
those of a training run as it goes, a finished run's checkpoint, or a file from any model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluation import collapse, features, fid, isc, kid, memorization, prdc, stats
from evaluation.defaults import DEFAULTS, metric_name
from evaluation.neighbours import kth_radius
from suite import checkpoint, data, images
from suite.errors import ConfigError, DataError


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


def sample_format(dataset: str) -> tuple[str, str, tuple[int, ...]]:
    """(reference dataset, kind, shape of one sample) — enough to validate samples before any
    feature network is built or trained."""
    data.get_spec(dataset)
    base = "fashion_mnist" if dataset == "fashion_unpaired" else dataset
    spec = data.get_spec(base)
    size = spec.native_size
    return base, spec.kind, (2,) if spec.kind == "points" else (spec.channels, size, size)


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

    def names(self, n: int) -> dict[str, str]:
        ext, ds = self.extractor.name, self.base
        train_n = self.ref("train")["n"]
        return {
            "fid": metric_name("fid", n, ext, ds, "train"),
            "kid": metric_name("kid", n, ext, ds, "train"),
            "kid_std": metric_name("kid", n, ext, ds, "train") + "_std",
            "is": metric_name("is", n, ext, ds),
            "is_std": metric_name("is", n, ext, ds) + "_std",
            **{m: metric_name(m, n, ext, ds, "train", min(n, train_n)) for m in ("precision", "recall", "density",
                                                                                  "coverage")},
            "modes_covered": metric_name("modes_covered", n, ext if self.kind != "points" else "points", ds),
            "mode_kl": metric_name("mode_kl", n, ext if self.kind != "points" else "points", ds),
        }

    # -- evaluation
    def evaluate(self, samples: torch.Tensor, full: bool = True) -> Result:
        """full=False (during training): FID, IS and the collapse check. full=True adds KID,
        precision/recall/density/coverage, the memorization checks and the figures."""
        samples = check_samples(samples, self.kind, self.shape)
        n = len(samples)
        names = self.names(n)
        out = self.extractor(samples)
        gen_f = out["features"]
        ref = self.ref("train")
        metrics = {names["fid"]: fid.frechet_distance(*fid.statistics(gen_f), ref["mu"], ref["sigma"])}
        if full and n >= 2:  # 100 kernel subsets: at the end of a run, not at every evaluation
            k_mean, k_std = kid.kid(gen_f, ref["features"])
            metrics.update({names["kid"]: k_mean, names["kid_std"]: k_std})
        checks: dict[str, dict] = {}
        figs: dict = {}
        if self.kind == "points":
            modes, std = data.mixture_modes(self.base)
            mc = collapse.mixture_modes(samples, modes, std)
            metrics[names["modes_covered"]] = mc["modes_covered"]
            metrics[names["mode_kl"]] = mc["kl_to_uniform"]
            metrics[metric_name("hq_share", n, "points", self.base)] = mc["high_quality_share"]
            total = max(sum(mc["per_mode"]), 1)
            metrics.update({f"mode_share/{i:02d}": c / total for i, c in enumerate(mc["per_mode"])})
            checks["mode_collapse"] = mc
            if full:
                figs["modes"] = mode_figure(mc, samples, modes)
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
                    figs["modes"] = class_figure(ch, self.spec.classes)
        if "mode_collapse" not in checks:
            checks["mode_collapse"] = {"flagged": False, "modes_covered": None, "modes_total": None,
                                       "note": "no class labels for this extractor: not checked"}
        if full:
            real_sub, radii = self.real_radii(min(n, ref["n"]))
            pr = prdc.prdc(gen_f, real_sub, real_radii=radii)
            metrics.update({names[k]: v for k, v in pr.items()})
            mem, figs_mem = self.memorization(samples, gen_f, metrics[names["fid"]], n)
            metrics.update(mem.pop("_metrics"))
            checks["memorization"] = mem
            figs.update(figs_mem)
        metrics = {k: float(v) for k, v in metrics.items()}
        return Result(metrics, checks, figs, names["fid"])

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
        ct = memorization.ct_statistic(self.ref("train")["features"], self.ref("test")["features"], gen_f,
                                       self.test_nn("features"), ft_d[:, 0])
        mi = memorization.mifid(fid_value, gen_f, self.ref("train")["features"])
        flagged = (max(px["near_copy_share"], ft["near_copy_share"]) > DEFAULTS["near_copy_flag"]
                   or (not math.isnan(ct) and ct < DEFAULTS["ct_flag"]))
        space = "points" if self.kind == "points" else "pixels"
        m = {
            metric_name("nn_ratio", n, space, ds, "train"): px["nn_ratio"],
            metric_name("near_copies", n, space, ds, "train"): px["near_copy_share"],
            metric_name("nn_ratio", n, ext, ds, "train"): ft["nn_ratio"],
            metric_name("near_copies", n, ext, ds, "train"): ft["near_copy_share"],
            metric_name("ct", n, ext, ds, "train"): ct,
            metric_name("mifid", n, ext, ds, "train"): mi,
        }
        check = {"flagged": bool(flagged), "pixels": px, "features": ft, "ct": ct, "mifid": mi,
                 "near_copy_flag": DEFAULTS["near_copy_flag"], "ct_flag": DEFAULTS["ct_flag"], "_metrics": m}
        figs = {}
        if self.kind != "points":
            train_imgs = stats.real_images(self.loaded, "train")
            figs["nn_grid"] = nn_figure(samples, train_imgs, px_i, self.shape[-1])
        return check, figs


# --------------------------------------------------------------------------- inputs


def check_samples(x: torch.Tensor, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Validate and normalise samples: float in [-1, 1], N x C x H x W (or N x 2 points)."""
    if not torch.is_tensor(x):
        raise DataError("samples must be an array or tensor")
    if x.numel() == 0 or len(x) == 0:
        raise DataError("samples are empty")
    if x.dtype == torch.uint8:
        x = x.float().div(127.5).sub(1)
    elif x.is_floating_point():
        x = x.float()
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum()) if x.dim() > 1 else 1
            raise DataError(f"samples contain NaN or inf values ({bad} of {len(x)} samples)")
    else:
        raise DataError(f"samples must be uint8 (0-255) or float in [-1, 1], got {x.dtype}")
    if kind == "points":
        if x.dim() != 2 or x.shape[1] != 2:
            raise DataError(f"2D mixture samples must be N x 2, got shape {tuple(x.shape)}")
        return x
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise DataError(f"image samples must be N x H x W or N x C x H x W, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # N x H x W x C
    if x.shape[1] != shape[0]:
        raise DataError(f"samples have {x.shape[1]} channels, the dataset's images have {shape[0]}")
    if min(x.shape[-2:]) < 4:
        raise DataError(f"samples are {x.shape[-2]}x{x.shape[-1]} pixels: too small to be images")
    if x.min() < -1.001 or x.max() > 1.001:
        raise DataError(f"float samples must lie in [-1, 1]; got values in [{x.min():.3g}, {x.max():.3g}]")
    return x.clamp(-1, 1)


def load_samples(path: str | Path) -> torch.Tensor:
    """.npy / .pt array or tensor, or a folder of images."""
    import numpy as np

    path = Path(path)
    if path.is_dir():
        files = data.image_files(path)
        if not files:
            raise DataError(f"no images in folder {path}")
        from PIL import Image

        arrays = []
        for f in files:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB")))
        try:
            x = np.stack(arrays)
        except ValueError:
            raise DataError(f"images in {path} have different sizes") from None
        return torch.from_numpy(x.copy())
    if not path.is_file():
        raise DataError(f"samples file {path} does not exist")
    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False).copy())
        if path.suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and "samples" in obj:
                obj = obj["samples"]
            if not torch.is_tensor(obj):
                raise DataError(f"{path} holds a {type(obj).__name__}, not a tensor of samples")
            return obj
    except (ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        if checkpoint.refused_pickle(e):
            raise DataError(f"{path} holds Python objects besides tensors; refused (loaded with weights_only=True; "
                            "save a plain tensor or a .npy array)") from None
        raise DataError(f"cannot read samples from {path}: {str(e).splitlines()[0][:120]}") from None
    raise DataError(f"unsupported samples file {path.name}: use .npy, .pt or a folder of images")


# --------------------------------------------------------------------------- figures


def nn_figure(samples: torch.Tensor, train: torch.Tensor, idx: torch.Tensor, size: int, rows: int = 8):
    """The GAN paper's rightmost column: each generated sample beside its nearest training images."""
    g = features.prepare_images(samples[:rows], size)
    cols = [g] + [train[idx[:rows, j]] for j in range(idx.shape[1])]
    tiles = torch.stack(cols, 1).flatten(0, 1)
    return images.grid(tiles, nrow=len(cols), min_side=64)


def class_figure(ch: dict, classes) -> "np.ndarray":  # noqa: F821
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(ch["class_histogram"])
    labels = list(classes) if classes and len(classes) == k else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = torch.arange(k).numpy()
    ax.bar(xs - 0.2, ch["data_histogram"], 0.4, label="data", color="tab:gray")
    ax.bar(xs + 0.2, ch["class_histogram"], 0.4, label="generated", color="tab:blue")
    ax.set_xticks(xs, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of samples")
    ax.set_title(f"classes covered {ch['modes_covered']}/{ch['modes_total']}, KL to data {ch['kl_to_data']:.3f}",
                 fontsize=9)
    ax.legend(fontsize=7)
    try:
        return images.figure_to_array(fig)
    finally:
        plt.close(fig)


def mode_figure(mc: dict, points: torch.Tensor, modes: torch.Tensor):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    k = len(mc["per_mode"])
    ax.bar(range(k), mc["per_mode"], color="tab:blue")
    ax.axhline(math.ceil(DEFAULTS["mode_min_share"] * len(points)), color="tab:red", ls="--", lw=1,
               label="counts as covered")
    ax.set_xlabel("mode")
    ax.set_ylabel("high-quality samples")
    ax.set_title(f"modes covered {mc['modes_covered']}/{k}, high quality {mc['high_quality_share']:.1%}", fontsize=9)
    ax.legend(fontsize=7)
    try:
        return images.figure_to_array(fig)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- during training


class TrainingEvaluator:
    """What the harness calls every `eval_every` steps and at the end (full checks then)."""

    mode = "min"

    def __init__(self, dataset: str, n: int, options: Options, seed: int):
        self.n, self.seed = n, seed
        self.ctx = Context.shared(dataset, options)  # reference statistics now: errors surface before training
        self.primary = self.ctx.names(n)["fid"]

    def samples(self, trainer) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)  # the same latents at every evaluation
        return trainer.generate(self.n, g)

    def __call__(self, trainer, step: int, tracker=None, final: bool = False) -> dict[str, float]:
        result = self.ctx.evaluate(self.samples(trainer), full=final)
        if tracker is not None and final:
            log_result(tracker, result, step, "final")
        return result.metrics


class TranslationEvaluator:
    """CycleGAN on fashion_unpaired: B is a known restyle of A, so translations have ground truth.
    Metrics: FID of B->A translations against real A (domain classifier), label preservation
    of both directions under the A-domain classifier, L1 to the true translation, cycle L1."""

    mode = "min"

    def __init__(self, loaded: data.Loaded, n: int, options: Options):
        self.loaded, self.options = loaded, options
        test = loaded.test
        self.n = min(n, len(test.a), len(test.b))
        self.a, self.ya = test.a.x[: self.n], test.a.y[: self.n]
        self.b, self.yb = test.b.x[: self.n], test.b.y[: self.n]
        self.ctx = Context.shared("fashion_mnist", options)
        self.primary = metric_name("fid", self.n, "lenet", "fashion_mnist", "train") + "_btoa"

    def __call__(self, trainer, step: int, tracker=None, final: bool = False) -> dict[str, float]:
        size = trainer.cfg.image_size
        a, b = data.resize(self.a, size), data.resize(self.b, size)
        fake_b, fake_a = trainer.translate(a, "AtoB"), trainer.translate(b, "BtoA")
        rec_a = trainer.translate(fake_b, "BtoA")
        ext = self.ctx.extractor
        to28 = lambda x: features.prepare_images(x, 28)  # noqa: E731
        logits_ab = ext(data.unrestyle(fake_b))["logits"]
        logits_ba = ext(fake_a)["logits"]
        ref = self.ctx.ref("train")
        fid_ba = fid.frechet_distance(*fid.statistics(ext(fake_a)["features"]), ref["mu"], ref["sigma"])
        n = self.n
        m = {
            self.primary: fid_ba,
            f"label_acc{n}_lenet_atob": float((logits_ab.argmax(1) == self.ya).float().mean()),
            f"label_acc{n}_lenet_btoa": float((logits_ba.argmax(1) == self.yb).float().mean()),
            f"l1_to_truth{n}_atob": float((to28(fake_b) - to28(data.restyle(a))).abs().mean()),
            f"l1_to_truth{n}_btoa": float((to28(fake_a) - to28(data.unrestyle(b))).abs().mean()),
            f"cycle_l1{n}_a": float((rec_a - a).abs().mean()),
        }
        if tracker is not None and final:
            rows = torch.stack([a[:8], fake_b[:8], rec_a[:8]], 1).flatten(0, 1)
            tracker.log_image(images.grid(rows, nrow=3, min_side=64), "eval/translations_atob.png")
        return m


def training_evaluator(p):
    """Evaluator for a prepared run (suite.harness.Prepared), or None when none applies here."""
    n = p.cfg.eval_n or DEFAULTS["n"]
    opts = Options(n=n, device=str(p.device), data_root=p.data_root)
    try:
        base, _, _ = sample_format(p.cfg.dataset)
        if features.default_for(base) == "inception":
            features.inception_weights_path()  # before loading a large dataset for nothing
        if p.loaded.kind == "unpaired":
            if p.cfg.dataset != "fashion_unpaired":
                features.inception_weights_path()  # horse2zebra: Inception FID only
                return None  # translation FID with Inception is left to `suite evaluate`
            return TranslationEvaluator(p.loaded, n, opts)
        return TrainingEvaluator(p.cfg.dataset, n, opts, seed=DEFAULTS["seed"])
    except ConfigError as e:
        print(f"warning: evaluation skipped: {e}", file=sys.stderr, flush=True)
        return None


def log_result(tracker, result: Result, step: int, tag: str) -> None:
    tracker.log_text(json.dumps({"step": step, **result.to_json()}, indent=2, default=float), f"eval/result_{tag}.json")
    for name, fig in result.figures.items():
        tracker.log_image(fig, f"eval/{name}.png")
    tracker.set_tags({"suite.mode_collapse": str(result.checks["mode_collapse"]["flagged"]),
                      "suite.memorization": str(result.checks.get("memorization", {}).get("flagged", "not checked"))})


# --------------------------------------------------------------------------- finished runs


def evaluate_run(run_id: str, which: str = "best", n: int | None = None, device: str = "cpu") -> dict:
    """Evaluate a finished run's best or last checkpoint and log the result to that run."""
    from recipes import registry
    from suite import harness, paths
    from suite.errors import CheckpointError
    from suite.tracking import Tracker

    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, got '{which}'")
    tracker = Tracker.attach(run_id)
    saved = tracker.config()
    cfg = registry.config_from_dict(saved["family"], saved["config"])
    if n:
        cfg = dataclasses.replace(cfg, eval_n=n)
    p = harness.prepare(saved["recipe"], cfg, device)
    local = paths.run_dir(run_id) / "checkpoints" / f"{which}.pt"
    if local.is_file():
        state = checkpoint.load(local)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = tracker.download(f"checkpoints/{which}.pt", Path(tmp))
            if path is None:
                raise CheckpointError(f"run {run_id} has no checkpoints/{which}.pt")
            state = checkpoint.load(path)
    trainer = harness.build_trainer(p)
    trainer.load_state_dict(state["trainer"])
    evaluator = training_evaluator(p)
    if evaluator is None:
        raise ConfigError(f"no evaluator applies to run {run_id} on this machine")
    step = trainer.step
    metrics = evaluator(trainer, step, tracker, final=True)
    tracker.log_metrics(step, metrics)
    tracker.flush(wait=True)
    out = {"run_id": run_id, "checkpoint": which, "step": step, "metrics": metrics}
    tracker.log_text(json.dumps(out, indent=2), f"eval/{which}_step{step:06d}.json")
    return out
