"""What every family's config shares: the base dataclass (data, length, bookkeeping and the
optimizer knobs), `--set` parsing against the declared field types, the checks every family
needs, and the optimizers a recipe can name.

    python -m suite show dcgan_fashion --set optimizer=rmsprop --set lr_d=1e-4
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass

import torch

from suite.core.errors import ConfigError


@dataclass
class BaseConfig:
    """Data, length and bookkeeping knobs shared by every family (not hyperparameters)."""

    dataset: str = ""
    image_size: int = 0  # 0: the dataset's native size; ignored by 2D point datasets
    load_size: int = 0  # > image_size: resize to this, then random-crop image_size
    flip: bool = False  # random horizontal flips
    train_subset: int = 0  # use only the first N training examples (per domain); 0 = all
    batch_size: int = 64
    epochs: float = 1.0  # passes over the training data
    max_steps: int = 0  # generator iterations; 0 = run `epochs`
    seed: int = 0
    sample_every: int = 500  # fixed-noise sample grid every N steps
    n_sample: int = 64  # fixed noise vectors in the grid (DCGAN tutorial: 64)
    checkpoint_every: int = 1000
    eval_every: int = 0  # 0: evaluate only at the end
    eval_n: int = 0  # generated samples per evaluation; 0: the evaluator's default
    num_workers: int = -1  # DataLoader workers for file-backed datasets; -1: the cores this process may use
    prepared: bool = True  # read file-backed images from a matching `suite prepare` file where there is one
    system_metrics: bool = True  # MLflow's system metrics (CPU, memory, GPU) under system/ while training
    precision: str = "fp32"  # fp32 (the papers') | bf16 | fp16 (autocast; fp16 with a GradScaler per optimizer)
    compile: bool = False  # torch.compile the networks
    channels_last: bool = False  # NHWC memory format for the networks' 4-D weights
    sync_bn: bool = True  # several processes (--nproc): BatchNorm statistics over the global batch, as one process
    # The optimizer is part of the recipe: each family sets its paper's choice (`suite show`
    # lists these; `--set optimizer=adam` runs the WGAN paper's own ablation). Defaults are torch's.
    optimizer: str = "adam"  # adam | rmsprop | sgd
    beta1: float = 0.9  # Adam
    beta2: float = 0.999  # Adam
    eps: float = 1e-8  # Adam, RMSprop
    momentum: float = 0.0  # RMSprop, SGD
    rms_alpha: float = 0.99  # RMSprop's smoothing constant

    family: typing.ClassVar[str] = ""

    def check(self) -> None:
        """Family-specific validation: raise ValueError (or ConfigError) with one clear line."""


PRECISIONS = ("fp32", "bf16", "fp16")


def config_fields(cfg_cls: type[BaseConfig]) -> dict[str, type]:
    hints = typing.get_type_hints(cfg_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg_cls)}


def _parse_scalar(kind: type, text: str, key: str):
    text = text.strip()
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            value = float(text)
            if not value.is_integer():
                raise ValueError(text)
            return int(value)
        if kind is float:
            return float(text)
        return str(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected {kind.__name__}") from None


def parse_value(kind, text: str, key: str):
    """Coerce a `--set` string to the field's declared type."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        args = typing.get_args(kind)
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        elem = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_scalar(elem, p, key) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"--set {key}={text}: expected {len(args)} comma-separated values")
        return tuple(_parse_scalar(a, p, key) for a, p in zip(args, parts))
    return _parse_scalar(kind, text, key)


def apply_overrides(cfg: BaseConfig, overrides: dict[str, object]) -> BaseConfig:
    """Return a copy of `cfg` with overrides (strings are parsed); unknown keys are rejected."""
    fields = config_fields(type(cfg))
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"unknown config key '{key}' for family {cfg.family}{hint}")
        changes[key] = parse_value(fields[key], value, key) if isinstance(value, str) else value
    return dataclasses.replace(cfg, **changes)


def validate(cfg: BaseConfig) -> BaseConfig:
    """Checks every family needs, then the family's own `check`."""
    for name, value in dataclasses.asdict(cfg).items():
        if (name.startswith("lr_") or name.startswith("lambda")) and isinstance(value, float):
            if not math.isfinite(value) or value < 0 or (name.startswith("lr") and value == 0):
                raise ConfigError(f"invalid {name}={value}: must be a positive finite number")
    for name in ("batch_size", "n_sample", "sample_every", "checkpoint_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"invalid {name}={getattr(cfg, name)}: must be >= 1")
    if not 0 <= cfg.seed < 2**32:  # what every RNG of the run accepts (torch, NumPy, the data order)
        raise ConfigError(f"invalid seed={cfg.seed}: must be an integer in [0, 2**32 - 1]")
    for name in ("max_steps", "eval_every", "eval_n", "image_size", "load_size", "train_subset"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"invalid {name}={getattr(cfg, name)}: must be >= 0")
    if cfg.num_workers < -1:
        raise ConfigError(f"invalid num_workers={cfg.num_workers}: >= 0, or -1 for the cores this process may use")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"invalid precision={cfg.precision!r}: one of {', '.join(PRECISIONS)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"invalid optimizer={cfg.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
    for name in ("beta1", "beta2", "rms_alpha"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"invalid {name}={getattr(cfg, name)}: must be in [0, 1)")
    if not cfg.eps > 0 or not cfg.momentum >= 0:
        raise ConfigError(f"invalid eps={cfg.eps} / momentum={cfg.momentum}: eps > 0, momentum >= 0")
    if cfg.load_size and cfg.load_size < cfg.image_size:
        raise ConfigError(f"load_size={cfg.load_size} must be >= image_size={cfg.image_size}")
    if cfg.max_steps == 0 and not (cfg.epochs > 0 and math.isfinite(cfg.epochs)):
        raise ConfigError(f"invalid epochs={cfg.epochs}: must be a finite number > 0 (or set max_steps)")
    try:
        cfg.check()
    except ValueError as e:  # a plugin's check may raise ValueError: the same one line
        raise ConfigError(f"invalid {cfg.family} config: {e}") from None
    return cfg


OPTIMIZERS = {
    "adam": lambda cfg, params, lr: torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps),
    "rmsprop": lambda cfg, params, lr: torch.optim.RMSprop(params, lr=lr, alpha=cfg.rms_alpha, eps=cfg.eps,
                                                           momentum=cfg.momentum),
    "sgd": lambda cfg, params, lr: torch.optim.SGD(params, lr=lr, momentum=cfg.momentum),
}


def make_optimizer(cfg: BaseConfig, params, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimizer (cfg.optimizer and its settings) over `params` at `lr`."""
    return OPTIMIZERS[cfg.optimizer](cfg, list(params), lr)


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {'a.b': v}; tuples become comma-joined strings (MLflow params are text)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (tuple, list)):
            out[key] = ",".join(str(x) for x in v)
        else:
            out[key] = v
    return out
