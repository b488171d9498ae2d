"""DCGAN (Radford et al. 2015) as in the PyTorch DCGAN tutorial (seed 000).

    python -m suite run dcgan_fashion --max-steps 600     # 32x32, offline, ~2 min on 2 cores
    python -m suite run dcgan_celeba --data-root ~/data    # the tutorial's recipe

G: ConvTranspose stack from a 4x4 map up to the image size, BatchNorm + ReLU, tanh output.
D: strided convs with LeakyReLU(0.2), BatchNorm on all but the first, logits (sigmoid in BCE).
Init: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0.
Adam 2e-4, beta1 0.5; batch 128; real label 1, fake 0; non-saturating G loss.
The networks take `image_size` (a power of two >= 16) and `n_extra_layers` like the official
WGAN code's DCGAN_G/DCGAN_D, so wgan.py reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recipes import registry
from recipes.base import Trainer
from recipes.bce import BCEGANMixin
from recipes.config import BaseConfig
from recipes.layers import init_normal_
from suite.data import DataInfo
from suite.core.errors import ConfigError


@dataclass
class Config(BaseConfig):
    family = "dcgan"
    image_size: int = 64  # tutorial: Resize + CenterCrop 64
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    n_extra_layers: int = 0
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    optimizer: str = "adam"  # Radford et al.; the tutorial
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128
    epochs: float = 5.0  # tutorial: num_epochs = 5
    init_std: float = 0.02

    def check(self) -> None:
        check_dcgan_sizes(self)


def check_dcgan_sizes(cfg) -> None:
    s = cfg.image_size
    if s < 16 or s & (s - 1):
        raise ConfigError(f"invalid image_size={s}: DCGAN networks need a power of two >= 16")
    if cfg.n_extra_layers < 0 or cfg.nz < 1 or cfg.ngf < 1 or cfg.ndf < 1:
        raise ConfigError("nz, ngf, ndf must be >= 1 and n_extra_layers >= 0")


class Generator(nn.Module):
    def __init__(self, image_size: int, nz: int, ngf: int, nc: int, n_extra_layers: int = 0):
        super().__init__()
        cngf, size = ngf // 2, 4
        while size != image_size:  # channels at 4x4: ngf * image_size / 8 (64 -> ngf*8)
            cngf, size = cngf * 2, size * 2
        layers = [nn.ConvTranspose2d(nz, cngf, 4, 1, 0, bias=False), nn.BatchNorm2d(cngf), nn.ReLU(True)]
        size = 4
        while size < image_size // 2:
            layers += [
                nn.ConvTranspose2d(cngf, cngf // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cngf // 2),
                nn.ReLU(True),
            ]
            cngf, size = cngf // 2, size * 2
        for _ in range(n_extra_layers):
            layers += [nn.Conv2d(cngf, cngf, 3, 1, 1, bias=False), nn.BatchNorm2d(cngf), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(cngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.nz, 1, 1))


class Discriminator(nn.Module):
    """Outputs one score per image: logits for DCGAN, the critic value for WGAN."""

    def __init__(self, image_size: int, ndf: int, nc: int, n_extra_layers: int = 0):
        super().__init__()
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        cndf, size = ndf, image_size // 2
        for _ in range(n_extra_layers):
            layers += [nn.Conv2d(cndf, cndf, 3, 1, 1, bias=False), nn.BatchNorm2d(cndf), nn.LeakyReLU(0.2, True)]
        while size > 4:
            layers += [
                nn.Conv2d(cndf, cndf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            cndf, size = cndf * 2, size // 2
        layers.append(nn.Conv2d(cndf, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def build_networks(cfg, info: DataInfo, device) -> tuple[Generator, Discriminator]:
    nc = info.shape[0]
    G = Generator(cfg.image_size, cfg.nz, cfg.ngf, nc, cfg.n_extra_layers)
    D = Discriminator(cfg.image_size, cfg.ndf, nc, cfg.n_extra_layers)
    init_normal_(G, cfg.init_std)
    init_normal_(D, cfg.init_std)
    return G.to(device), D.to(device)


class DCGANTrainer(BCEGANMixin, Trainer):
    def __init__(self, cfg: Config, info: DataInfo, device):
        super().__init__(cfg, info, device)
        self.use_networks(*build_networks(cfg, info, self.device))

    def noise(self, n, generator=None):
        return torch.randn(n, self.cfg.nz, 1, 1, generator=generator).to(self.device)

    def train_step(self, next_batch):
        real = next_batch()
        # The tutorial generates one batch of fakes for both updates (detached for D).
        fake = self.G(self.noise(real.shape[0]))
        out = self.d_step(real, fake)
        out.update(self.g_step(fake))
        return out


registry.register_family("dcgan", Config, DCGANTrainer)
registry.register_recipe("dcgan_celeba", "dcgan", "celeba", "PyTorch DCGAN tutorial on CelebA 64x64 (seed 000)")
registry.register_recipe("dcgan_lsun", "dcgan", "lsun_bedroom", "DCGAN paper on LSUN bedrooms 64x64")
registry.register_recipe("dcgan_cifar10", "dcgan", "cifar10", "DCGAN paper values on CIFAR-10 32x32 (only the size changed)",
                         {"image_size": 32})
# CPU-sized: 32 px, half the widths (shared with the WGAN recipes, which use these networks)
SMALL = {"image_size": 32, "ngf": 32, "ndf": 32, "sample_every": 200, "checkpoint_every": 500}
registry.register_recipe("dcgan_fashion", "dcgan", "fashion_mnist", "DCGAN on Fashion-MNIST 32x32, ngf=ndf=32",
                         {**SMALL, "epochs": 2}, True)
registry.register_recipe("dcgan_digits", "dcgan", "digits", "DCGAN on scikit-learn digits 32x32, ngf=ndf=32",
                         {**SMALL, "epochs": 100}, True)
