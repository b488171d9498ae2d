"""Memorization checks: does the generator hand back its training images?

- Nearest training neighbours of every generated sample (exact, chunked k-NN), in pixel and in
  feature space, compared with the neighbours of held-out real images: the ratio of median
  distances and the share of near copies (closer to the training set than 99 % of held-out
  images are).
- The C_T statistic of Meehan, Chaudhuri & Dasgupta (2020), the authors' test: in k-means cells
  of the training set, a Mann-Whitney test of generated vs held-out distances to that cell's
  training points; C_T << 0 means data copying.
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


def ct_statistic(train: torch.Tensor, test: torch.Tensor, gen: torch.Tensor, cells: int = DEFAULTS["ct_cells"],
                 n_init: int = DEFAULTS["ct_n_init"], pca_dims: int = DEFAULTS["ct_pca_dims"],
                 min_per_cell: int = DEFAULTS["ct_min_per_cell"], seed: int = DEFAULTS["seed"]) -> float:
    """C_T of Meehan, Chaudhuri & Dasgupta (2020), as the authors' code computes it
    (github.com/casey-meehan/data-copying, data_copying_tests.py: Zu, Zu_cells, C_T) with the
    settings dgm-eval runs it with: features reduced to `pca_dims` by PCA fitted on the training
    set, `cells` k-means cells of the training set (`n_init` restarts), and in each cell a
    Mann-Whitney U test of the generated vs the held-out samples' distances to the nearest
    *training point of that cell*, Z-scored with the continuity correction. Cells holding more
    than `min_per_cell` generated samples (tau = min_per_cell / m) are averaged, weighted by their
    share of held-out samples. C_T << 0: generated samples sit closer to the training set than
    held-out data does (data copying); >> 0: farther (underfitting). NaN when no cell qualifies.
    """
    from scipy.stats import mannwhitneyu  # heavy optional: only the full checks
    from sklearn.cluster import KMeans  # heavy optional: only the full checks
    from sklearn.decomposition import PCA  # heavy optional: only the full checks

    T, P, Q = (x.flatten(1).double().numpy() for x in (train, test, gen))
    if T.shape[1] > pca_dims:
        pca = PCA(n_components=pca_dims, random_state=seed).fit(T)
        T, P, Q = pca.transform(T), pca.transform(P), pca.transform(Q)
    km = KMeans(n_clusters=cells, n_init=n_init, random_state=seed).fit(T)
    t_cell, p_cell, q_cell = km.labels_, km.predict(P), km.predict(Q)
    n = len(P)
    num, den = 0.0, 0.0
    for c in range(cells):
        t_c, p_c, q_c = (torch.from_numpy(x[cell == c]) for x, cell in ((T, t_cell), (P, p_cell), (Q, q_cell)))
        if len(q_c) <= min_per_cell or len(p_c) == 0 or len(t_c) == 0:
            continue  # not in Pi_tau (too few generated samples), or nothing to compare with
        lq = knn(q_c, t_c, 1, dtype=torch.float64)[0][:, 0].numpy()
        lp = knn(p_c, t_c, 1, dtype=torch.float64)[0][:, 0].numpy()
        u = mannwhitneyu(lq, lp, alternative="less").statistic
        mc, nc = len(lq), len(lp)
        z = (u - (mc * nc / 2 - 0.5)) / math.sqrt(mc * nc * (mc + nc + 1) / 12)  # the authors' Z_U
        weight = nc / n  # P_n(cell)
        num, den = num + weight * z, den + weight
    return num / den if den else float("nan")


def mifid(fid: float, gen_feats: torch.Tensor, train_feats: torch.Tensor, eps: float = DEFAULTS["mifid_eps"]) -> float:
    keep_g, keep_t = gen_feats.sum(1) != 0, train_feats.sum(1) != 0
    distance = float((1 - max_abs_cosine(gen_feats[keep_g], train_feats[keep_t])).mean())
    if distance >= eps:
        distance = 1.0
    return fid / (distance + 1e-14) if fid > 1e-8 else 0.0
