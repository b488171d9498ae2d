"""Fréchet distance between Gaussians fitted to features (Heusel et al. 2017).

tr(sqrt(S1 S2)) is the sum of square roots of the eigenvalues of S1 S2, which are those of the
symmetric PSD matrix L^T S2 L for S1 = L L^T (Cholesky; for a singular S1, L = V sqrt(W) from its
eigendecomposition). One factorization and one symmetric eigenvalue solve in float64 replace
scipy.linalg.sqrtm's general Schur method, which is slower and leaves small imaginary parts.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats


def statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (float64), as torch-fidelity and torchmetrics compute them."""
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    sigma = centred.T @ centred / max(len(f) - 1, 1)
    return mu, sigma


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float64)


def psd_factor(s: torch.Tensor) -> torch.Tensor:
    """L with S = L L^T: Cholesky, or V sqrt(W) for a singular S (dead features, fewer samples
    than dimensions)."""
    factor, info = torch.linalg.cholesky_ex(s)
    if info.item() != 0:
        w, v = torch.linalg.eigh(s)
        factor = v * w.clamp(min=0).sqrt()
    return factor


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)); numpy arrays or tensors."""
    mu1, mu2, s1, s2 = _t(mu1), _t(mu2), _t(sigma1), _t(sigma2)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"statistics do not match: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)} / {tuple(s2.shape)}")
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    factor = psd_factor(s1)
    middle = factor.T @ s2 @ factor
    ev = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    diff = mu1 - mu2
    value = diff.dot(diff) + s1.trace() + s2.trace() - 2 * ev.sqrt().sum()
    return float(value)


def fid_from_features(f1: torch.Tensor, f2: torch.Tensor) -> float:
    return frechet_distance(*statistics(f1), *statistics(f2))


def fid_infinity(gen: torch.Tensor, mu_ref, sigma_ref, points: int = 15, seed: int = 0) -> float:
    """FID extrapolated to infinitely many generated samples (Chong & Forsyth 2020, "Effectively
    Unbiased FID and Inception Score and where to find them"): FID_N is linear in 1/N, so FID
    at `points` sample counts from N/5 to N (random subsets of the generated features, as in
    the authors' code), fitted by least squares, read off at 1/N = 0. Runs evaluated with
    different N compare on this number; FID_N's upward bias shrinks only as 1/N."""
    n = len(gen)
    counts = np.unique(np.linspace(max(2, n // 5), n, points).astype(int))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    values = [frechet_distance(*statistics(gen[order[:c]]), mu_ref, sigma_ref) for c in counts]
    return float(stats.linregress(1.0 / counts, values).intercept)
