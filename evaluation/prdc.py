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


def prdc(gen: torch.Tensor, real: torch.Tensor, k: int = DEFAULTS["prdc_k"], real_radii: torch.Tensor | None = None,
         chunk: int = 2048, per_sample: bool = False):
    """The four metrics; with per_sample also what they average (evaluation.bootstrap resamples
    those): real balls holding each generated sample, and per real sample whether a generated
    ball holds it (recall) and whether it holds a generated sample (coverage)."""
    gen, real = gen.double(), real.double()
    r_real = kth_radius(real, k, dtype=torch.float64) if real_radii is None else real_radii.double()
    r_gen = kth_radius(gen, k, dtype=torch.float64)
    counts = torch.zeros(len(gen), dtype=torch.float64)  # real balls holding each generated sample
    covered = torch.zeros(len(real), dtype=torch.bool)  # real balls holding any generated sample
    for s in range(0, len(gen), chunk):
        inside = within(gen[s : s + chunk], real, r_real)
        counts[s : s + chunk] = inside.sum(1)
        covered |= inside.any(0)
    recall_hits = torch.zeros(len(real), dtype=torch.bool)  # real samples inside a generated ball
    for s in range(0, len(real), chunk):
        recall_hits[s : s + chunk] = within(real[s : s + chunk], gen, r_gen).any(1)
    c = counts.numpy()  # the reference's reductions, in numpy's summation order
    out = {
        "precision": float((c > 0).mean()),
        "recall": float(recall_hits.numpy().mean()),
        "density": float((1.0 / k) * c.mean()),
        "coverage": float(covered.numpy().mean()),
    }
    if not per_sample:
        return out
    return out, {"counts": counts, "recall_hits": recall_hits.double(), "covered": covered.double(), "k": k}
