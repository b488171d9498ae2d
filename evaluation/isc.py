"""Inception Score (Salimans et al. 2016): exp E[KL(p(y|x) || p(y))] over 10 splits, computed by
torch-fidelity from class logits (Inception's, or the domain classifier's)."""

from __future__ import annotations

import torch

from evaluation.defaults import DEFAULTS


def inception_score(logits: torch.Tensor, splits: int = DEFAULTS["isc_splits"],
                    seed: int = DEFAULTS["seed"]) -> tuple[float, float]:
    # heavy optional: torch-fidelity pulls in torchvision's model zoo (~1 s); only IS needs it
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=seed)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]
