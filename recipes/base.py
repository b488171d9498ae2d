"""What every recipe family shares: the config base, `--set` parsing, the Trainer interface.

A family file (gan.py, dcgan.py, ...) holds its `Config` dataclass with the paper's values,
its networks, and a `Trainer` whose `train_step` performs one generator iteration. The harness
drives Trainers through this interface and knows nothing about any family.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from suite.data import DataInfo
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
    num_workers: int = 2  # DataLoader workers for file-backed datasets
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
        """Family-specific validation; raise ConfigError with one clear line."""


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
    for name in ("max_steps", "eval_every", "eval_n", "num_workers", "image_size", "load_size", "train_subset"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"invalid {name}={getattr(cfg, name)}: must be >= 0")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"invalid optimizer={cfg.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
    for name in ("beta1", "beta2", "rms_alpha"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"invalid {name}={getattr(cfg, name)}: must be in [0, 1)")
    if not cfg.eps > 0 or not cfg.momentum >= 0:
        raise ConfigError(f"invalid eps={cfg.eps} / momentum={cfg.momentum}: eps > 0, momentum >= 0")
    if cfg.load_size and cfg.load_size < cfg.image_size:
        raise ConfigError(f"load_size={cfg.load_size} must be >= image_size={cfg.image_size}")
    if cfg.max_steps == 0 and not cfg.epochs > 0:
        raise ConfigError(f"invalid epochs={cfg.epochs}: must be > 0 (or set max_steps)")
    cfg.check()
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


Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
NextBatch = Callable[[], Batch]


# --------------------------------------------------------------------------- shared pieces


def init_normal_(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN / WGAN / CycleGAN init: conv and linear weights N(0, std), norm weights N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@contextmanager
def sampling(module: nn.Module) -> Iterator[None]:
    """Generate as the papers' code does (train mode: BatchNorm batch statistics), without
    side effects: no grad, running statistics and the global RNG restored afterwards."""
    buffers = {k: b.clone() for k, b in module.named_buffers()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for k, b in module.named_buffers():
                b.copy_(buffers[k])
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class BCEGANMixin:
    """Goodfellow et al.'s D step and non-saturating G step on logits, shared by gan, cnn_gan
    and dcgan. D outputs logits; BCE-with-logits is the sigmoid + BCE of the papers, computed
    stably. Reported D(x) and D(G(z)) are sigmoid probabilities."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    def use_networks(self, G: nn.Module, D: nn.Module) -> None:
        """G and D, each with the recipe's optimizer at its own learning rate."""
        self.G, self.D = G, D
        self.opt_g = make_optimizer(self.cfg, G.parameters(), self.cfg.lr_g)
        self.opt_d = make_optimizer(self.cfg, D.parameters(), self.cfg.lr_d)
        self.modules = {"G": G, "D": D}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor):
        out_real = self.D(real)
        out_fake = self.D(fake.detach())
        loss = F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
        loss = loss + F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake))
        return loss, torch.sigmoid(out_real).mean().detach(), torch.sigmoid(out_fake).mean().detach()

    def d_step(self, real: torch.Tensor, fake: torch.Tensor, scale: float = 1.0) -> dict:
        """One D update on real (label 1) and detached fakes (label 0); G is not touched."""
        self.opt_d.zero_grad(set_to_none=True)
        loss, d_real, d_fake = self.d_loss(real, fake)
        loss = loss * scale
        loss.backward()
        self.opt_d.step()
        return {"loss/d": loss.detach(), "d_real": d_real, "d_fake": d_fake}

    def g_step(self, fake: torch.Tensor) -> dict:
        """Non-saturating G update on fakes that carry G's graph, labelled real ("flipped
        labels"); D's parameters are frozen so only G receives gradients."""
        set_requires_grad(self.D, False)
        try:
            self.opt_g.zero_grad(set_to_none=True)
            out = self.D(fake)
            loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
            loss.backward()
            self.opt_g.step()
        finally:
            set_requires_grad(self.D, True)
        return {"loss/g": loss.detach(), "d_fake_gstep": torch.sigmoid(out).mean().detach()}

    def discriminator_view(self, grid: torch.Tensor, fakes: torch.Tensor):
        """GAN Lab's view: D(x) = sigmoid(logit) over `grid`, and at each generated point the
        direction the non-saturating G loss pushes it, -dL_G/dx (per sample: reduction sum)."""
        with torch.no_grad():
            surface = torch.sigmoid(self.D(grid.to(self.device))).float().cpu()
        x = fakes.to(self.device).detach().requires_grad_(True)
        out = self.D(x)
        loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)  # only x's gradient: D's parameters keep theirs
        return surface, (-grad).float().cpu()


class Trainer:
    """The interface the harness drives. Subclasses set `modules`, `optimizers` (and optionally
    `schedulers`) in __init__ and implement `train_step` and `samples`. What differs between
    families and the harness must know is said here, as attributes and methods, never by name."""

    kind = "image"  # what `samples` returns: "image" | "points" | "translation"
    data_kinds: tuple[str, ...] = ("image",)  # the dataset kinds the family trains on
    grid_nrow: int | None = None  # images per row of the sample grid (None: square)
    progress_keys: tuple[str, ...] = ("loss",)  # step values (prefixes) shown on the progress line
    # Report panels of the logged step values: (title, y label, metric keys, reference lines).
    loss_panels: tuple = (("Losses", "BCE loss", ("loss/d", "loss/g"), {}),
                          ("Discriminator outputs", "mean probability", ("d_real", "d_fake", "d_fake_gstep"),
                           {"D* = 1/2 at the optimum": 0.5}))

    def __init__(self, cfg: BaseConfig, info: DataInfo, device: torch.device):
        self.cfg, self.info, self.device = cfg, info, torch.device(device)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.step = 0  # generator iterations done
        self.epoch = 0  # completed passes over the data (kept by the harness)

    # -- training
    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    def batches_per_step(self, step: int) -> int:
        """Real batches consumed by generator iteration `step` (0-based): sets the epoch length."""
        return 1

    def on_epoch_end(self) -> None:
        """Called by the harness after each completed pass over the data."""
        for s in self.schedulers.values():
            s.step()

    def learning_rates(self) -> dict[str, float]:
        return {f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()}

    # -- sampling (no side effects on training state)
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, n: int, generator: torch.Generator | None = None, batch: int = 500):
        """n samples in data space ([-1, 1] images or 2D points), on the CPU."""
        G = self.modules["G"]
        out = []
        with sampling(G):
            for i in range(0, n, batch):
                z = self.noise(min(batch, n - i), generator)
                out.append(self.to_data(G(z)).float().cpu())
        return torch.cat(out)

    def to_data(self, out: torch.Tensor) -> torch.Tensor:
        """G's output in the data space every layer above speaks ([-1, 1] images, or points); a
        family that trains on another normalisation maps back here. Nothing is clamped."""
        return out

    def fixed_noise(self) -> torch.Tensor:
        """The same noise for every grid of a run (seeded by the run's seed, not the RNG)."""
        if not hasattr(self, "_fixed_noise"):
            g = torch.Generator().manual_seed(self.cfg.seed + 1_000_003)
            self._fixed_noise = self.noise(self.cfg.n_sample, g)
        return self._fixed_noise

    def eval_samples(self, n: int, generator: torch.Generator, inputs: dict | None = None):
        """What the evaluator judges: n generated samples (a translating family answers `inputs`)."""
        return self.generate(n, generator)

    def discriminator_view(self, grid: torch.Tensor, fakes: torch.Tensor):
        """For 2D data: (D's output at each `grid` point, the generator's gradient -dL_G/dx at each
        of `fakes`), as GAN Lab draws them; None where a family has no such view."""
        return None

    def samples(self) -> torch.Tensor:
        """What the progress grid shows: G(fixed noise)."""
        with sampling(self.modules["G"]):
            return self.to_data(self.modules["G"](self.fixed_noise())).float().cpu()

    # -- checkpointing (tensors and plain values only: loadable with weights_only=True)
    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "step": self.step,
            "epoch": self.epoch,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.load_extra_state(state.get("extra", {}))

    def generator_state(self) -> dict:
        """What `checkpoints/generator.pt` holds: the weights needed to sample."""
        return {k: m.state_dict() for k, m in self.modules.items() if k.startswith("G")}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "BaseConfig", "Trainer", "BCEGANMixin", "OPTIMIZERS", "make_optimizer", "apply_overrides", "validate", "flatten",
    "init_normal_", "set_requires_grad", "sampling", "config_fields", "count_params", "field",
]
