"""What a dataset is: its spec in the registry, the in-memory sources, and `DataInfo` (what a
Trainer may know about its data). Everything above the data layer speaks these types."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from suite.core.errors import ConfigError, DataError, PluginError
from suite.core.registration import check_name, origin


@dataclass(frozen=True)
class DataInfo:
    """What a Trainer may know about its data: shape of one example and how many there are."""

    name: str
    kind: str  # "image" | "points" | "unpaired"
    shape: tuple[int, ...]  # (C, H, W) for images, (2,) for points
    n_train: int
    steps_per_epoch: int


@dataclass
class TensorSource:
    """In-memory examples in [-1, 1] (images N x C x H x W, or points N x 2) and labels."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class PairSource:
    """Unpaired two-domain data (CycleGAN): independent A and B sets."""

    a: TensorSource | torch.utils.data.Dataset
    b: TensorSource | torch.utils.data.Dataset

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))


@dataclass
class Loaded:
    name: str
    kind: str  # "points" | "image" | "unpaired"
    train: TensorSource | PairSource | torch.utils.data.Dataset
    test: TensorSource | PairSource | torch.utils.data.Dataset | None
    shape: tuple[int, ...]
    meta: dict = field(default_factory=dict)  # e.g. mixture modes, class names


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    description: str
    how_to_get: str  # shown when the data is missing
    native_size: int  # 0 for points
    load: Callable[..., Loaded]
    classes: tuple[str, ...] = ()
    channels: int = 1  # of one image (2: the coordinates of a point)
    has_test: bool = True  # a held-out split exists (memorization checks need one)
    # The local files that hold it (None where one is missing): a cheap cache identity.
    files: Callable[..., list[Path | None]] | None = None
    # Generated samples are judged against this dataset (an unpaired pair: its A domain).
    evaluated_as: str = ""
    identity: str = ""  # a content hash, for sets held in memory (a user's reference folder)
    origin: dict = field(default_factory=dict)  # the plugin it came from (empty: built in)

    @property
    def reference(self) -> str:
        return self.evaluated_as or self.name


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """The registration door for datasets, built-in (catalogue.py) or plugin."""
    check_name("dataset", spec.name, DATASETS)
    if spec.kind not in ("image", "points", "unpaired"):
        raise PluginError(f"dataset '{spec.name}': kind must be image, points or unpaired, got {spec.kind!r}")
    if not callable(spec.load):
        raise PluginError(f"dataset '{spec.name}': load must be a function returning a Loaded")
    DATASETS[spec.name] = dataclasses.replace(spec, origin=origin()) if origin() else spec
    return DATASETS[spec.name]


def in_memory_reference(x: torch.Tensor, name: str | None = None) -> DatasetSpec:
    """A reference set the user brings (images N x C x H x W in [-1, 1]) as a dataset of its own,
    named `ref-<content hash>` unless named: its statistics are cached under that content."""
    digest = hashlib.sha256(x.add(1).mul(127.5).round().to(torch.uint8).numpy().tobytes()
                            + str(tuple(x.shape)).encode()).hexdigest()[:16]
    name = name or f"ref-{digest[:8]}"
    if name in DATASETS:
        if DATASETS[name].identity == digest:
            return DATASETS[name]
        raise ConfigError(f"--reference-name {name} is already a dataset of other images; choose another name")
    loaded = Loaded(name, "image", TensorSource(x), None, tuple(x.shape[1:]))
    spec = DatasetSpec(name, "image", f"{len(x)} reference images brought by the user", "", int(x.shape[-1]),
                       lambda **_: loaded, channels=int(x.shape[1]), has_test=False, identity=digest)
    DATASETS[name] = spec  # not through the door: its name carries a hyphen, so no dataset can take it
    return spec


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def fingerprint(name: str, data_root=None) -> str | None:
    """A cheap identity of a dataset's local copy (file paths, sizes, times) for cache keys,
    without decoding it. None when it cannot be told cheaply."""
    spec = get_spec(name)
    if spec.identity:
        return spec.identity
    if spec.files is None:
        return None
    found = spec.files(data_root)
    if not found or any(p is None for p in found):
        return None
    parts = [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in found]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def data_info(loaded: Loaded, batch_size: int) -> DataInfo:
    n = len(loaded.train)
    if n < batch_size:
        raise DataError(f"dataset '{loaded.name}' has {n} training examples, fewer than batch_size={batch_size}")
    return DataInfo(loaded.name, loaded.kind, tuple(loaded.shape), n, n // batch_size)
