"""The Trainer interface: what the harness asks of every family, built-in or plugin.

A family file (gan.py, dcgan.py, ...) holds its `Config` dataclass with the paper's values
(recipes/config.py), its networks, and a `Trainer` whose `train_step` performs one generator
iteration. The harness drives Trainers through this interface and knows nothing about any family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from recipes.config import BaseConfig
from recipes.layers import sampling
from suite.core import ranks as ranks_mod
from suite.data import DataInfo


Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
NextBatch = Callable[[], Batch]


class Trainer:
    """The interface the harness drives. Subclasses set `modules`, `optimizers` (and optionally
    `schedulers`) in __init__ and implement `train_step` and `samples`. What differs between
    families and the harness must know is said here, as attributes and methods, never by name."""

    kind = "image"  # what `samples` returns: "image" | "points" | "translation"
    data_kinds: tuple[str, ...] = ("image",)  # the dataset kinds the family trains on
    grid_nrow: int | None = None  # images per row of the sample grid (None: square)
    progress_keys: tuple[str, ...] = ("loss",)  # step values (prefixes) shown on the progress line
    min_batch: int = 1  # fewest samples one forward pass may hold (2 where BatchNorm1d normalises over the batch)
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
        self.scalers: dict[int, torch.amp.GradScaler] = {}  # fp16: one per optimizer (keyed by id)
        self.skipped = 0  # fp16 optimizer steps skipped for inf/NaN gradients
        self.ranks: ranks_mod.Ranks | None = None  # one of several processes (see `share`)
        self._spread = False
        self._averaged: torch.optim.Optimizer | None = None  # fp16: averaged before its GradScaler

    # -- several processes (suite/core/ranks.py): train_step sees this rank's part of each global
    # batch; `noise(n)` without a generator is this rank's part of the global draw of n * world
    @property
    def batch(self) -> int:
        """Samples of one step this process handles (the global batch_size over the ranks)."""
        return self.cfg.batch_size // (self.ranks.world if self.ranks else 1)

    def share(self, ranks: ranks_mod.Ranks, sync_bn: bool = True) -> None:
        """Train as one of `ranks`: BatchNorm over the global batch, latents split from the global
        draw, gradients averaged before every optimizer step. Called once, when the trainer is built."""
        self.ranks = ranks
        if sync_bn:
            for m in self.modules.values():
                ranks_mod.sync_batchnorm(m)
        family_noise = self.noise

        def noise(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
            if generator is not None:  # grids and evaluations: the same latents as one process
                return family_noise(n, generator)
            return family_noise(n * ranks.world)[ranks.part(n * ranks.world)]

        self.noise = noise
        for opt in self.optimizers.values():  # a family calling opt.step() itself is averaged too
            opt.register_step_pre_hook(self._before_step)

    def _before_step(self, opt: torch.optim.Optimizer, args, kwargs) -> None:
        if self._averaged is not opt:
            self._average(opt)

    def _average(self, opt: torch.optim.Optimizer) -> None:
        self.ranks.reduce_gradients([p for group in opt.param_groups for p in group["params"]])

    @contextlib.contextmanager
    def spread(self):
        """`generate` inside splits its chunks over the ranks and gathers them on rank 0 (None elsewhere)."""
        self._spread = self.ranks is not None
        try:
            yield
        finally:
            self._spread = False

    # -- precision: families call backward / update instead of loss.backward() / opt.step(), and
    # the harness runs train_step under autocast(); at fp32 (the papers') both are the plain calls
    def autocast(self):
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _scaler(self, opt: torch.optim.Optimizer) -> torch.amp.GradScaler | None:
        if self.cfg.precision != "fp16":
            return None
        if id(opt) not in self.scalers:
            self.scalers[id(opt)] = torch.amp.GradScaler(self.device.type)
        return self.scalers[id(opt)]

    def backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """loss.backward(), scaled by opt's GradScaler at fp16."""
        scaler = self._scaler(opt)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def update(self, opt: torch.optim.Optimizer) -> None:
        """opt.step(); at fp16 through its GradScaler, which skips a step whose gradients overflowed
        (counted in `skipped`, logged as perf/fp16_skipped_steps)."""
        scaler = self._scaler(opt)
        if scaler is None:
            opt.step()  # several processes: the gradients are averaged by the step's pre-hook (see share)
            return
        if self.ranks is not None:  # before the scaler's overflow check, so that every rank skips alike
            self._average(opt)
            self._averaged = opt
        before = scaler.get_scale()
        try:
            scaler.step(opt)
        finally:
            self._averaged = None
        scaler.update()
        self.skipped += scaler.get_scale() < before  # the scale drops exactly when the step was skipped

    # -- training
    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    @classmethod
    def batches_through(cls, cfg: BaseConfig, steps: int) -> int:
        """Real batches the first `steps` generator iterations consume (it sets how many steps an
        epoch is). A family that draws several batches per step overrides it, in closed form."""
        return steps

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
        sizes = [min(batch, n - i) for i in range(0, n, batch)]
        if len(sizes) > 1 and sizes[-1] < self.min_batch:  # a last chunk too small for batch statistics
            sizes[-2:] = [sizes[-2] + sizes[-1]]
        out = []
        spread = self.ranks if self._spread else None
        with sampling(G):
            for i, size in enumerate(sizes):
                z = self.noise(size, generator)  # every rank draws every chunk's latents: the same as one process
                if spread is None or i % spread.world == spread.rank:
                    out.append(self.to_data(G(z)).float().cpu())
        if spread is not None:
            parts = spread.gather(out)
            if parts is None:
                return None
            out = [parts[i % spread.world][i // spread.world] for i in range(len(sizes))]
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
            "scalers": {k: self.scalers[id(o)].state_dict() for k, o in self.optimizers.items() if id(o) in self.scalers},
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        for k, scaler_state in state.get("scalers", {}).items():
            self._scaler(self.optimizers[k]).load_state_dict(scaler_state)
        self.skipped = int(state.get("skipped", 0))
        self.load_extra_state(state.get("extra", {}))

    def generator_state(self) -> dict:
        """What `checkpoints/generator.pt` holds: the weights needed to sample."""
        return {k: m.state_dict() for k, m in self.modules.items() if k.startswith("G")}
