"""CycleGAN (Zhu et al. 2017, the junyanz/pytorch-CycleGAN-and-pix2pix code; seed 004).

    python -m suite run cyclegan_fashion --max-steps 200
    python -m suite run cyclegan_horse2zebra --data-root ~/data/horse2zebra

G_A: A -> B and G_B: B -> A, ResNet generators (c7s1-64, two stride-2 downs, 9 residual blocks
at 256x256 or 6 below, two stride-2 ups, c7s1-3), instance norm, reflection padding, tanh.
D_A judges B images, D_B judges A images: 70x70 PatchGAN (C64-C128-C256-C512).
LSGAN (MSE) losses, lambda_cycle 10, identity weight 0.5 * lambda_cycle, D loss * 0.5,
a pool of 50 past fakes per direction for the D updates, Adam 2e-4 (0.5, 0.999), lr constant
for `decay_start_epoch` epochs then linearly to zero at `epochs`; batch 1; init N(0, 0.02).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from recipes import registry
from recipes.base import Trainer
from recipes.config import BaseConfig, make_optimizer
from recipes.layers import init_normal_, sampling, set_requires_grad
from suite.data import DataInfo
from suite.core.errors import ConfigError


@dataclass
class Config(BaseConfig):
    family = "cyclegan"
    image_size: int = 256  # crop_size
    load_size: int = 286  # resize to this, then random crop image_size
    flip: bool = True  # random horizontal flip
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 0  # 0: 9 residual blocks at >= 256 px, 6 below (resnet_9blocks / _6blocks)
    n_layers_d: int = 3  # 70x70 PatchGAN
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # times lambda_cycle
    pool_size: int = 50
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    optimizer: str = "adam"  # junyanz code
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    epochs: float = 200.0  # n_epochs 100 + n_epochs_decay 100
    decay_start_epoch: int = 100
    init_std: float = 0.02
    n_sample: int = 4  # triplet rows in the progress grid

    def check(self) -> None:
        if self.image_size < 16 or self.image_size % 4:
            raise ConfigError(f"invalid image_size={self.image_size}: a multiple of 4, >= 16")
        if self.pool_size < 0 or self.n_blocks < 0 or self.n_layers_d < 1:
            raise ConfigError("pool_size, n_blocks must be >= 0 and n_layers_d >= 1")
        if not 0 <= self.decay_start_epoch <= self.epochs:
            raise ConfigError(f"decay_start_epoch={self.decay_start_epoch} must lie in [0, epochs]")

    @property
    def blocks(self) -> int:
        return self.n_blocks or (9 if self.image_size >= 256 else 6)


def _norm(ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim),
        )

    def forward(self, x):
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, ngf: int, n_blocks: int):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for i in range(2):  # downsampling
            m = 2**i
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1), _norm(ngf * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # upsampling
            m = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(ngf * m // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class PatchDiscriminator(nn.Module):
    def __init__(self, in_ch: int, ndf: int, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1), _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1), _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ImagePool:
    """Shrivastava et al.'s history of generated images: until full, return what comes in;
    then with probability 1/2 return (and replace) a random stored image instead."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(()).item() > 0.5:
                i = int(torch.randint(0, self.size, ()).item())
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state(self) -> torch.Tensor | None:
        return torch.cat(self.images) if self.images else None

    def load(self, stacked: torch.Tensor | None) -> None:
        self.images = [] if stacked is None else list(stacked.split(1))


def lsgan(pred: torch.Tensor, target_real: bool) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if target_real else 0.0))


class CycleGANTrainer(Trainer):
    kind = "translation"
    data_kinds = ("unpaired",)
    grid_nrow = 6  # each row: a, G_A(a), G_B(G_A(a)), b, G_B(b), G_A(G_B(b))
    loss_panels = (("Adversarial terms (LSGAN)", "MSE", ("loss/g_adv_a", "loss/g_adv_b", "loss/d_a", "loss/d_b"), {}),
                   ("Cycle and identity terms", "weighted L1", ("loss/cycle_a", "loss/cycle_b", "loss/idt_a",
                                                                "loss/idt_b"), {}))

    def __init__(self, cfg: Config, info: DataInfo, device):
        super().__init__(cfg, info, device)
        nc = info.shape[0]
        self.G_A = ResnetGenerator(nc, nc, cfg.ngf, cfg.blocks)
        self.G_B = ResnetGenerator(nc, nc, cfg.ngf, cfg.blocks)
        self.D_A = PatchDiscriminator(nc, cfg.ndf, cfg.n_layers_d)
        self.D_B = PatchDiscriminator(nc, cfg.ndf, cfg.n_layers_d)
        self.modules = {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}
        for m in self.modules.values():
            init_normal_(m, cfg.init_std)
            m.to(self.device)
        self.opt_g = make_optimizer(cfg, [*self.G_A.parameters(), *self.G_B.parameters()], cfg.lr_g)
        self.opt_d = make_optimizer(cfg, [*self.D_A.parameters(), *self.D_B.parameters()], cfg.lr_d)
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}
        decay = max(cfg.epochs - cfg.decay_start_epoch, 0) + 1

        def linear(epoch: int) -> float:
            return 1.0 - max(0, epoch + 1 - cfg.decay_start_epoch) / decay

        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, linear) for k, o in self.optimizers.items()}
        self.pool_a, self.pool_b = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)  # fakes of A / of B
        self.fixed_inputs: tuple[torch.Tensor, torch.Tensor] | None = None  # set by the harness

    def train_step(self, next_batch):
        real_a, real_b = next_batch()
        cfg = self.cfg
        lam, lam_idt = cfg.lambda_cycle, cfg.lambda_cycle * cfg.lambda_identity
        # Generators, discriminators frozen.
        set_requires_grad(self.D_A, False)
        set_requires_grad(self.D_B, False)
        self.opt_g.zero_grad(set_to_none=True)
        fake_b = self.G_A(real_a)
        rec_a = self.G_B(fake_b)
        fake_a = self.G_B(real_b)
        rec_b = self.G_A(fake_a)
        out = {}
        if lam_idt > 0:
            out["loss/idt_a"] = F.l1_loss(self.G_A(real_b), real_b) * lam_idt
            out["loss/idt_b"] = F.l1_loss(self.G_B(real_a), real_a) * lam_idt
        out["loss/g_adv_a"] = lsgan(self.D_A(fake_b), True)
        out["loss/g_adv_b"] = lsgan(self.D_B(fake_a), True)
        out["loss/cycle_a"] = F.l1_loss(rec_a, real_a) * lam
        out["loss/cycle_b"] = F.l1_loss(rec_b, real_b) * lam
        loss_g = sum(out.values())
        self.backward(loss_g, self.opt_g)
        self.update(self.opt_g)
        set_requires_grad(self.D_A, True)
        set_requires_grad(self.D_B, True)
        # Discriminators on real vs pooled fakes.
        self.opt_d.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b)
        pooled_a = self.pool_a.query(fake_a)
        loss_d_a = 0.5 * (lsgan(self.D_A(real_b), True) + lsgan(self.D_A(pooled_b), False))
        loss_d_b = 0.5 * (lsgan(self.D_B(real_a), True) + lsgan(self.D_B(pooled_a), False))
        self.backward(loss_d_a, self.opt_d)
        self.backward(loss_d_b, self.opt_d)
        self.update(self.opt_d)
        out = {k: v.detach() for k, v in out.items()}
        out.update({"loss/g": loss_g.detach(), "loss/d_a": loss_d_a.detach(), "loss/d_b": loss_d_b.detach(),
                    "loss/d": (loss_d_a + loss_d_b).detach()})
        return out

    def translate(self, x: torch.Tensor, direction: str = "AtoB", batch: int = 64) -> torch.Tensor:
        G = self.G_A if direction == "AtoB" else self.G_B
        with sampling(G):
            return torch.cat([G(x[i : i + batch].to(self.device)).float().cpu() for i in range(0, len(x), batch)])

    def eval_samples(self, n: int, generator: torch.Generator, inputs: dict | None = None) -> dict:
        """Translations of the evaluator's held-out images (`inputs` "a" and "b"), both ways,
        and A's reconstruction."""
        fake_b, fake_a = self.translate(inputs["a"], "AtoB"), self.translate(inputs["b"], "BtoA")
        return {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.translate(fake_b, "BtoA")}

    def samples(self) -> torch.Tensor:
        a, b = (t.to(self.device) for t in self.fixed_inputs)
        with sampling(self.G_A), sampling(self.G_B):
            fake_b, fake_a = self.G_A(a), self.G_B(b)
            rows = torch.stack([a, fake_b, self.G_B(fake_b), b, fake_a, self.G_A(fake_a)], dim=1)
        return rows.flatten(0, 1).float().cpu()

    def extra_state(self) -> dict:
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_extra_state(self, state: dict) -> None:
        self.pool_a.load(state.get("pool_a"))
        self.pool_b.load(state.get("pool_b"))


registry.register_family("cyclegan", Config, CycleGANTrainer)
registry.register_recipe("cyclegan_horse2zebra", "cyclegan", "horse2zebra", "CycleGAN horse <-> zebra 256x256, batch 1")
registry.register_recipe("cyclegan_fashion", "cyclegan", "fashion_unpaired",
                         "CycleGAN Fashion-MNIST <-> restyled Fashion-MNIST (disjoint halves, 1k each) 32x32, ngf=ndf=32",
                         {"image_size": 32, "load_size": 36, "ngf": 32, "ndf": 32, "train_subset": 1000, "epochs": 6,
                          "decay_start_epoch": 3, "sample_every": 500, "checkpoint_every": 1000}, True)
