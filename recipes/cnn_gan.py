"""CNN GAN of the PyTorch Lightning MNIST lecture (seed 003).

    python -m suite run cnn_gan_mnist          # needs MNIST locally (see `python -m suite list`)
    python -m suite run cnn_gan_fashion        # same networks on offline Fashion-MNIST

D: conv(1->10, k5) -> maxpool -> ReLU -> conv(10->20, k5) -> Dropout2d -> maxpool -> ReLU ->
   linear(320->50) -> ReLU -> dropout -> linear(50->1) (sigmoid inside the BCE).
G: linear(nz -> 7*7*64) -> ReLU -> ConvT(64->32, 4, s2) -> ReLU -> ConvT(32->16, 4, s2) -> ReLU ->
   conv(16->1, k7); the lecture has no output activation.
Data: the lecture normalises images with MNIST's mean and std (Normalize((0.1307,), (0.3081,)):
pixels span [-0.42, 2.82]); D sees real images that way and G learns to output that space.
`to_data` maps G's output back to [-1, 1] for grids and metrics; nothing bounds it, so values
past the data range are judged as a person sees them, clipped, and the clipped share is logged.
Lightning calls the G optimizer (index 0) first, then D; D loss = (real + fake) / 2.
Both Adam with the lecture's lr and PyTorch's default betas.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from recipes import registry
from recipes.base import Trainer
from recipes.bce import BCEGANMixin
from recipes.config import BaseConfig
from suite.data import DataInfo
from suite.core.errors import ConfigError


@dataclass
class Config(BaseConfig):
    family = "cnn_gan"
    nz: int = 100  # lecture: latent_dim=100
    lr_g: float = 2e-4  # lecture: lr=0.0002 for both optimizers
    lr_d: float = 2e-4
    optimizer: str = "adam"  # the lecture: torch.optim.Adam with its default betas
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 256  # Lightning GAN example: 256 with a GPU (64 without)
    epochs: float = 20.0  # lecture: max_epochs=20
    output_activation: str = "none"  # lecture: "no activation at the end"
    data_mean: float = 0.1307  # lecture: transforms.Normalize((0.1307,), (0.3081,)), MNIST's statistics
    data_std: float = 0.3081
    image_size: int = 28

    def check(self) -> None:
        if self.image_size != 28:
            raise ConfigError(f"cnn_gan is built for 28x28 images, got image_size={self.image_size}")
        if self.output_activation not in ("tanh", "none"):
            raise ConfigError(f"invalid output_activation={self.output_activation!r}: tanh|none")
        if not self.data_std > 0:
            raise ConfigError(f"invalid data_std={self.data_std}: must be > 0")
        if self.output_activation == "tanh" and (self.data_mean, self.data_std) != (0.5, 0.5):
            raise ConfigError("output_activation=tanh bounds G to [-1, 1]: set data_mean=0.5 and data_std=0.5 with it")


class Discriminator(nn.Module):
    def __init__(self, channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 1)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, training=self.training)
        return self.fc2(x).view(-1)


class Generator(nn.Module):
    def __init__(self, nz: int, channels: int = 1, tanh: bool = False):
        super().__init__()
        self.lin1 = nn.Linear(nz, 7 * 7 * 64)
        self.ct1 = nn.ConvTranspose2d(64, 32, 4, stride=2)  # 7 -> 16
        self.ct2 = nn.ConvTranspose2d(32, 16, 4, stride=2)  # 16 -> 34
        self.conv = nn.Conv2d(16, channels, kernel_size=7)  # 34 -> 28
        self.tanh = tanh

    def forward(self, z):
        x = F.relu(self.lin1(z)).view(-1, 64, 7, 7)
        x = F.relu(self.ct1(x))
        x = F.relu(self.ct2(x))
        x = self.conv(x)
        return torch.tanh(x) if self.tanh else x


class CNNGANTrainer(BCEGANMixin, Trainer):
    def __init__(self, cfg: Config, info: DataInfo, device):
        super().__init__(cfg, info, device)
        channels = info.shape[0]
        self.use_networks(Generator(cfg.nz, channels, cfg.output_activation == "tanh").to(self.device),
                      Discriminator(channels).to(self.device))

    def noise(self, n, generator=None):
        return torch.randn(n, self.cfg.nz, generator=generator).to(self.device)

    def from_data(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] batches -> the lecture's normalisation: (pixel in [0, 1] - mean) / std."""
        return ((x + 1) / 2 - self.cfg.data_mean) / self.cfg.data_std

    def to_data(self, out: torch.Tensor) -> torch.Tensor:
        return (out * self.cfg.data_std + self.cfg.data_mean) * 2 - 1

    def train_step(self, next_batch):
        real = self.from_data(next_batch())
        n = real.shape[0]
        out = self.g_step(self.G(self.noise(n)))  # optimizer_idx 0: generator
        with torch.no_grad():  # idx 1: fresh z, fakes detached, D loss (real + fake) / 2
            fake = self.G(self.noise(n))
        out.update(self.d_step(real, fake, scale=0.5))
        return out


registry.register_family("cnn_gan", Config, CNNGANTrainer)
registry.register_recipe("cnn_gan_mnist", "cnn_gan", "mnist", "Lightning lecture CNN GAN on MNIST 28x28 (seed 003)")
registry.register_recipe("cnn_gan_fashion", "cnn_gan", "fashion_mnist", "Lecture CNN GAN on Fashion-MNIST 28x28",
                         {"epochs": 5}, True)
