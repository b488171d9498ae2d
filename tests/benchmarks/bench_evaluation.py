"""Evaluation speed: Fréchet distance vs scipy's sqrtm, exact k-NN vs a plain torch.cdist loop.

    tox -e bench     (or: pytest tests/benchmarks -o python_files=bench_*.py --benchmark-only)
"""

from __future__ import annotations

import pytest
import torch

from evaluation import fid
from evaluation.neighbours import knn
from tests.benchmarks.conftest import EXTRA, check, goal, record

goal("frechet", "min", 10.0, "Fréchet distance 2048-d: speed-up over scipy.linalg.sqrtm")
goal("knn", "max", 1.0, "exact 1-NN 10k x 60k Fashion pixels: time vs torch.cdist loop")


@pytest.fixture(scope="module")
def stats_2048():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(2048, 2048, generator=g) / 45
    f1 = (torch.randn(6000, 2048, generator=g) @ basis).relu()
    f2 = (torch.randn(6000, 2048, generator=g) @ basis + 0.05).relu()
    return (*fid.statistics(f1), *fid.statistics(f2))


def sqrtm_fid(mu1, s1, mu2, s2):
    """The classic implementation (pytorch-fid / torch-fidelity): scipy.linalg.sqrtm."""
    import numpy as np
    from scipy import linalg

    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy()) + np.trace(s2.numpy())
                 - 2 * np.trace(covmean.real))


def test_frechet_ours(benchmark, stats_2048):
    value = benchmark.pedantic(fid.frechet_distance, args=stats_2048, rounds=3, iterations=1)
    record("frechet", "ours", benchmark)
    assert value > 0


def test_frechet_baseline(benchmark, stats_2048):
    benchmark.pedantic(sqrtm_fid, args=stats_2048, rounds=2, iterations=1)
    record("frechet", "baseline", benchmark)
    check("frechet")


@pytest.fixture(scope="module")
def fashion_pixels():
    from suite import data

    d = data.load("fashion_mnist")
    return d.test.x[:10_000].flatten(1), d.train.x.flatten(1)


def cdist_loop(queries, refs, chunk=2048):
    """The plain baseline: torch.cdist per query chunk against all refs, then the minimum."""
    out_d, out_i = [], []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], refs)
        v, j = d.min(1)
        out_d.append(v)
        out_i.append(j)
    return torch.cat(out_d), torch.cat(out_i)


def test_knn_ours(benchmark, fashion_pixels):
    q, r = fashion_pixels
    d, i = benchmark.pedantic(knn, args=(q, r, 1), rounds=2, iterations=1)
    record("knn", "ours", benchmark)
    flops = 2 * len(q) * len(r) * q.shape[1]
    EXTRA["knn"] = f"{flops / benchmark.stats.stats.median / 1e9:.0f} GFLOP/s"
    assert d.shape == (10_000, 1)


def test_knn_baseline(benchmark, fashion_pixels):
    q, r = fashion_pixels
    benchmark.pedantic(cdist_loop, args=(q, r), rounds=2, iterations=1)
    record("knn", "baseline", benchmark)
    check("knn")
