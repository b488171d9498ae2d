"""The suite from Python: the functions the CLI calls, for notebooks and scripts.

    from suite import api
    run = api.run("gan_ring8", max_steps=300, lr_g=1e-4)          # trains, logs to MLflow
    api.evaluate("samples/", reference="real/", extractor="pixels") # {protocol-named metric: value}
    board, pairs = api.benchmark(["wgan_fashion", "dcgan_fashion"], seeds=3, max_steps=200)
    G = api.load_generator(run.run_id)                              # sample from a trained run
    api.runs("gan_ring8")                                           # the runs as a DataFrame

Inside a host process (a Jupyter kernel, pytest) every call restores the signal handlers it set
and hands a stop back to the host (an interrupt stops a run politely: checkpoint, KILLED,
resumable, then KeyboardInterrupt), never calls os._exit, and creates no MLflow run it was not
asked for (`evaluate` logs nothing).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation import classifier, samples
from evaluation import metrics as metric_table
from evaluation.defaults import DEFAULTS
from evaluation.evaluate import MIN_SAMPLES, Context, Options, Result, min_samples_reason
from recipes import registry
from suite import benchmark as bench
from suite import catalog, data, harness, plugins, run_setup, stored
from suite.data import prepared
from suite.core import checkpoint, ranks, tracking
from suite.core.errors import ConfigError, DataError, PluginError
from suite.evaluate_run import evaluate_run
from suite.tune import space as tune_space
from suite.tune import spec as tune_spec
from suite.tune import study as tune_study

__all__ = ["RunResult", "benchmark", "evaluate", "evaluate_run", "list_recipes", "load_generator", "load_plugins", "prepare",
           "run", "runs", "show", "train_classifier", "tune"]


def load_plugins(specs: Iterable[str] = ()) -> list[dict]:
    """Installed plugins, SUITE_PLUGINS and `specs` (files or modules), each loaded once per process."""
    return plugins.load_all(list(specs))


# --------------------------------------------------------------------------- recipes and runs


def list_recipes():
    """The named recipes as a DataFrame: recipe, family, dataset, size, scale, summary, plugin."""
    import pandas as pd  # heavy-ish: only the table needs it

    return pd.DataFrame(catalog.rows(), columns=list(catalog.COLUMNS))


def show(recipe: str, seed: int | None = None, max_steps: int | None = None, **overrides) -> dict:
    """The fully resolved config of a recipe (what `suite show` prints and a run stores)."""
    cfg = run_setup.resolve_config(recipe, overrides, seed, max_steps)
    return {"recipe": recipe, "family": registry.get(recipe).family, "config": dataclasses.asdict(cfg)}


@dataclass
class RunResult:
    run_id: str
    status: str | None  # None on the ranks other than 0 of a several-process run (they read no store)
    metrics: dict[str, float]  # the run's latest value of every metric it logged


def run(recipe_or_spec: str | None = None, *, resume: str | None = None, seed: int | None = None,
        max_steps: int | None = None, device: str = "cpu", data_root: str | None = None, download: bool = False,
        evaluate: bool = True, progress: bool | None = None, allow_changed_plugin: bool = False,
        **overrides) -> RunResult:
    """Train a recipe (`"gan_ring8"`, or a benchmark spec `"gan_ring8:lr_g=1e-3"`), or resume a run.
    Keyword overrides are config fields (`lr_g=1e-4`), checked like `--set`."""
    recipe, spec_overrides = bench.parse_spec(recipe_or_spec) if recipe_or_spec else (None, {})
    if not recipe and not resume:
        raise ConfigError("run needs a RECIPE (see `python -m suite list`) or resume=RUN_ID")
    if recipe and resume:
        raise ConfigError("give either a RECIPE or resume=RUN_ID, not both")
    req = run_setup.RunRequest(recipe=recipe, overrides={**spec_overrides, **overrides}, seed=seed, device=device,
                               max_steps=max_steps, data_root=data_root, download=download, resume=resume,
                               evaluate=evaluate, progress=progress, allow_changed_plugin=allow_changed_plugin)
    if ranks.launched():  # one of torchrun's processes (suite/core/ranks.py)
        ranks.join(device)
    run_id = harness.train(req)
    if ranks.follower():  # rank 0 alone reads and writes the store
        return RunResult(run_id, None, {})
    info = tracking.get_run(run_id)
    return RunResult(run_id, info.info.status, dict(info.data.metrics))


def runs(experiment: str | None = None, filter_string: str = ""):
    """Runs of one experiment (a recipe name, `benchmarks`, ...) or of all, as a pandas DataFrame
    (`params.*`, `metrics.*`, `tags.*` columns, as mlflow.search_runs gives them)."""
    c = tracking.client()
    if experiment is None:
        ids = [e.experiment_id for e in c.search_experiments()]
    else:
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            raise ConfigError(f"no experiment named '{experiment}' (experiments are recipe names)")
        ids = [exp.experiment_id]
    return tracking.runs_frame(ids, filter_string)


class Generator:
    """A trained run's generator, ready to sample: `G.sample(n, seed)` gives n samples in data space."""

    def __init__(self, trainer, run_id: str, which: str):
        self.trainer, self.run_id, self.checkpoint = trainer, run_id, which
        self.module = trainer.modules["G"] if "G" in trainer.modules else trainer.modules[sorted(trainer.modules)[0]]

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        return self.trainer.generate(n, torch.Generator().manual_seed(seed))

    def noise(self, n: int, seed: int = 0) -> torch.Tensor:
        return self.trainer.noise(n, torch.Generator().manual_seed(seed))


def load_generator(run_id: str, checkpoint: str = "best", device: str = "cpu") -> Generator:
    """The generator of a run's best or last checkpoint (weights loaded with weights_only=True)."""
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint must be best or last, got '{checkpoint}'")
    tracker = tracking.Tracker.attach(run_id)
    saved = stored.training_config(tracker)
    p = run_setup.prepare(saved["recipe"], stored.rebuild_config(saved), device)
    state = stored.stored_checkpoint(tracker, checkpoint, f"checkpoints/{checkpoint}.pt")
    trainer = run_setup.build_trainer(p)
    trainer.load_state_dict(state["trainer"])
    return Generator(trainer, run_id, checkpoint)


# --------------------------------------------------------------------------- evaluating anything


def _as_samples(x, what: str, value_range: str | None, kind: str, shape: tuple | None) -> torch.Tensor:
    """A folder of images (read in [-1, 1] by their modes), a .npy / .pt file, an array or a
    tensor (mapped from `value_range`, once its shape is known to be right) -> samples."""
    if isinstance(x, (str, Path)) and Path(x).is_dir():
        return samples.load_samples(x)
    x = _as_array(x, what)
    if kind != "points":  # 2D points have no pixel range
        samples.check_layout(x, kind, shape or samples.image_shape(x))
        x = samples.as_range(x, value_range, what)
    return x


def _as_array(x, what: str) -> torch.Tensor:
    if isinstance(x, (str, Path)):
        return samples.load_samples(x)
    if isinstance(x, np.ndarray):
        if x.dtype.fields is not None or x.dtype == object:
            raise DataError(f"{what}: a structured or object array holds no samples")
        return torch.from_numpy(np.ascontiguousarray(x))
    if torch.is_tensor(x):
        return x.detach().cpu()
    raise DataError(f"{what}: give a folder, a .npy / .pt file, an array or a tensor, not {type(x).__name__}")


def sample_generator(generator: str, weights: str | None, n: int, latent_dim: int | None = None,
                     device: str = "cpu", seed: int = DEFAULTS["seed"], batch: int = 250) -> torch.Tensor:
    """n samples of a user's generator: `FILE.py:callable` returns an nn.Module mapping latents
    N x latent_dim (N(0, I); the module's `latent_dim` attribute, or the one given) to images in
    [-1, 1]. Its weights come from `weights`, loaded with weights_only=True (tensors only)."""
    path, sep, name = generator.rpartition(":")
    if not sep or not path.endswith(".py") or not name:
        raise ConfigError(f"--generator {generator}: expected FILE.py:callable")
    module = plugins.load_module(path)
    build = getattr(module, name, None)
    if not callable(build):
        raise PluginError(f"--generator {generator}: {path} has no callable '{name}'")
    try:
        net = build()
    except Exception as e:  # noqa: BLE001 - the user's code: its last line
        raise PluginError(f"--generator {generator}: {name}() raised {type(e).__name__}: {e}") from None
    if not isinstance(net, torch.nn.Module):
        raise PluginError(f"--generator {generator}: {name}() returned a {type(net).__name__}, not an nn.Module")
    if weights:
        state = checkpoint.load(Path(weights))
        state = state.get("state_dict", state.get("generator", state)) if isinstance(state, dict) else state
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise PluginError(f"--weights {weights} do not fit {name}(): {str(e).splitlines()[0][:160]}") from None
    dim = latent_dim or getattr(net, "latent_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"--generator {generator}: say the latent size (--latent-dim, or a `latent_dim` attribute)")
    net = net.to(device).eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, n, batch):
            z = torch.randn(min(batch, n - i), dim, generator=g).to(device)
            try:
                out.append(net(z).float().cpu())
            except Exception as e:  # noqa: BLE001 - the user's forward
                raise PluginError(f"--generator {generator}: forward on latents {tuple(z.shape)} raised "
                                  f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    return torch.cat(out)


def evaluation_result(generated, reference=None, *, dataset: str | None = None, n: int | None = None,
                      extractor: str | None = None, device: str = "cpu", data_root: str | None = None,
                      reference_name: str | None = None, inception_weights: str | None = None,
                      value_range: str | None = None, full: bool = True) -> Result:
    """The whole evaluation (metrics, checks, figures) of `generated` against a registered
    dataset or any reference set (folder, file, array, tensor)."""
    if (reference is None) == (dataset is None):
        raise ConfigError("give the reference set (--reference) or a registered --dataset, exactly one")
    if n is not None and n < 1:
        raise ConfigError(f"--n must be a positive number of samples, got {n}")
    if reference is not None:
        ref = _as_samples(reference, "reference", value_range, "image", None)
        ref = samples.check_samples(ref, "image", samples.image_shape(ref))
        if len(ref) < MIN_SAMPLES:
            raise ConfigError(f"the reference holds {len(ref)} images: {min_samples_reason()}")
        dataset = data.in_memory_reference(ref, reference_name).name
    _, kind, shape = samples.sample_format(dataset)
    x = _as_samples(generated, "generated samples", value_range, kind, shape)
    if n:
        x = x[:n]
    samples.check_samples(x, kind, shape)  # before a feature network is built or trained
    if len(x) < MIN_SAMPLES:
        raise ConfigError(f"the generated set holds {len(x)} samples: {min_samples_reason()}")
    opts = Options(n=len(x), extractor=extractor, device=device, data_root=data_root,
                   inception_weights=inception_weights)
    return Context.shared(dataset, opts).evaluate(x, full=full)


def evaluate(generated, reference=None, *, dataset: str | None = None, metrics: Iterable[str] | None = None,
             extractor: str | None = None, n: int | None = None, device: str = "cpu", **options) -> dict[str, float]:
    """Metrics of generated samples against a reference, as one flat dict of protocol-named values
    (torch-fidelity's `calculate_metrics` shape), e.g. {"fid2k_pixels_ref-1a2b3c4d_train": ...}.
    `metrics` keeps only those keys ("fid", "kid", "recall", a plugin's). Nothing is logged."""
    result = evaluation_result(generated, reference, dataset=dataset, n=n, extractor=extractor, device=device,
                               **options)
    if metrics is None:
        return result.metrics
    wanted = set(metrics)
    unknown = wanted - set(metric_table.METRICS)
    if unknown:
        raise ConfigError(f"unknown metric {', '.join(sorted(unknown))}; known: {', '.join(sorted(metric_table.METRICS))}")
    return {k: v for k, v in result.metrics.items()
            if (m := metric_table.lookup(k.removesuffix("_std"))) is not None and m.key in wanted}


# --------------------------------------------------------------------------- studies and benchmarks


def tune(recipe: str, trials: int = tune_spec.StudySpec.trials, params: str | None = None,
         max_steps: int | None = None, overrides: dict | None = None, **options) -> dict:
    """An Optuna study of a recipe's learning rates (each trial an MLflow run); its summary."""
    cfg = run_setup.resolve_config(recipe, overrides or {}, max_steps=max_steps)
    spec = tune_spec.StudySpec(recipe=recipe, trials=trials, params=tune_space.parse_space(params, cfg),
                               overrides=dict(overrides or {}), max_steps=max_steps, **options)
    return tune_study.tune(spec)


@dataclass
class BenchmarkResult:
    leaderboard: object  # pandas DataFrame: spec, dataset, metric, at, n, mean, std, ci_low, ci_high, ...
    comparisons: object  # pandas DataFrame: a, b, metric, diff, ci_low, ci_high, p_value, p_holm, verdict, ...
    raw: dict  # what `suite benchmark --json` prints

    def __iter__(self):  # board, pairs = api.benchmark(...)
        return iter((self.leaderboard, self.comparisons))


def benchmark(specs: list[str], seeds: int = bench.BenchmarkSpec.seeds, **options) -> BenchmarkResult:
    """Every spec x seed trained (finished cells reused), the leaderboard and paired verdicts."""
    import pandas as pd  # heavy-ish: only the tables need it

    out = bench.benchmark(bench.BenchmarkSpec(specs=list(specs), seeds=seeds, **options))
    return BenchmarkResult(pd.DataFrame(out["rows"]), pd.DataFrame(out["comparisons"]), out)


def prepare(dataset: str, size: int = 0, data_root=None, download: bool = False, workers: int = -1,
            progress: bool = True) -> dict:
    """Decode a file-backed dataset once at `size` (its native size if 0) into SUITE_HOME/prepared,
    through the transform a run applies; returns the manifest and the file's path."""
    size = size or data.get_spec(dataset).native_size
    loaded = data.load(dataset, data_root=data_root, download=download, image_size=size, prepared=False)
    path = prepared.prepare(dataset, size, loaded, data_root, run_setup.loader_workers(workers), progress)
    return {"path": str(path), **json.loads(path.with_name(path.name + ".json").read_text())}


def train_classifier(dataset: str) -> dict:
    """Train (once, cached) the domain classifier of `dataset` and log it as a run of the
    `classifiers` experiment (asked for: evaluation itself never logs)."""
    _, meta = classifier.load_or_train(dataset)
    name = f"{dataset}-{meta['weights_hash']}"
    if not tracking.find_runs(f"tags.`suite.classifier` = '{dataset}' and attributes.run_name = '{name}'"):
        params = {"dataset": dataset, "arch": classifier.ARCH, **{f"train.{k}": v for k, v in classifier.TRAIN.items()}}
        tracker = tracking.Tracker.create("classifiers", name, params,
                                          {"suite.classifier": dataset, "suite.dataset": dataset}, meta)
        tracker.log_metrics(0, {"test_accuracy": meta["test_accuracy"], "train_seconds": meta["seconds"]})
        tracker.log_artifact(classifier.cache_path(dataset, meta["weights_hash"]), "classifier")
        tracker.finish("FINISHED")
    return {k: meta[k] for k in ("dataset", "arch", "test_accuracy", "weights_hash")}
