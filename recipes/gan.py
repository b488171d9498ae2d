"""Vanilla GAN with MLPs (Goodfellow et al. 2014; lecture seeds 002 and 001).

    python -m suite run gan_ring8      # 2D mixture, minutes on a CPU
    python -m suite run gan_mnist      # the lecture's MNIST recipe (needs MNIST locally)

G: z(100) -> 256 -> 512 -> 1024 -> data, LeakyReLU(0.2) + BatchNorm, tanh output.
D: data -> 512 -> 256 -> 1, LeakyReLU(0.2), logits (sigmoid inside the BCE).
One step = `d_steps` (Goodfellow's k = 1) D updates on real (label 1) and detached fakes
(label 0), then one non-saturating G update with fakes labelled real, D frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from recipes import registry
from recipes.base import Trainer
from recipes.bce import BCEGANMixin
from recipes.config import BaseConfig
from suite.data import DataInfo
from suite.core.errors import ConfigError


@dataclass
class Config(BaseConfig):
    family = "gan"
    nz: int = 100  # latent size, z ~ N(0, I) (seed 002: "d equals 100")
    g_hidden: tuple[int, ...] = (256, 512, 1024)  # seed 002 dense generator
    d_hidden: tuple[int, ...] = (512, 256)
    lr_g: float = 2e-4  # Adam, both nets
    lr_d: float = 2e-4
    optimizer: str = "adam"  # both nets (seed 002)
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1  # k in Goodfellow et al. Algorithm 1 (k = 1 in their experiments)
    batch_size: int = 100  # Goodfellow et al.'s MNIST minibatch
    # 2D mixtures need an unbounded output; images use the paper's tanh.
    output_activation: str = "tanh"
    epochs: float = 50.0

    def check(self) -> None:
        if self.d_steps < 1:
            raise ConfigError(f"invalid d_steps={self.d_steps}: must be >= 1")
        if self.output_activation not in ("tanh", "none"):
            raise ConfigError(f"invalid output_activation={self.output_activation!r}: tanh|none")
        if self.nz < 1 or not self.g_hidden or not self.d_hidden or min(self.g_hidden + self.d_hidden) < 1:
            raise ConfigError("nz and hidden widths must be >= 1")


class Generator(nn.Module):
    def __init__(self, nz: int, hidden: tuple[int, ...], shape: tuple[int, ...], tanh: bool):
        super().__init__()
        self.shape = shape
        layers, width = [], nz
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.BatchNorm1d(h)]
            width = h
        layers.append(nn.Linear(width, math.prod(shape)))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class Discriminator(nn.Module):
    def __init__(self, hidden: tuple[int, ...], shape: tuple[int, ...]):
        super().__init__()
        layers, width = [nn.Flatten()], math.prod(shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


class GANTrainer(BCEGANMixin, Trainer):
    min_batch = 2  # BatchNorm1d in G: one sample has no batch statistics
    data_kinds = ("image", "points")

    def __init__(self, cfg: Config, info: DataInfo, device):
        super().__init__(cfg, info, device)
        self.kind = "points" if info.kind == "points" else "image"
        tanh = cfg.output_activation == "tanh"
        self.use_networks(Generator(cfg.nz, cfg.g_hidden, info.shape, tanh).to(self.device),
                      Discriminator(cfg.d_hidden, info.shape).to(self.device))

    def noise(self, n, generator=None):
        return torch.randn(n, self.cfg.nz, generator=generator).to(self.device)

    @classmethod
    def batches_through(cls, cfg: Config, steps: int) -> int:
        return steps * cfg.d_steps  # k D updates per G update, each on a fresh real batch

    def train_step(self, next_batch):
        for _ in range(self.cfg.d_steps):  # Algorithm 1: k D updates, fresh noise each
            real = next_batch()
            with torch.no_grad():
                fake = self.G(self.noise(real.shape[0]))
            out = self.d_step(real, fake)
        out.update(self.g_step(self.G(self.noise(real.shape[0]))))
        return out


registry.register_family("gan", Config, GANTrainer)
registry.register_recipe("gan_mnist", "gan", "mnist", "Goodfellow et al. MLP GAN on MNIST 28x28 (seed 002)")
# CPU-sized: the 2D mode-count toys (VEEGAN/PacGAN) and Fashion-MNIST
TOY = {"output_activation": "none", "g_hidden": (128, 128, 128), "d_hidden": (128, 128), "n_sample": 2000,
       "epochs": 20, "sample_every": 1000, "checkpoint_every": 2000}
registry.register_recipe("gan_ring8", "gan", "ring8", "MLP GAN on a ring of 8 Gaussians (mode-count toy)", TOY, True)
registry.register_recipe("gan_grid25", "gan", "grid25", "MLP GAN on a 5x5 grid of Gaussians (mode-count toy)", TOY, True)
registry.register_recipe("gan_fashion", "gan", "fashion_mnist", "MLP GAN on Fashion-MNIST 28x28", {"epochs": 10}, True)
