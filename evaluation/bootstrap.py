"""Sampling intervals of one evaluation: a bootstrap over the features already computed (no
new forward passes), logged as `<metric>_ci_low` / `_ci_high`.

The interval is the basic (bias-corrected) bootstrap [T - q_hi(T* - T), T - q_lo(T* - T)],
not the percentile one: FID_n is biased upward by O(1/n) and a resample repeats that bias, so
on a Gaussian toy (d 16, n 1,000) the percentile interval covered the population FID in 80 %
of 200 repetitions and the basic one in 96 % (tests/test_intervals.py keeps that measured).
It can therefore lie below a FID value itself: it is an interval for the generator, not for
the estimate.

A replicate draws n of the n generated samples with replacement; with multiplicity w_i of
sample i the statistics are weighted sums, so B replicates cost B weighted covariances (FID),
B weighted kernel sums (KID) and B weighted means of the per-sample values evaluation.prdc returns beside the
metrics (precision, density: per generated sample; recall, coverage: per real sample).
- KID: the unbiased MMD^2 over the whole set, pairs of a sample with its own copies left out
  (a copy is no evidence of closeness), against as many real samples as there are generated
  ones (the PRDC subset; all of a 60k training split cost 4x the whole evaluation on the 2D
  toys); T* - T of that statistic shifts the subset-averaged KID the suite reports.
- Precision and density are means over the generated samples (radii fixed): resampled as they
  are. Recall and coverage are properties of the whole generated set — a resample holds only
  ~63 % of the distinct samples, so every replicate loses coverage (on ring8 the basic interval of
  a recall of 0.993 came out as [1.014, 1.032]). Both are also means over the real reference
  samples given the generated set, so for them the real samples are resampled instead.
"""

from __future__ import annotations

import numpy as np
import torch

from evaluation import fid
from evaluation.defaults import DEFAULTS
from evaluation.kid import _poly

METHOD = (f"basic bootstrap ({DEFAULTS['ci_boot']} replicates, {DEFAULTS['ci_level']:.0%}) over the generated "
          "samples (FID, KID, precision, density) or the real reference samples (recall, coverage); k-NN radii fixed")


def weights(n: int, boot: int = DEFAULTS["ci_boot"], seed: int = DEFAULTS["seed"]) -> torch.Tensor:
    """boot x n multiplicities of a resample with replacement (float64)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.multinomial(n, np.full(n, 1.0 / n), size=boot).astype(np.float64))


def interval(point: float, full: float, replicates: torch.Tensor, level: float = DEFAULTS["ci_level"]) -> tuple:
    """The basic bootstrap interval of `point`: point minus the replicates' upper and lower
    quantiles of T* - T (`full`: the replicated statistic on the whole set)."""
    lo, hi = np.quantile(replicates.numpy() - full, [(1 - level) / 2, (1 + level) / 2])
    return float(point - hi), float(point - lo)


def fid_replicates(gen: torch.Tensor, mu_ref, sigma_ref, w: torch.Tensor) -> torch.Tensor:
    """FID of each weighted resample (weighted mean and unbiased covariance), in batches: the
    reference's factor L (S_ref = L L^T) is computed once and each replicate needs only the
    eigenvalues of L^T S L (fid.py's identity with the roles of the two sides swapped)."""
    f = gen.double()
    n, d = f.shape
    mu_r, s_r = fid._t(mu_ref), fid._t(sigma_ref)
    s_r = (s_r + s_r.T) / 2
    factor = fid.psd_factor(s_r)
    out = []
    per = max(1, int(2.5e7 // (d * d)))  # replicates per batch: ~200 MB of covariances
    for c in range(0, len(w), per):
        wc = w[c : c + per].double()
        mu = wc @ f / n
        sigma = (_second_moments(f, wc) - n * mu[:, :, None] * mu[:, None, :]) / (n - 1)
        middle = factor.T @ sigma @ factor
        ev = torch.linalg.eigvalsh((middle + middle.transpose(1, 2)) / 2).clamp(min=0)
        diff = mu - mu_r
        out.append((diff * diff).sum(1) + sigma.diagonal(dim1=1, dim2=2).sum(1) + s_r.trace() - 2 * ev.sqrt().sum(1))
    return torch.cat(out)


def _second_moments(f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_i w_bi f_i f_i^T for every row b of w (B x d x d)."""
    n, d = f.shape
    if d > 256:  # wide features (Inception): one GEMM per replicate
        return torch.stack([(f * row[:, None]).T @ f for row in w])
    out = torch.zeros(len(w), d * d, dtype=torch.float64)
    step = max(1, int(1.6e7 // (d * d)))  # narrow features: all replicates in one GEMM per block of samples
    for s in range(0, n, step):
        block = f[s : s + step]
        out += w[:, s : s + step] @ (block[:, :, None] * block[:, None, :]).reshape(len(block), d * d)
    return out.reshape(-1, d, d)


def kid_replicates(gen: torch.Tensor, real: torch.Tensor, w: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Unbiased MMD^2 (cubic kernel) of each weighted resample against all of `real`, up to the
    real-real term, which no resample changes (it cancels in T* - T)."""
    g, r = gen.double(), real.double()
    n, m = len(g), len(r)
    wt = w.T.contiguous()  # n x B
    gg = torch.zeros(w.shape[0], dtype=torch.float64)
    diag = torch.zeros(n, dtype=torch.float64)
    cross = torch.zeros(n, dtype=torch.float64)
    for s in range(0, n, chunk):
        k = _poly(g[s : s + chunk], g)
        gg += (w[:, s : s + chunk] * (k @ wt).T).sum(1)
        diag[s : s + chunk] = k.diagonal(s)
        for t in range(0, m, 4 * chunk):
            cross[s : s + chunk] += _poly(g[s : s + chunk], r[t : t + 4 * chunk]).sum(1)
    total, squares = w.sum(1), (w * w).sum(1)
    within_gen = (gg - (w * w) @ diag) / (total * total - squares)
    return within_gen - 2 * (w @ cross) / (n * m)


def prdc_replicates(per_sample: dict, w_gen: torch.Tensor, w_real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision and density of each resample of the generated samples, recall and coverage of
    each resample of the real ones (evaluation.prdc's per-sample values; radii fixed)."""
    counts, n, m = per_sample["counts"], len(per_sample["counts"]), len(per_sample["covered"])
    return {"precision": w_gen @ (counts > 0).double() / n, "density": w_gen @ counts / (per_sample["k"] * n),
            "recall": w_real @ per_sample["recall_hits"] / m, "coverage": w_real @ per_sample["covered"] / m}
