"""WGAN with weight clipping (Arjovsky et al. 2017, Algorithm 1 and the official code; seed 004).

    python -m suite run wgan_fashion --max-steps 300
    python -m suite run wgan_lsun --data-root ~/data/lsun    # LSUN bedrooms 64x64

Critic: the DCGAN discriminator without a sigmoid (BatchNorm kept, as in the official code).
Critic loss mean(f(fake)) - mean(f(real)); G loss -mean(f(fake)). Every critic parameter is
clipped to [-c, c] before each critic update (official code) and after it (Algorithm 1), so
the critic the generator sees is always inside the box. RMSprop 5e-5, batch 64, n_critic 5,
with 100 critic updates per generator iteration for the first 25 and every 500th.
Each critic update draws a fresh real batch; one `train_step` is one generator iteration.
Logged: the Wasserstein estimate W = mean(f(real)) - mean(f(fake)), whose fall the paper
shows tracking sample quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recipes import registry
from recipes.base import Trainer
from recipes.config import BaseConfig, make_optimizer
from recipes.layers import set_requires_grad
from recipes.dcgan import SMALL, build_networks, check_dcgan_sizes
from suite.data import DataInfo
from suite.core.errors import ConfigError


@dataclass
class Config(BaseConfig):
    family = "wgan"
    image_size: int = 64
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    n_extra_layers: int = 0  # the seed-004 LSUN notebook uses 1 (wgan_lsun sets it)
    optimizer: str = "rmsprop"  # paper (its ablation: --set optimizer=adam); torch's alpha 0.99, eps 1e-8
    lr_g: float = 5e-5  # RMSprop, paper; seed 004 used 1e-4 then /10 (lr_drop_epoch)
    lr_d: float = 5e-5
    clip_value: float = 0.01  # c
    n_critic: int = 5
    critic_burst: int = 100  # official code: Diters = 100 ...
    burst_first: int = 25  # ... for the first 25 generator iterations ...
    burst_every: int = 500  # ... and every 500th one
    lr_drop_epoch: int = 0  # seed 004's "divide the learning rate by 10"; 0 = off
    batch_size: int = 64
    epochs: float = 25.0  # official code: niter = 25
    init_std: float = 0.02

    def check(self) -> None:
        check_dcgan_sizes(self)
        if self.n_critic < 1:
            raise ConfigError(f"invalid n_critic={self.n_critic}: must be >= 1")
        if not self.clip_value > 0:
            raise ConfigError(f"invalid clip_value={self.clip_value}: must be > 0")
        if self.critic_burst < 1 or self.burst_first < 0 or self.burst_every < 0:
            raise ConfigError("critic_burst must be >= 1; burst_first, burst_every >= 0")
        if self.lr_drop_epoch < 0:
            raise ConfigError(f"invalid lr_drop_epoch={self.lr_drop_epoch}: must be >= 0")


def critic_iters(cfg: Config, gen_iteration: int) -> int:
    """Critic updates before generator iteration `gen_iteration` (0-based), official schedule."""
    if gen_iteration < cfg.burst_first or (cfg.burst_every and gen_iteration % cfg.burst_every == 0):
        return cfg.critic_burst
    return cfg.n_critic


class WGANTrainer(Trainer):
    progress_keys = ("loss", "wasserstein_estimate")
    loss_panels = (("Wasserstein estimate", "mean f(real) - mean f(fake)", ("wasserstein_estimate",), {}),
                   ("Critic and generator losses", "loss", ("loss/d", "loss/g"), {}))

    def __init__(self, cfg: Config, info: DataInfo, device):
        super().__init__(cfg, info, device)
        self.G, self.D = build_networks(cfg, info, self.device)
        self.opt_g = make_optimizer(cfg, self.G.parameters(), cfg.lr_g)
        self.opt_d = make_optimizer(cfg, self.D.parameters(), cfg.lr_d)
        self.modules = {"G": self.G, "D": self.D}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}

    def noise(self, n, generator=None):
        return torch.randn(n, self.cfg.nz, 1, 1, generator=generator).to(self.device)

    def clip_critic(self) -> None:
        c = self.cfg.clip_value
        with torch.no_grad():
            for p in self.D.parameters():
                p.clamp_(-c, c)

    def critic_step(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.clip_critic()
        with torch.no_grad():
            fake = self.G(self.noise(real.shape[0]))
        self.opt_d.zero_grad(set_to_none=True)
        f_real, f_fake = self.D(real).mean(), self.D(fake).mean()
        loss = f_fake - f_real
        self.backward(loss, self.opt_d)
        self.update(self.opt_d)
        self.clip_critic()
        return loss.detach(), (f_real - f_fake).detach()

    def generator_step(self, n: int) -> torch.Tensor:
        set_requires_grad(self.D, False)
        try:
            self.opt_g.zero_grad(set_to_none=True)
            loss = -self.D(self.G(self.noise(n))).mean()
            self.backward(loss, self.opt_g)
            self.update(self.opt_g)
        finally:
            set_requires_grad(self.D, True)
        return loss.detach()

    @classmethod
    def batches_through(cls, cfg: Config, steps: int) -> int:
        """Each critic update draws a fresh real batch: `critic_iters` summed over the first
        `steps` generator iterations, in closed form."""
        bursts = min(steps, cfg.burst_first)
        if cfg.burst_every and steps > cfg.burst_first:  # multiples of burst_every in [burst_first, steps)
            bursts += -(-steps // cfg.burst_every) - -(-cfg.burst_first // cfg.burst_every)
        return bursts * cfg.critic_burst + (steps - bursts) * cfg.n_critic

    def train_step(self, next_batch):
        k = critic_iters(self.cfg, self.step)
        for _ in range(k):
            loss_d, w = self.critic_step(next_batch())
        loss_g = self.generator_step(self.batch)
        return {"loss/d": loss_d, "loss/g": loss_g, "wasserstein_estimate": w, "critic_steps": float(k)}

    def on_epoch_end(self) -> None:
        drop = self.cfg.lr_drop_epoch
        if drop and self.epoch == drop:
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] /= 10


registry.register_family("wgan", Config, WGANTrainer)
registry.register_recipe("wgan_lsun", "wgan", "lsun_bedroom",
                         "WGAN (clipping, RMSprop, n_critic 5) on LSUN bedrooms 64x64", {"n_extra_layers": 1})
registry.register_recipe("wgan_cifar10", "wgan", "cifar10",
                         "WGAN, wgan_lsun's values on CIFAR-10 32x32 (only the size changed)",
                         {"n_extra_layers": 1, "image_size": 32})
registry.register_recipe("wgan_fashion", "wgan", "fashion_mnist", "WGAN on Fashion-MNIST 32x32, ngf=ndf=32",
                         {**SMALL, "epochs": 5}, True)
registry.register_recipe("wgan_digits", "wgan", "digits", "WGAN on scikit-learn digits 32x32, ngf=ndf=32",
                         {**SMALL, "epochs": 200}, True)
