"""Pieces several families share: the DCGAN-style weight init, freezing a network, and
side-effect-free sampling.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from suite.core.rng import isolated_rng


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
    try:
        with isolated_rng(), torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for k, b in module.named_buffers():
                b.copy_(buffers[k])
