"""One DEFAULTS dict for the evaluation API and CLI, and the metric naming protocol."""

from __future__ import annotations

DEFAULTS = {
    "n": 10_000,  # generated samples per evaluation
    "batch_size": 500,
    "isc_splits": 10,  # Salimans et al.
    "kid_subsets": 100,  # torch-fidelity / Binkowski et al.
    "kid_subset_size": 1000,
    "prdc_k": 5,  # Naeem et al. 2020
    "mode_sigmas": 3.0,  # VEEGAN / PacGAN: high quality = within 3 std of a mode
    "mode_min_share": 20 / 2500,  # PacGAN: a mode counts with >= 20 of 2,500 samples
    "class_min_share": 0.25,  # a class counts with >= 1/4 of its share in the data
    "nn_k": 3,  # training neighbours shown per generated sample
    "near_copy_quantile": 0.01,  # near copy: closer to train than 99 % of held-out images are
    "near_copy_flag": 0.05,  # flag memorization when > 5 % of samples are near copies
    "ct_cells": 20,  # Meehan et al. 2020: k-means cells of the training set
    "ct_min_per_cell": 20,  # cells with fewer generated samples are left out
    "ct_flag": -3.0,  # C_T below this: data copying
    "mifid_eps": 0.1,  # torchmetrics' cosine_distance_eps
    "seed": 2020,
}

# Version of the feature/statistics protocol: part of every cache key.
PROTOCOL = "v2"


def count(n: int) -> str:
    """10000 -> '10k', 1500 -> '1500' (stylegan's fid50k spelling)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def metric_name(metric: str, n: int, extractor: str, dataset: str | None = None, split: str | None = None,
                n_ref: int | None = None) -> str:
    """Protocol-encoded names, e.g. fid10k_lenet_fashion_mnist_train (full split) or
    fid10k_inception_celeba_train50k. The extractor is always spelled out, so a FID on the
    suite's LeNet features can never pass for an Inception FID."""
    name = f"{metric}{count(n)}_{extractor}"
    if dataset:
        name += f"_{dataset}"
    if split:
        name += f"_{split}" + (count(n_ref) if n_ref else "")
    return name
