"""Evaluation speed: Fréchet distance vs scipy's sqrtm, exact k-NN vs a plain torch.cdist loop.

    tox -e bench     (or: pytest tests/benchmarks -o python_files=bench_*.py --benchmark-only)
"""

from __future__ import annotations

import itertools

import pytest
import torch

from evaluation import fid
from evaluation.neighbours import knn
from tests.benchmarks.conftest import EXTRA, RESULTS, check, goal, record

goal("frechet", "min", 10.0, "Fréchet distance 2048-d: speed-up over scipy.linalg.sqrtm")
goal("knn", "max", 1.0, "exact 1-NN 10k x 60k Fashion pixels: time vs torch.cdist loop")
goal("copies", "max", 1.0, "edit-invariant copy search 10k x 60k Fashion: time vs the same torch.cdist loop")


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


def test_copies_ours(benchmark, fashion_pixels):
    """The search behind `edit_copies`: shifts, mirror, zoom, re-lighting (the training side is
    prepared once per evaluation context, so it is not timed)."""
    from evaluation import copies

    q, r = fashion_pixels
    search = copies.CopySearch(r.view(-1, 1, 28, 28))
    found = benchmark.pedantic(search, args=(q.view(-1, 1, 28, 28),), rounds=2, iterations=1)
    record("copies", "ours", benchmark)
    assert found["distance"].shape == (10_000,)


def test_copies_baseline(benchmark, fashion_pixels):
    q, r = fashion_pixels
    benchmark.pedantic(cdist_loop, args=(q, r), rounds=2, iterations=1)
    record("copies", "baseline", benchmark)
    check("copies")


# --------------------------------------------------------------------------- matmul peak for the k-NN share

def test_matmul_peak(benchmark):
    """The machine's measured float32 GEMM rate, against which the k-NN search is reported."""
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a @ b
    benchmark.pedantic(lambda: a @ b, rounds=5, iterations=1)
    peak = 2 * 4096**3 / benchmark.stats.stats.min / 1e9
    knn_note = EXTRA.get("knn", "")
    if knn_note:
        achieved = float(knn_note.split()[0])
        EXTRA["knn"] = f"{achieved:.0f} GFLOP/s = {achieved / peak:.0%} of the measured matmul peak {peak:.0f} GFLOP/s"
    assert peak > 0


# --------------------------------------------------------------------------- FID time share and the cache

goal("fid_share", "min", 0.9, "FID of 10k Fashion samples: share of time in the feature network's forward")
goal("cached_eval", "max", 0.2, "second evaluation (cached reference statistics) / first, Fashion 10k")


@pytest.fixture(scope="module")
def fashion_eval(tmp_path_factory):
    import os
    import shutil

    from evaluation import classifier
    from suite import data

    cache = tmp_path_factory.mktemp("bench_cache")
    old = os.environ.get("SUITE_CACHE")
    os.environ["SUITE_CACHE"] = str(cache / "warm")
    classifier.load_or_train("fashion_mnist")  # once, outside any timing
    samples = data.resize(data.load("fashion_mnist").test.x[:10_000], 32)
    yield cache, samples
    shutil.rmtree(cache, ignore_errors=True)
    if old is None:
        os.environ.pop("SUITE_CACHE", None)
    else:
        os.environ["SUITE_CACHE"] = old


def test_fid_share(benchmark, fashion_eval):
    """pytest-benchmark times the whole FID (extractor with its preprocessing, statistics, Fréchet
    distance); before each round, untimed by it, the feature network's forward alone is timed
    on the same inputs prepared as the extractor prepares them."""
    import time

    from evaluation import evaluate, features

    _, samples = fashion_eval
    ctx = evaluate.Context("fashion_mnist")
    ref = ctx.ref("train")
    ext = ctx.extractor
    chunks = [features.prepare_images(samples[i : i + ext.batch_size], ext.size)
              for i in range(0, len(samples), ext.batch_size)]
    forward_times = []

    def forward():
        t0 = time.perf_counter()
        with torch.no_grad():
            for chunk in chunks:
                ext.fn(chunk)
        forward_times.append(time.perf_counter() - t0)
        return (), {}

    def whole():
        f = ext(samples)["features"]
        return fid.frechet_distance(*fid.statistics(f), ref["mu"], ref["sigma"])

    forward()
    whole()
    benchmark.pedantic(whole, setup=forward, rounds=7, iterations=1)
    record("fid_share", "ours", benchmark)
    RESULTS["fid_share"]["baseline"] = min(forward_times)
    check("fid_share")


def _cold_cache(cache_root):
    """A cache holding only the classifier: the reference statistics must be computed."""
    import os
    import shutil

    fresh = cache_root / f"cold{next(_cold)}"
    shutil.copytree(cache_root / "warm" / "classifiers", fresh / "classifiers")
    os.environ["SUITE_CACHE"] = str(fresh)
    return (), {}


_cold = itertools.count()


def test_eval_first(benchmark, fashion_eval):
    from evaluation import evaluate

    cache, samples = fashion_eval
    benchmark.pedantic(lambda: evaluate.Context("fashion_mnist").evaluate(samples, full=False),
                       setup=lambda: _cold_cache(cache), rounds=2, iterations=1)
    record("cached_eval", "baseline", benchmark)


def test_eval_second(benchmark, fashion_eval):
    from evaluation import evaluate

    _, samples = fashion_eval
    evaluate.Context("fashion_mnist").evaluate(samples, full=False)  # fills this cache
    benchmark.pedantic(lambda: evaluate.Context("fashion_mnist").evaluate(samples, full=False), rounds=3,
                       iterations=1)
    record("cached_eval", "ours", benchmark)
    check("cached_eval")
