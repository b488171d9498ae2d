"""Memorization checks: does the generator hand back its training images?

- Nearest training neighbours of every generated sample (exact, chunked k-NN), in pixel and in
  feature space, compared with the neighbours of held-out real images: the ratio of median
  distances and the share of near copies (closer to the training set than 99 % of held-out
  images are).
- The C_T statistic of Meehan, Chaudhuri & Dasgupta (2020): in k-means cells of the training
  set, a Mann-Whitney test of generated vs held-out distances to the training set; C_T << 0
  means data copying.
- MiFID (Bai et al. 2021, the Kaggle competition's definition): FID divided by the memorization
  distance, the mean over *generated* samples of their minimum cosine distance to the training
  features, when that falls below eps. (torchmetrics' class averages over the set passed as real;
  tests/test_evaluation.py shows both orientations.)
"""

from __future__ import annotations

import math

import torch

from evaluation.defaults import DEFAULTS
from evaluation.neighbours import knn, max_abs_cosine


def nn_distances(queries: torch.Tensor, train: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return knn(queries.flatten(1), train.flatten(1), k)


def copy_stats(gen_d: torch.Tensor, test_d: torch.Tensor, q: float = DEFAULTS["near_copy_quantile"]) -> dict:
    """gen_d, test_d: distance of each generated / held-out sample to its nearest training one."""
    threshold = torch.quantile(test_d.double(), q).item()
    return {
        "nn_ratio": float(gen_d.median() / test_d.median().clamp(min=1e-12)),
        "near_copy_share": float((gen_d <= threshold).float().mean()),
        "near_copy_threshold": threshold,
        "median_gen_to_train": float(gen_d.median()),
        "median_test_to_train": float(test_d.median()),
    }


def ct_statistic(train: torch.Tensor, test: torch.Tensor, gen: torch.Tensor, test_d: torch.Tensor,
                 gen_d: torch.Tensor, cells: int = DEFAULTS["ct_cells"],
                 min_per_cell: int = DEFAULTS["ct_min_per_cell"], seed: int = DEFAULTS["seed"]) -> float:
    """C_T = sum over cells of P_n(cell) * Z_U(cell) / sum of P_n over the cells used."""
    from scipy.stats import mannwhitneyu  # heavy optional: only the full checks
    from sklearn.cluster import KMeans  # heavy optional: only the full checks

    km = KMeans(n_clusters=cells, n_init=1, random_state=seed).fit(train.flatten(1).double().numpy())
    test_cell = torch.from_numpy(km.predict(test.flatten(1).double().numpy()))
    gen_cell = torch.from_numpy(km.predict(gen.flatten(1).double().numpy()))
    num, den = 0.0, 0.0
    for c in range(cells):
        p, g = test_d[test_cell == c], gen_d[gen_cell == c]
        if len(g) < min_per_cell or len(p) < 2:
            continue
        u = mannwhitneyu(g.double().numpy(), p.double().numpy(), alternative="two-sided").statistic
        m, n = len(g), len(p)
        z = (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)
        weight = len(p) / len(test_d)
        num, den = num + weight * z, den + weight
    return num / den if den else float("nan")


def mifid(fid: float, gen_feats: torch.Tensor, train_feats: torch.Tensor, eps: float = DEFAULTS["mifid_eps"]) -> float:
    keep_g, keep_t = gen_feats.sum(1) != 0, train_feats.sum(1) != 0
    distance = float((1 - max_abs_cosine(gen_feats[keep_g], train_feats[keep_t])).mean())
    if distance >= eps:
        distance = 1.0
    return fid / (distance + 1e-14) if fid > 1e-8 else 0.0
