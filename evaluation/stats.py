"""Reference-side features and statistics, cached on disk.

The cache key hashes every input that changes the result — dataset, split, extractor and its
weights hash, sample count, image size and the protocol version — so a second evaluation against
the same reference loads the file instead of recomputing, and a changed setting never hits a
stale entry. Files are written atomically and read with weights_only=True.
"""

from __future__ import annotations

import hashlib
import json

import torch

from evaluation import fid
from evaluation.defaults import PROTOCOL
from evaluation.features import Extractor
from evaluation.neighbours import knn
from suite import data
from suite.core import checkpoint, paths


def split_source(loaded: data.Loaded, split: str):
    src = loaded.train if split == "train" else loaded.test
    if src is None:
        raise ValueError(f"dataset {loaded.name} has no '{split}' split")
    return src


def subset(total: int, n: int | None, seed: int = 0) -> torch.Tensor:
    """The first n of a fixed permutation (everything when n is None)."""
    if not n or n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]


def real_images(loaded: data.Loaded, split: str, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """A fixed subset of a split (all of it when n is None), in [-1, 1]."""
    src = split_source(loaded, split)
    if isinstance(src, data.PairSource):
        src = src.a
    idx = subset(len(src), n, seed)
    if isinstance(src, data.TensorSource):
        return src.x[idx]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(src, idx.tolist()), batch_size=100, num_workers=2)
    return torch.cat(list(loader))


def cache_key(dataset: str, split: str, extractor: Extractor, n: int | None, size: int, source: str | None = None) -> str:
    """Every parameter the statistics depend on, the data's own identity included (a changed local
    copy, a different reference folder of the same name, never hits a stale cache)."""
    spec = {"dataset": dataset, "split": split, "extractor": extractor.name, "weights": extractor.weights_hash,
            "n": n, "size": size, "protocol": PROTOCOL, "source": source}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def reference(name: str, size: int, split: str, extractor: Extractor, load, n: int | None = None,
              source: str | None = None) -> dict:
    """{'features', 'logits'?, 'mu', 'sigma', 'labels'?, 'class_counts'?, 'n', 'key', 'cached'} for a split of
    real data; `load()` returns the dataset and is called only when the cache misses."""
    key = cache_key(name, split, extractor, n, size, source)
    path = paths.cache_dir("stats") / f"{name}-{split}-{extractor.name}-{key}.pt"
    if (ref := checkpoint.load_cache(path, ("features", "mu", "sigma", "n", "key"))) is not None:
        ref["cached"] = True
        return ref
    loaded = load()
    out = extractor(real_images(loaded, split, n))
    mu, sigma = fid.statistics(out["features"])
    ref = {**out, "mu": mu, "sigma": sigma, "n": len(out["features"]), "key": key}
    src = split_source(loaded, split)
    labels = getattr(src.a if isinstance(src, data.PairSource) else src, "y", None)
    if labels is not None:
        ref["labels"] = labels[subset(len(labels), n)]
        ref["class_counts"] = torch.bincount(ref["labels"])
    checkpoint.save(ref, path)
    ref["cached"] = False
    return ref


def cached_distances(path, compute) -> torch.Tensor:
    """A baseline of distances, computed once and kept under `path` (whose name is its key)."""
    if (cached := checkpoint.load_cache(path, ("d",))) is not None:
        return cached["d"]
    d = compute()
    checkpoint.save({"d": d}, path)
    return d


def heldout_nn(name: str, extractor: Extractor, test: dict, train: dict) -> torch.Tensor:
    """Distance of every held-out example to its nearest training example (the memorization
    baseline), cached under the two references' keys."""
    path = paths.cache_dir("stats") / f"{name}-heldout-nn-{extractor.name}-{test['key']}-{train['key']}.pt"
    return cached_distances(path, lambda: knn(test["features"].flatten(1), train["features"].flatten(1), 1)[0][:, 0])
