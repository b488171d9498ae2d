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
from suite import checkpoint, data, paths


def split_source(loaded: data.Loaded, split: str):
    src = loaded.train if split == "train" else loaded.test
    if src is None:
        raise ValueError(f"dataset {loaded.name} has no '{split}' split")
    return src


def real_images(loaded: data.Loaded, split: str, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """The first n of a fixed permutation of a split (all of it when n is None), in [-1, 1]."""
    src = split_source(loaded, split)
    if isinstance(src, data.PairSource):
        src = src.a
    total = len(src)
    idx = torch.arange(total) if not n or n >= total else \
        torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    if isinstance(src, data.TensorSource):
        return src.x[idx]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(src, idx.tolist()), batch_size=100, num_workers=2)
    return torch.cat(list(loader))


def cache_key(dataset: str, split: str, extractor: Extractor, n: int | None, size: int) -> str:
    spec = {"dataset": dataset, "split": split, "extractor": extractor.name, "weights": extractor.weights_hash,
            "n": n, "size": size, "protocol": PROTOCOL}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def reference(loaded: data.Loaded, split: str, extractor: Extractor, n: int | None = None) -> dict:
    """{'features', 'logits'?, 'mu', 'sigma', 'n', 'key', 'cached'} for a split of real data."""
    size = loaded.shape[-1] if len(loaded.shape) > 1 else 0
    key = cache_key(loaded.name, split, extractor, n, size)
    path = paths.cache_dir("stats") / f"{loaded.name}-{split}-{extractor.name}-{key}.pt"
    if path.exists():
        ref = checkpoint.load(path)
        ref["cached"] = True
        return ref
    out = extractor(real_images(loaded, split, n))
    mu, sigma = fid.statistics(out["features"])
    ref = {**out, "mu": mu, "sigma": sigma, "n": len(out["features"]), "key": key}
    checkpoint.save(ref, path)
    ref["cached"] = False
    return ref


def heldout_nn(loaded: data.Loaded, extractor: Extractor, test: dict, train: dict) -> torch.Tensor:
    """Distance of every held-out example to its nearest training example (the memorization
    baseline), cached under the two references' keys."""
    from evaluation.neighbours import knn

    path = paths.cache_dir("stats") / f"{loaded.name}-heldout-nn-{extractor.name}-{test['key']}-{train['key']}.pt"
    if path.exists():
        return checkpoint.load(path)["d"]
    d, _ = knn(test["features"].flatten(1), train["features"].flatten(1), 1)
    checkpoint.save({"d": d[:, 0]}, path)
    return d[:, 0]
