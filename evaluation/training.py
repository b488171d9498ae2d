"""Evaluators a training run calls every `eval_every` steps and at the end (full checks then).

The harness asks an evaluator for its inputs, hands them to the trainer's `eval_samples`, and
passes what comes back here: evaluation only ever receives samples, never a trainer or a run.
"""

from __future__ import annotations

import sys

import torch

from evaluation import features, fid
from evaluation.defaults import DEFAULTS
from evaluation.evaluate import Context, Options, Result
from evaluation.metrics import metric_name
from evaluation.samples import sample_format
from suite import data
from suite.core import images
from suite.core.errors import ConfigError


class TrainingEvaluator:
    """Generated samples of one dataset, judged by `Context.evaluate`."""

    def __init__(self, dataset: str, n: int, options: Options, seed: int):
        self.n, self.seed = n, seed
        self.ctx = Context.shared(dataset, options)  # reference statistics now: errors surface before training
        self.primary = self.ctx.primary(n)

    def inputs(self, image_size: int) -> None:
        return None  # the same latents at every evaluation come from `seed`

    def __call__(self, samples: torch.Tensor, final: bool = False) -> Result:
        if self.ctx.kind == "points" or not torch.isfinite(samples).all():  # NaN / inf: refused by the context
            return self.ctx.evaluate(samples, full=final)
        # A generator with an unbounded output is judged as a person sees its images: clipped to
        # the data range (8-bit pixels). How much was clipped is logged, never hidden.
        clipped = float(((samples < -1) | (samples > 1)).float().mean())
        result = self.ctx.evaluate(samples.clamp(-1, 1), full=final)
        result.metrics[metric_name("clipped", self.n, "pixels", self.ctx.base)] = clipped
        return result


class TranslationEvaluator:
    """Translations of a pair whose B is a known restyle of A (fashion_unpaired), so they have
    ground truth. Metrics: FID of B->A translations against real A (domain classifier), label
    preservation of both directions under the A-domain classifier, L1 to the true translation,
    cycle L1."""

    seed = DEFAULTS["seed"]

    def __init__(self, loaded: data.Loaded, n: int, options: Options):
        test = loaded.test
        self.n = min(n, len(test.a), len(test.b))
        self.a, self.ya = test.a.x[: self.n], test.a.y[: self.n]
        self.b, self.yb = test.b.x[: self.n], test.b.y[: self.n]
        reference = data.get_spec(loaded.name).reference
        self.ctx = Context.shared(reference, options)
        self.primary = metric_name("fid", self.n, "lenet", reference, "train") + "_btoa"

    def inputs(self, image_size: int) -> dict[str, torch.Tensor]:
        return {"a": data.resize(self.a, image_size), "b": data.resize(self.b, image_size)}

    def __call__(self, samples: dict[str, torch.Tensor], final: bool = False) -> Result:
        fake_b, fake_a, rec_a = samples["fake_b"], samples["fake_a"], samples["rec_a"]
        inputs = self.inputs(fake_b.shape[-1])
        a, b = inputs["a"], inputs["b"]
        ext = self.ctx.extractor
        to28 = lambda x: features.prepare_images(x, 28)  # noqa: E731
        logits_ab = ext(data.unrestyle(fake_b))["logits"]
        out_ba = ext(fake_a)  # one pass: its features give the FID, its logits the labels
        logits_ba = out_ba["logits"]
        ref = self.ctx.ref("train")
        fid_ba = fid.frechet_distance(*fid.statistics(out_ba["features"]), ref["mu"], ref["sigma"])
        n = self.n
        m = {
            self.primary: fid_ba,
            f"label_acc{n}_lenet_atob": float((logits_ab.argmax(1) == self.ya).float().mean()),
            f"label_acc{n}_lenet_btoa": float((logits_ba.argmax(1) == self.yb).float().mean()),
            f"l1_to_truth{n}_atob": float((to28(fake_b) - to28(data.restyle(a))).abs().mean()),
            f"l1_to_truth{n}_btoa": float((to28(fake_a) - to28(data.unrestyle(b))).abs().mean()),
            f"cycle_l1{n}_a": float((rec_a - a).abs().mean()),
        }
        figs = {}
        if final:
            rows = torch.stack([a[:8], fake_b[:8], rec_a[:8]], 1).flatten(0, 1)
            figs["translations_atob"] = images.grid(rows, nrow=3, min_side=64)
        return Result(m, {}, figs, self.primary)


def training_evaluator(dataset: str, loaded: data.Loaded, n: int = 0, device: str = "cpu",
                       data_root: str | None = None):
    """The evaluator of a run on `dataset`, or None (with a warning) when none applies here."""
    n = n or DEFAULTS["n"]
    opts = Options(n=n, device=device, data_root=data_root)
    try:
        base, _, _ = sample_format(dataset)
        if features.default_for(base) == "inception":
            features.inception_weights_path()  # before loading a large dataset for nothing
        if loaded.kind == "unpaired":
            if not loaded.meta.get("paired_truth"):
                features.inception_weights_path()  # horse2zebra: Inception FID only
                return None  # translation FID with Inception is left to `suite evaluate`
            return TranslationEvaluator(loaded, n, opts)
        return TrainingEvaluator(dataset, n, opts, seed=DEFAULTS["seed"])
    except ConfigError as e:
        print(f"warning: evaluation skipped: {e}", file=sys.stderr, flush=True)
        return None
