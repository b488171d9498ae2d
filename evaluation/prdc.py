"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020)
with k = 5, from one set of k-NN radii, exactly as the reference `prdc` package defines them:
a point is inside a ball when its distance is strictly less than the radius. torch-fidelity
has precision/recall but not density and coverage; computing all four from the same radii
keeps them consistent."""

from __future__ import annotations

import torch

from evaluation.defaults import DEFAULTS
from evaluation.neighbours import kth_radius


def within(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(points x centres) bool: d(point, centre) < radius of the centre (float64).

    The GEMM distances decide every pair except those within rounding of a radius (ties: exact
    copies, duplicated points); those are recomputed with the formula the radii came from
    (neighbours.knn), so a point at exactly a ball's radius is outside, as in the reference."""
    d2 = torch.cdist(points, centres).square()
    r2 = radii.square().unsqueeze(0)
    margin = 1e-9 * (points.square().sum(1, keepdim=True) + centres.square().sum(1).unsqueeze(0) + 1)
    inside = d2 < r2 - margin
    i, j = ((d2 - r2).abs() <= margin).nonzero(as_tuple=True)
    if len(i):
        inside[i, j] = (points[i] - centres[j]).square().sum(-1).sqrt() < radii[j]
    return inside


def ball_counts(gen: torch.Tensor, real: torch.Tensor, real_radii: torch.Tensor, gen_radii: torch.Tensor,
                present: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the generated samples present in each of B sets (present: n x B, 0/1):
    counts (n) — real balls holding each generated sample; covered (m x B) — generated samples
    of each set inside each real ball; hits (m x B) — balls of each set's generated samples
    holding each real sample. One pass serves the evaluation (B = 1) and its bootstrap."""
    p = present.float()  # counts stay below 2^24: exact in float32, half the memory of float64
    counts = torch.zeros(len(gen), dtype=torch.float64)
    covered = torch.zeros(len(real), p.shape[1])
    for s in range(0, len(gen), chunk):
        inside = within(gen[s : s + chunk], real, real_radii)
        counts[s : s + chunk] = inside.sum(1)
        covered += inside.T.float() @ p[s : s + chunk]
    hits = torch.zeros(len(real), p.shape[1])
    for s in range(0, len(real), chunk):
        hits[s : s + chunk] = within(real[s : s + chunk], gen, gen_radii).float() @ p
    return counts, covered, hits


def prdc(gen: torch.Tensor, real: torch.Tensor, k: int = DEFAULTS["prdc_k"], real_radii: torch.Tensor | None = None,
         boot_weights: torch.Tensor | None = None):
    """The four metrics; with boot_weights (B x n multiplicities, evaluation.bootstrap) also each
    resample's values, every k-NN radius held at its full-set value: (metrics, replicates)."""
    gen, real = gen.double(), real.double()
    r_real = kth_radius(real, k, dtype=torch.float64) if real_radii is None else real_radii.double()
    r_gen = kth_radius(gen, k, dtype=torch.float64)
    ones = torch.ones(len(gen), 1)
    present = ones if boot_weights is None else torch.cat([ones, (boot_weights > 0).T.float()], 1)
    counts, covered, hits = ball_counts(gen, real, r_real, r_gen, present)
    c = counts.numpy()  # the reference's reductions, in numpy's summation order
    out = {
        "precision": float((c > 0).mean()),
        "recall": float((hits[:, 0] > 0).numpy().mean()),
        "density": float((1.0 / k) * c.mean()),
        "coverage": float((covered[:, 0] > 0).numpy().mean()),
    }
    if boot_weights is None:
        return out
    w, n = boot_weights.double(), len(gen)
    return out, {"precision": w @ (counts > 0).double() / n, "density": w @ counts / (k * n),
                 "recall": (hits[:, 1:] > 0).double().mean(0), "coverage": (covered[:, 1:] > 0).double().mean(0)}
