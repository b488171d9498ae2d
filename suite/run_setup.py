"""Run setup: what a run is asked to do (`RunRequest`), and its config, data, device and step
count checked and resolved before anything is logged (`prepare`), then its trainer and stream.

    python -m suite show dcgan_fashion --set eval_every=100    # the resolved config, nothing trained
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from evaluation.evaluate import MIN_SAMPLES, Result, min_samples_reason
from evaluation.training import training_evaluator
from recipes import registry
from recipes.base import Trainer
from recipes.config import BaseConfig
from suite import data
from suite.core import ranks
from suite.core.errors import ConfigError
from suite.core.tracking import Tracker
from suite.data import DataInfo

MAX_STEPS = 10**9  # generator iterations a run may be asked for: more is a typo (epochs=1e12), not a plan


class Evaluator(Protocol):
    """Judges samples of a trainer's current generator (see evaluation/training.py)."""

    primary: str  # metric that picks the best checkpoint (its direction: evaluation.metrics)
    n: int  # samples per evaluation
    seed: int  # of the latents, the same at every evaluation

    def inputs(self, image_size: int) -> dict | None: ...  # what a translating trainer translates

    def __call__(self, samples, final: bool) -> Result: ...


@dataclass
class RunRequest:
    recipe: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    seed: int | None = None
    device: str = "cpu"
    max_steps: int | None = None
    data_root: str | None = None
    download: bool = False
    resume: str | None = None
    progress: bool | None = None  # None: a bar on a terminal, plain lines otherwise
    evaluate: bool = True
    parent_run_id: str | None = None  # a study's or benchmark's parent run
    experiment: str | None = None  # default: the recipe's (a benchmark keeps its cells with its parent run)
    run_name: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    on_eval: Callable[[int, dict[str, float]], None] | None = None  # e.g. Optuna's report/prune
    on_start: Callable[[Tracker], None] | None = None  # called once the run exists
    allow_changed_plugin: bool = False  # resume although the family's plugin source changed


@dataclass
class Prepared:
    recipe: str
    family: str
    cfg: BaseConfig
    loaded: data.Loaded
    info: DataInfo
    device: torch.device
    data_root: str | None = None
    total: int = 0  # generator iterations of the whole run

    def resolved(self) -> dict:
        """What `suite show` prints and every run stores as config.json."""
        return {"recipe": self.recipe, "family": self.family, "config": dataclasses.asdict(self.cfg)}


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"invalid --device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available (torch.cuda.is_available() is False)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported --device '{name}': use cpu or cuda")
    return device


def resolve_config(recipe: str, overrides: dict, seed: int | None = None, max_steps: int | None = None) -> BaseConfig:
    overrides = dict(overrides)
    if seed is not None:
        overrides["seed"] = seed
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    return registry.resolve(recipe, overrides)


def prepare(recipe: str, cfg: BaseConfig, device: str = "cpu", data_root=None, download=False) -> Prepared:
    """Config + data + device, checked before anything is logged (a missing dataset makes no run)."""
    group = ranks.current()
    dev = ranks.device_of(resolve_device(device), group)
    trainer = registry.family(cfg.family).trainer
    for name in ("batch_size", "n_sample"):
        if getattr(cfg, name) < trainer.min_batch:
            raise ConfigError(f"invalid {name}={getattr(cfg, name)}: family {cfg.family} normalises over the batch "
                              f"(BatchNorm), so it needs at least {trainer.min_batch}")
    if group is not None:
        check_split(cfg, group.world)
    check_precision(cfg, dev)
    if cfg.eval_n and cfg.eval_n < MIN_SAMPLES:
        raise ConfigError(f"invalid eval_n={cfg.eval_n}: {min_samples_reason()}")
    loaded = data.load(cfg.dataset, data_root=data_root, download=download, image_size=cfg.image_size,
                       load_size=cfg.load_size, flip=cfg.flip, subset=cfg.train_subset, prepared=cfg.prepared)
    if loaded.kind not in trainer.data_kinds:
        if loaded.kind == "points":
            able = [f.name for f in registry.FAMILIES.values() if "points" in f.trainer.data_kinds]
            raise ConfigError(f"dataset '{cfg.dataset}' holds 2D points; only the {', '.join(able)} family trains on it")
        raise ConfigError(f"family {cfg.family} cannot train on dataset '{cfg.dataset}' ({loaded.kind})")
    if loaded.kind == "image" and cfg.image_size == 0:
        cfg = dataclasses.replace(cfg, image_size=loaded.shape[-1])
    info = data.data_info(loaded, cfg.batch_size)
    return Prepared(recipe, cfg.family, cfg, loaded, info, dev, str(data_root) if data_root else None,
                    total_steps(trainer, cfg, info))


def check_split(cfg: BaseConfig, nproc: int) -> None:
    """The global batch divides evenly over `nproc` processes (each a part of at least min_batch)."""
    trainer = registry.family(cfg.family).trainer
    if cfg.batch_size % nproc:
        raise ConfigError(f"batch_size={cfg.batch_size} does not split over {nproc} processes: --nproc needs a global "
                          f"batch divisible by it (each step's batch is divided evenly; {cfg.family} trains on "
                          f"{cfg.batch_size})")
    if cfg.batch_size // nproc < trainer.min_batch:
        raise ConfigError(f"batch_size={cfg.batch_size} over {nproc} processes leaves {cfg.batch_size // nproc} per "
                          f"process; family {cfg.family} needs at least {trainer.min_batch}")


def check_precision(cfg: BaseConfig, device: torch.device) -> None:
    """precision, compile and channels_last possible on this device, said before any run exists."""
    if cfg.precision != "fp32" and not torch.amp.is_autocast_available(device.type):
        raise ConfigError(f"precision={cfg.precision}: torch has no autocast for {device.type} here; use fp32")
    if cfg.precision == "fp16" and device.type == "cpu":  # supported, but emulated: measured 11x slower than fp32
        raise ConfigError("precision=fp16 on the CPU: torch emulates it there (a DCGAN step 11x slower than fp32); "
                          "use bf16 on the CPU, fp16 on a GPU")
    if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision=bf16: this GPU has no bfloat16; use fp16 (with its GradScaler) or fp32")
    if cfg.compile:
        try:  # the toolchain inductor needs (a C++ compiler on CPU, Triton on CUDA), tried on a toy
            torch.compile(lambda x: x * 2 + 1)(torch.ones(2, device=device))
        except Exception as e:  # noqa: BLE001 - any failure to build means compile is not available
            line = next((x for x in str(e).splitlines() if x.strip()), type(e).__name__)
            raise ConfigError(f"compile=true: torch.compile cannot build here ({line[:160]}); use compile=false") \
                from None


def accelerate(trainer: Trainer, cfg: BaseConfig) -> None:
    """channels_last and torch.compile on the networks, in place (their state_dict keys unchanged)."""
    for module in trainer.modules.values():
        if cfg.channels_last:
            module.to(memory_format=torch.channels_last)
        if cfg.compile:
            module.compile()


def loader_workers(asked: int) -> int:
    """-1: one DataLoader worker per core this process may use (its affinity, not the machine's),
    shared with the other ranks on this node."""
    if asked >= 0:
        return asked
    cores = ranks.usable_cores()
    group = ranks.current()
    return max(1, cores // group.local_world) if group else cores


def share_cores(workers: int) -> None:
    """One of `workers` training processes on this machine (tune / benchmark workers): its share
    of the cores as intra-op threads instead of oversubscribing them; a lower setting (a user's
    OMP_NUM_THREADS) is kept."""
    if workers > 1:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), ranks.usable_cores() // workers)))


def build_trainer(p: Prepared) -> Trainer:
    torch.manual_seed(p.cfg.seed)
    trainer = registry.family(p.family).trainer(p.cfg, p.info, p.device)
    if trainer.kind == "translation":
        trainer.fixed_inputs = data.fixed_examples(p.loaded, p.cfg.n_sample)
    else:
        trainer.fixed_noise()  # now, before a run exists: an n_sample too large for memory fails here
    if (group := ranks.current()) is not None:
        trainer.share(group, p.cfg.sync_bn)
    accelerate(trainer, p.cfg)
    return trainer


def make_stream(p: Prepared) -> data.BatchStream:
    return data.BatchStream(p.loaded, p.cfg.batch_size, p.cfg.seed, p.device, image_size=p.cfg.image_size,
                            flip=p.cfg.flip, num_workers=loader_workers(p.cfg.num_workers),
                            part=group.part(p.cfg.batch_size) if (group := ranks.current()) else None)


def default_evaluator(p: Prepared) -> Evaluator | None:
    """The evaluator of a prepared run: its dataset's metrics, `eval_n` samples."""
    return training_evaluator(p.cfg.dataset, p.loaded, p.cfg.eval_n, str(p.device), p.data_root)


def total_steps(trainer: type[Trainer], cfg: BaseConfig, info: DataInfo) -> int:
    """max_steps, else the fewest generator iterations that consume `epochs` passes over the data
    (a search over the family's closed-form `batches_through`, never a count one by one)."""
    steps = cfg.max_steps
    if not steps:
        budget = math.ceil(cfg.epochs * info.steps_per_epoch)
        if budget > MAX_STEPS * 1000:
            raise ConfigError(f"epochs={cfg.epochs:g} is {budget:.3g} batches of {cfg.dataset}; set max_steps or fewer epochs")
        low, high = 0, 1
        while trainer.batches_through(cfg, high) < budget:
            low, high = high, high * 2
        while high - low > 1:  # batches_through(low) < budget <= batches_through(high)
            mid = (low + high) // 2
            low, high = (mid, high) if trainer.batches_through(cfg, mid) < budget else (low, mid)
        steps = high
    if steps > MAX_STEPS:
        raise ConfigError(f"{steps:,} generator iterations asked for (max_steps or epochs); at most {MAX_STEPS:,}")
    return steps


def run_tags(p: Prepared, recipe_meta) -> dict:
    """The `suite.*` tags every training run starts with."""
    return {
        "suite.recipe": p.recipe,
        "suite.family": p.family,
        "suite.dataset": p.cfg.dataset,
        "suite.seed": str(p.cfg.seed),
        "suite.device": str(p.device),
        "suite.data_source": p.loaded.meta.get("source", "in memory"),
        "suite.cpu_sized": str(recipe_meta.cpu_sized),
    }
