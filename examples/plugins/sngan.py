"""SNGAN (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks") as a
plugin family, written only against the suite's public contract (docs/plugins.md).

    python -m suite run sngan_fashion --plugin examples/plugins/sngan.py --max-steps 300

The paper's ResNet for 32x32 images (its appendix B.4): G = z(128) -> linear 4x4 -> three up
residual blocks -> BN, ReLU, 3x3 conv, tanh; D = an "optimized" down block, a down block and two
plain blocks, ReLU, global sum pooling, linear. Every discriminator layer is spectrally normalised
(torch's `spectral_norm` parametrization: one power iteration per forward). Hinge loss: D minimises
E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], G minimises -E[D(G(z))]. Adam lr 2e-4, beta = (0, 0.9),
n_dis = 5 discriminator updates per generator update: the paper's settings for this architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from recipes import BaseConfig, Trainer, register_family, register_recipe, set_requires_grad


@dataclass
class Config(BaseConfig):
    image_size: int = 32
    nz: int = 128
    g_ch: int = 256  # the paper's widths for CIFAR-10
    d_ch: int = 128
    optimizer: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    n_dis: int = 5
    batch_size: int = 64
    epochs: float = 50.0

    def check(self) -> None:
        if self.image_size != 32:
            raise ValueError(f"this ResNet is the paper's 32x32 one: image_size must be 32, got {self.image_size}")
        if self.n_dis < 1:
            raise ValueError(f"n_dis must be >= 1, got {self.n_dis}")


class GBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.b1, self.b2 = nn.BatchNorm2d(ch), nn.BatchNorm2d(ch)
        self.c1, self.c2 = nn.Conv2d(ch, ch, 3, 1, 1), nn.Conv2d(ch, ch, 3, 1, 1)
        self.skip = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        h = F.interpolate(F.relu(self.b1(x)), scale_factor=2)
        h = self.c2(F.relu(self.b2(self.c1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2))


class Generator(nn.Module):
    def __init__(self, cfg: Config, channels: int):
        super().__init__()
        self.ch = cfg.g_ch
        self.fc = nn.Linear(cfg.nz, 4 * 4 * cfg.g_ch)
        self.blocks = nn.Sequential(GBlock(cfg.g_ch), GBlock(cfg.g_ch), GBlock(cfg.g_ch))
        self.out = nn.Sequential(nn.BatchNorm2d(cfg.g_ch), nn.ReLU(), nn.Conv2d(cfg.g_ch, channels, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.out(self.blocks(self.fc(z).view(len(z), self.ch, 4, 4)))


class DBlock(nn.Module):
    """A residual block of the discriminator; `first`: the optimized block (no ReLU before it)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.c1, self.c2 = spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1)), spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or down) else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.skip is not None:
            s = F.avg_pool2d(self.skip(x), 2) if self.first else self.skip(x)
            s = F.avg_pool2d(s, 2) if self.down and not self.first else s
        return h + s


class Discriminator(nn.Module):
    def __init__(self, cfg: Config, channels: int):
        super().__init__()
        ch = cfg.d_ch
        self.blocks = nn.Sequential(DBlock(channels, ch, True, first=True), DBlock(ch, ch, True),
                                    DBlock(ch, ch, False), DBlock(ch, ch, False))
        self.fc = spectral_norm(nn.Linear(ch, 1))

    def forward(self, x):
        return self.fc(F.relu(self.blocks(x)).sum((2, 3))).view(-1)


class SNGANTrainer(Trainer):
    progress_keys = ("loss",)
    loss_panels = (("Hinge losses", "loss", ("loss/d", "loss/g"), {}),)

    def __init__(self, cfg: Config, info, device):
        super().__init__(cfg, info, device)
        self.G = Generator(cfg, info.shape[0]).to(self.device)
        self.D = Discriminator(cfg, info.shape[0]).to(self.device)
        adam = dict(betas=(cfg.beta1, cfg.beta2))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, **adam)
        self.modules = {"G": self.G, "D": self.D}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}

    def noise(self, n, generator=None):
        return torch.randn(n, self.cfg.nz, generator=generator).to(self.device)

    @classmethod
    def batches_through(cls, cfg: Config, steps: int) -> int:
        return steps * cfg.n_dis

    def train_step(self, next_batch):
        for _ in range(self.cfg.n_dis):
            real = next_batch()
            with torch.no_grad():
                fake = self.G(self.noise(len(real)))
            loss_d = F.relu(1 - self.D(real)).mean() + F.relu(1 + self.D(fake)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            self.backward(loss_d, self.opt_d)
            self.update(self.opt_d)
        set_requires_grad(self.D, False)  # only G learns from its step
        try:
            self.opt_g.zero_grad(set_to_none=True)
            loss_g = -self.D(self.G(self.noise(self.cfg.batch_size))).mean()
            self.backward(loss_g, self.opt_g)
            self.update(self.opt_g)
        finally:
            set_requires_grad(self.D, True)
        return {"loss/d": loss_d.detach(), "loss/g": loss_g.detach()}


register_family("sngan", Config, SNGANTrainer)
register_recipe("sngan_fashion", "sngan", "fashion_mnist",
                "SNGAN (ResNet, hinge) on Fashion-MNIST 32x32, g_ch=d_ch=32 (plugin example)",
                {"image_size": 32, "g_ch": 32, "d_ch": 32, "epochs": 5, "sample_every": 200, "checkpoint_every": 500},
                cpu_sized=True)
