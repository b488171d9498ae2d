"""Latent-space figures of the lectures (seeds 000, 001): interpolation between fixed latent
vectors, and class-direction arithmetic with latents whose samples the domain classifier labels.

Both work from a run's `checkpoints/generator.pt` artifact.
"""

from __future__ import annotations

import torch

from recipes import registry
from recipes.layers import sampling
from suite import data
from suite.core import images


def load_generator(gen_ckpt: dict):
    """Rebuild the run's trainer around the saved generator weights (CPU)."""
    family = gen_ckpt["family"]
    cfg = registry.config_from_dict(family, gen_ckpt["config"])
    spec = data.get_spec(cfg.dataset)
    shape = gen_ckpt.get("shape") or ((2,) if spec.kind == "points" else (spec.channels, cfg.image_size, cfg.image_size))
    info = data.DataInfo(cfg.dataset, gen_ckpt.get("kind", spec.kind), tuple(shape), 1, 1)
    trainer = registry.family(family).trainer(cfg, info, "cpu")
    for name, state in gen_ckpt["generator"].items():
        trainer.modules[name].load_state_dict(state)
    return trainer


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016), which stays where Gaussian latents have their mass:
    a, b (P x ...) and t (S,) -> P x S x ..."""
    af, bf = a.flatten(1), b.flatten(1)
    omega = torch.acos(torch.nn.functional.cosine_similarity(af, bf).clamp(-1, 1))[:, None]
    so = torch.sin(omega).clamp(min=1e-8)
    w0 = torch.sin((1 - t)[None, :] * omega) / so
    w1 = torch.sin(t[None, :] * omega) / so
    out = w0[..., None] * af[:, None] + w1[..., None] * bf[:, None]
    return out.view(len(a), len(t), *a.shape[1:])


def interpolation(trainer, pairs: int = 6, steps: int = 9, seed: int = 0):
    """A grid: each row walks from one fixed latent to another."""
    g = torch.Generator().manual_seed(seed)
    a, b = trainer.noise(pairs, g).cpu(), trainer.noise(pairs, g).cpu()
    z = slerp(a, b, torch.linspace(0, 1, steps)).flatten(0, 1)
    x = _generate(trainer, z)
    if trainer.kind == "points":
        return images.scatter(x, None, "interpolation paths in data space")
    return images.grid(x, nrow=steps, min_side=48)


def _generate(trainer, z: torch.Tensor) -> torch.Tensor:
    G = trainer.modules["G"]
    with sampling(G):
        return trainer.to_data(G(z.to(trainer.device))).float().cpu()


def class_arithmetic(trainer, classifier, class_names, n: int = 2000, steps: int = 8, seed: int = 0):
    """Mean latent of each class the classifier sees in G's samples; rows walk from one class
    mean to another; `moved` = share of latents z labelled a whose z - mean_a + mean_b is
    labelled b (how linear the class directions are). Returns (image, rows)."""
    g = torch.Generator().manual_seed(seed)
    z = trainer.noise(n, g).cpu()
    x = _generate(trainer, z)
    labels = classifier(x)["logits"].argmax(1)
    counts = torch.bincount(labels, minlength=len(class_names))
    top = [int(c) for c in counts.argsort(descending=True)[:3] if counts[c] >= 20]
    if len(top) < 2:
        return None, []
    means = {c: z[labels == c].mean(0) for c in top}
    pairs = [(top[i], top[(i + 1) % len(top)]) for i in range(len(top))] if len(top) > 2 else [(top[0], top[1])]
    walks, rows = [], []
    t = torch.linspace(0, 1, steps).view(-1, *([1] * (z.dim() - 1)))
    for a, b in pairs:
        walks.append(means[a] + t * (means[b] - means[a]))
        za = z[labels == a][:200]
        moved = classifier(_generate(trainer, za - means[a] + means[b]))["logits"].argmax(1)
        rows.append({"from": class_names[a], "to": class_names[b], "moved": float((moved == b).float().mean()),
                     "n": len(za)})
    picture = images.grid(_generate(trainer, torch.cat(walks)), nrow=steps, min_side=48)
    return picture, rows
