"""One DEFAULTS dict for the evaluation API and CLI (metric knowledge is in evaluation.metrics)."""

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
    "copy_shift": 3 / 28,  # edit-invariant copies: shifts of up to 3 pixels at 28 px (1 at 8 px) ...
    "copy_scales": (0.86, 0.93, 1.0, 1.07, 1.16),  # ... zooms in 7 % steps to 16 % either way (a 14 % crop) ...
    "copy_angles": (-6.0, -3.0, 3.0, 6.0),  # ... rotations in degrees ...
    "copy_candidates": 16,  # ... checked exactly against 16 spectral candidates per zoom
    "ct_cells": 3,  # C_T (Meehan et al. 2020) as dgm-eval runs the authors' code: 3 k-means cells ...
    "ct_n_init": 10,  # ... with 10 k-means restarts ...
    "ct_pca_dims": 64,  # ... on features reduced to 64 PCA dimensions ...
    "ct_min_per_cell": 20,  # ... and cells with more than 20 generated samples (tau = 20 / m)
    "mifid_eps": 0.1,  # torchmetrics' cosine_distance_eps
    "ci_boot": 200,  # bootstrap replicates of each sampling interval (evaluation.bootstrap)
    "ci_level": 0.95,
    "seed": 2020,
}

# Version of the feature/statistics protocol: part of every cache key.
PROTOCOL = "v3"  # v3: references keep their labels (the classifier's held-out confusion)

