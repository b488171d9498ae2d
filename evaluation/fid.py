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


FIDINF_START = 5000  # Chong & Forsyth's smallest sample count (their code: linspace(5000, N, 15))


def fidinf_original(n: int) -> bool:
    """Does the original FID-infinity protocol exist for N samples (counts from 5,000 to N)?"""
    return n > FIDINF_START


def fidinf_counts(n: int, points: int = 15) -> np.ndarray:
    """The sample counts FID is measured at: 15 from 5,000 to N (from N/10 where N <= 5,000)."""
    start = FIDINF_START if fidinf_original(n) else max(2, n // 10)
    return np.unique(np.linspace(start, n, points).astype(int))


def fid_infinity(gen: torch.Tensor, mu_ref, sigma_ref, points: int = 15, seed: int = 0) -> float:
    """FID extrapolated to infinitely many generated samples (Chong & Forsyth 2020, "Effectively
    Unbiased FID and Inception Score and where to find them"): FID_N is linear in 1/N, so FID at
    `points` sample counts from 5,000 to N (the authors' protocol; for N <= 5,000, where it does
    not exist, from N/10 — the same share as theirs at N = 50,000 — logged as `fidinf_rel`), each
    on a fresh random subset of the generated features as their code draws them, is fitted by
    least squares and read off at 1/N = 0. FID_N's upward bias shrinks only as 1/N; the
    extrapolated value is an estimate and can fall a little below 0 when the true FID is near 0."""
    n = len(gen)
    counts = fidinf_counts(n, points)
    rng = torch.Generator().manual_seed(seed)
    values = [frechet_distance(*statistics(gen[torch.randperm(n, generator=rng)[:c]]), mu_ref, sigma_ref)
              for c in counts]
    return float(stats.linregress(1.0 / counts, values).intercept)
