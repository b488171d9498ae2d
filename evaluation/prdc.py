"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020)
with k = 5, from one set of k-NN radii. torch-fidelity has precision/recall but not density
and coverage; computing all four from the same radii keeps them consistent."""

from __future__ import annotations

import torch

from evaluation.defaults import DEFAULTS
from evaluation.neighbours import knn, kth_radius


# Everything in float64: radii are exact distances, the ball tests use torch.cdist's GEMM form;
# a point on a ball's boundary (a tie, e.g. identical sets) must still count as inside.
TIE = 1 + 1e-9


def prdc(gen: torch.Tensor, real: torch.Tensor, k: int = DEFAULTS["prdc_k"], real_radii: torch.Tensor | None = None
         ) -> dict[str, float]:
    gen, real = gen.double(), real.double()
    r_real = (kth_radius(real, k, dtype=torch.float64) if real_radii is None else real_radii.double()) * TIE
    r_gen = kth_radius(gen, k, dtype=torch.float64) * TIE
    # generated -> nearest real: precision (inside any real ball), density (how many balls)
    counts = torch.zeros(len(gen))
    inside_any = torch.zeros(len(gen), dtype=torch.bool)
    for i in range(0, len(gen), 2048):
        d = torch.cdist(gen[i : i + 2048], real)
        within = d <= r_real.unsqueeze(0)
        counts[i : i + 2048] = within.sum(1).float()
        inside_any[i : i + 2048] = within.any(1)
    # real -> nearest generated: recall (inside any generated ball), coverage (own ball holds a sample)
    recall_hits = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(real), 2048):
        d = torch.cdist(real[i : i + 2048], gen)
        recall_hits[i : i + 2048] = (d <= r_gen.unsqueeze(0)).any(1)
    nn_d, _ = knn(real, gen, 1, dtype=torch.float64)
    return {
        "precision": inside_any.float().mean().item(),
        "recall": recall_hits.float().mean().item(),
        "density": (counts.sum() / (k * len(gen))).item(),
        "coverage": (nn_d[:, 0] <= r_real).float().mean().item(),
    }
