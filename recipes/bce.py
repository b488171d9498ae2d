"""Goodfellow et al.'s adversarial loss as one mixin: the D step on real and detached fakes, the
non-saturating G step, and GAN Lab's view of D — shared by gan, cnn_gan and dcgan.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from recipes.config import make_optimizer
from recipes.layers import set_requires_grad


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
        self.backward(loss, self.opt_d)
        self.update(self.opt_d)
        return {"loss/d": loss.detach(), "d_real": d_real, "d_fake": d_fake}

    def g_step(self, fake: torch.Tensor) -> dict:
        """Non-saturating G update on fakes that carry G's graph, labelled real ("flipped
        labels"); D's parameters are frozen so only G receives gradients."""
        set_requires_grad(self.D, False)
        try:
            self.opt_g.zero_grad(set_to_none=True)
            out = self.D(fake)
            loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
            self.backward(loss, self.opt_g)
            self.update(self.opt_g)
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
