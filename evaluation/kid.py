"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
kernel over random subsets. torch-fidelity implements it; this wraps it with our defaults."""

from __future__ import annotations

import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from evaluation.defaults import DEFAULTS


def kid(gen: torch.Tensor, real: torch.Tensor, subsets: int = DEFAULTS["kid_subsets"],
        subset_size: int = DEFAULTS["kid_subset_size"], seed: int = DEFAULTS["seed"]) -> tuple[float, float]:
    size = min(subset_size, len(gen), len(real))
    out = kid_features_to_metric(gen.double(), real.double(), kid_subsets=subsets, kid_subset_size=size,
                                 kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1, rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]
