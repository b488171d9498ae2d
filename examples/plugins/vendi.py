"""The Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for
Machine Learning") as a plugin metric: one registration, nothing else in the suite changes.

    python -m suite evaluate --samples samples.npy --dataset fashion_mnist --plugin examples/plugins/vendi.py
    python -m suite benchmark gan_fashion dcgan_fashion --metric vendi --plugin examples/plugins/vendi.py

VS = exp(-sum_i l_i log l_i) over the eigenvalues l_i of K / n, K the cosine-similarity kernel of
the generated samples' features: 1 when every sample is the same, n for n orthogonal ones (the
effective number of distinct samples). K / n = X X^T / n for unit rows X has the nonzero
eigenvalues of X^T X / n, which is d x d: the cheaper of the two is decomposed.
"""

from __future__ import annotations

import math

import torch

from evaluation import Metric, register_metric


def vendi_score(features: torch.Tensor) -> float:
    x = features.double().flatten(1)
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    n = len(x)
    gram = x.T @ x / n if x.shape[1] < n else x @ x.T / n
    eig = torch.linalg.eigvalsh(gram).clamp(min=0)
    eig = eig[eig > 1e-12]
    return float(torch.exp(-(eig * eig.log()).sum()))


register_metric(Metric(
    "vendi", "Vendi score (Friedman & Dieng 2023): effective number of distinct samples, cosine kernel on the "
    "features", "max", "effective number of samples", bounds=(1.0, math.inf),
    compute=lambda inp: vendi_score(inp.features), name=lambda p: p.name("vendi", split=None), full_only=False))
