"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1) as a
plugin family, written only against the suite's public contract (docs/plugins.md).

    python -m suite run wgangp_fashion --plugin examples/plugins/wgan_gp.py --max-steps 300
    python -m suite benchmark wgan_fashion wgangp_fashion --seeds 3 --max-steps 300 --plugin examples/plugins/wgan_gp.py

The critic loss is D(G(z)) - D(x) + lambda (||grad D(x_hat)||_2 - 1)^2 on x_hat = eps x + (1 - eps)
G(z), eps ~ U[0, 1] per sample; the generator loss is -D(G(z)). No weight clipping, and no batch
norm in the critic (the penalty is per sample; the paper recommends layer normalisation, here
normalisation over each sample's C x H x W with a per-channel scale, as the authors' code does).
Adam lr 1e-4, beta = (0, 0.9), n_critic 5, lambda 10, batch 64 (the paper's defaults). Each
critic update draws a fresh real batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recipes import BaseConfig, Trainer, register_family, register_recipe, set_requires_grad


@dataclass
class Config(BaseConfig):
    image_size: int = 64
    nz: int = 128
    ngf: int = 64
    ndf: int = 64
    optimizer: str = "adam"
    lr_g: float = 1e-4  # alpha
    lr_d: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lambda_gp: float = 10.0  # lambda
    n_critic: int = 5
    batch_size: int = 64
    epochs: float = 25.0

    def check(self) -> None:
        if self.image_size not in (16, 32, 64, 128) or self.n_critic < 1:
            raise ValueError("image_size must be 16, 32, 64 or 128 and n_critic >= 1")


def _levels(size: int) -> int:
    return {16: 2, 32: 3, 64: 4, 128: 5}[size]


class Generator(nn.Module):
    """z -> 4x4 -> ... -> image: transposed convolutions with batch norm and ReLU, tanh out."""

    def __init__(self, cfg: Config, channels: int):
        super().__init__()
        width = cfg.ngf * 2 ** (_levels(cfg.image_size) - 1)
        layers = [nn.ConvTranspose2d(cfg.nz, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(_levels(cfg.image_size) - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z.view(len(z), -1, 1, 1))


class Critic(nn.Module):
    """Strided convolutions with LeakyReLU and layer norm (GroupNorm with one group normalises each
    sample over C x H x W), a linear score: no batch norm, no sigmoid."""

    def __init__(self, cfg: Config, channels: int):
        super().__init__()
        width, layers = cfg.ndf, [nn.Conv2d(channels, cfg.ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(_levels(cfg.image_size) - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.GroupNorm(1, width * 2), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).view(-1)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lam: float,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """lambda * mean over the batch of (||grad_x_hat D(x_hat)||_2 - 1)^2, x_hat between real and fake."""
    if eps is None:
        eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return lam * (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


class WGANGPTrainer(Trainer):
    progress_keys = ("loss", "wasserstein_estimate")
    loss_panels = (("Wasserstein estimate", "mean D(real) - mean D(fake)", ("wasserstein_estimate",), {}),
                   ("Critic and generator losses", "loss", ("loss/d", "loss/g", "gradient_penalty"), {}))

    def __init__(self, cfg: Config, info, device):
        super().__init__(cfg, info, device)
        self.G = Generator(cfg, info.shape[0]).to(self.device)
        self.D = Critic(cfg, info.shape[0]).to(self.device)
        adam = dict(betas=(cfg.beta1, cfg.beta2))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, **adam)
        self.modules = {"G": self.G, "D": self.D}
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}

    def noise(self, n, generator=None):
        return torch.randn(n, self.cfg.nz, generator=generator).to(self.device)

    @classmethod
    def batches_through(cls, cfg: Config, steps: int) -> int:
        return steps * cfg.n_critic

    def train_step(self, next_batch):
        for _ in range(self.cfg.n_critic):
            real = next_batch()
            with torch.no_grad():
                fake = self.G(self.noise(len(real)))
            d_real, d_fake = self.D(real).mean(), self.D(fake).mean()
            gp = gradient_penalty(self.D, real, fake, self.cfg.lambda_gp)
            self.opt_d.zero_grad(set_to_none=True)
            self.backward(d_fake - d_real + gp, self.opt_d)
            self.update(self.opt_d)
        set_requires_grad(self.D, False)  # only G learns from its step
        try:
            self.opt_g.zero_grad(set_to_none=True)
            loss_g = -self.D(self.G(self.noise(self.cfg.batch_size))).mean()
            self.backward(loss_g, self.opt_g)
            self.update(self.opt_g)
        finally:
            set_requires_grad(self.D, True)
        return {"loss/d": (d_fake - d_real + gp).detach(), "loss/g": loss_g.detach(), "gradient_penalty": gp.detach(),
                "wasserstein_estimate": (d_real - d_fake).detach()}


register_family("wgangp", Config, WGANGPTrainer)
register_recipe("wgangp_fashion", "wgangp", "fashion_mnist",
                "WGAN-GP on Fashion-MNIST 32x32, ngf=ndf=32 (plugin example)",
                {"image_size": 32, "ngf": 32, "ndf": 32, "epochs": 5, "sample_every": 200, "checkpoint_every": 500},
                cpu_sized=True)
