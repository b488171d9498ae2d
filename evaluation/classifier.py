"""Domain classifiers the suite trains itself: offline feature extractors for FID/KID/PR (the
penultimate layer), IS and the class histograms of the collapse check (the softmax).

    python -m suite train-classifier fashion_mnist

They are cached under SUITE_HOME/cache/classifiers keyed by a hash of the dataset's contents
and every training setting, so a changed setting never reuses a stale network.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from suite import data
from suite.core import checkpoint, paths
from suite.core.errors import ConfigError

ARCH = "lenet-bn-w16-v1"
TRAIN = {"epochs": 3, "batch_size": 128, "lr": 1e-3, "seed": 0, "weight_decay": 5e-4}
SUPPORTED = ("fashion_mnist", "mnist", "digits")


class LeNet(nn.Module):
    """A LeNet-style CNN: two conv blocks, a 128-d penultimate layer, class logits."""

    def __init__(self, in_ch: int, size: int, n_classes: int, width: int = 16, feat: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, feat), nn.ReLU(True),
        )
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(feat, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (penultimate features, logits)."""
        f = self.body(x)
        return f, self.head(self.drop(f))


def _key(name: str, fingerprint: str) -> str:
    """Every training setting and the identity of the local data copy (data.fingerprint)."""
    spec = {"dataset": name, "arch": ARCH, "train": TRAIN, "data": fingerprint}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _content_fingerprint(loaded: data.Loaded) -> str:
    h = hashlib.sha256(loaded.train.x.numpy().tobytes())
    h.update(loaded.train.y.numpy().tobytes())
    return h.hexdigest()[:16]


TRAIN_LOCK_S = 3600.0  # a second process waits this long for the first one's training


def cache_path(name: str, key: str):
    return paths.cache_dir("classifiers") / f"{name}-{ARCH}-{key}.pt"


def accuracy(model: LeNet, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i : i + batch])[1].argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def train(name: str, loaded: data.Loaded, log=print) -> tuple[LeNet, dict]:
    with torch.random.fork_rng(devices=[]):  # never disturb the caller's (a training run's) RNG
        return _train(name, loaded, log)


def _train(name: str, loaded: data.Loaded, log) -> tuple[LeNet, dict]:
    torch.manual_seed(TRAIN["seed"])
    x, y = loaded.train.x, loaded.train.y
    n_classes = int(y.max()) + 1
    # channels-last convolutions train ~1.4x faster on the CPU; the model is the same
    model = LeNet(x.shape[1], x.shape[-1], n_classes).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"], weight_decay=TRAIN["weight_decay"])
    steps = TRAIN["epochs"] * (len(x) // TRAIN["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, TRAIN["lr"] * 3, total_steps=steps)
    g = torch.Generator().manual_seed(TRAIN["seed"])
    t0 = time.perf_counter()
    for epoch in range(TRAIN["epochs"]):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(len(x) // TRAIN["batch_size"]):
            idx = perm[i * TRAIN["batch_size"] : (i + 1) * TRAIN["batch_size"]]
            loss = F.cross_entropy(model(x[idx].contiguous(memory_format=torch.channels_last))[1], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"classifier {name}: epoch {epoch + 1}/{TRAIN['epochs']} loss {loss.item():.3f}")
    acc = accuracy(model, loaded.test.x, loaded.test.y)
    meta = {"dataset": name, "arch": ARCH, "train": TRAIN, "test_accuracy": acc, "n_classes": n_classes,
            "size": x.shape[-1], "channels": x.shape[1], "seconds": time.perf_counter() - t0}
    return model.eval(), meta


def load_or_train(name: str, loaded: data.Loaded | None = None, log=None) -> tuple[LeNet, dict]:
    """The cached classifier of `name`, training it once if needed (data must be local). Nothing
    is logged to MLflow here: evaluation creates no run (`suite train-classifier` logs one)."""
    if name not in SUPPORTED:
        raise ConfigError(f"no domain classifier for '{name}'; supported: {', '.join(SUPPORTED)}")
    fp = data.fingerprint(name) if loaded is None else None
    if fp is None:  # no cheap identity: hash the contents
        loaded = loaded or data.load(name)
        fp = _content_fingerprint(loaded)
    key = _key(name, fp)
    path = cache_path(name, key)
    if (cached := _cached(path, key)) is not None:
        return cached
    with paths.exclusive(path.with_name(path.name + ".lock"), TRAIN_LOCK_S, f"training the {name} classifier"):
        if (cached := _cached(path, key)) is not None:  # trained meanwhile by another process
            return cached
        log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        log(f"training the {name} domain classifier once (cached in {path.parent})")
        model, meta = train(name, loaded or data.load(name), log)
        meta["weights_hash"] = key
        checkpoint.save({"model": model.state_dict(), "meta": meta}, path)
    log(f"classifier {name}: held-out accuracy {meta['test_accuracy']:.4f}")
    return model, meta


def _cached(path, key: str) -> tuple[LeNet, dict] | None:
    """The classifier in its cache file, or None (absent; unusable ones are removed with a note)."""
    if (state := checkpoint.load_cache(path, ("model", "meta"))) is None:
        return None
    try:
        meta = state["meta"]
        model = LeNet(meta["channels"], meta["size"], meta["n_classes"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a cache of another network
        print(f"note: cache file {path} is unusable ({str(e).splitlines()[0][:100]}); rebuilding it",
              file=sys.stderr, flush=True)
        path.unlink(missing_ok=True)
        return None
    meta["weights_hash"] = key
    return model.eval(), meta
