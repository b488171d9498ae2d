"""Decode once: a file-backed dataset's training images, through the exact transform a run
applies, stored as one uint8 array (N x C x H x W) beside a manifest, read memory-mapped by runs.

    python -m suite prepare lsun_bedroom --size 64 --data-root /data
    python -m suite run wgan_lsun --data-root /data          # uses the prepared file (tag suite.data_source)
    python -m suite run wgan_lsun --set prepared=false       # decodes on the fly

The manifest names the source (its fingerprint: file paths, sizes, times), the transform (its
repr) and the count; a run whose source or transform no longer matches is refused in one line.
Writing goes to `<file>.partial` with its progress beside it, so an interrupted prepare resumes
where it stopped; the finished file and manifest appear by rename, never half-written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from suite.core import paths
from suite.core.errors import ConfigError, DataError
from suite.core.progress import Progress
from suite.data.readers import ArrayImages, ImageFiles, LMDBImages
from suite.data.spec import Loaded, fingerprint

FORMAT = "suite-prepared-v1"
CHUNK = 256  # images per write (and per progress update)


def folder() -> Path:
    return paths.home() / "prepared"


def file_for(name: str, size: int) -> Path:
    return folder() / f"{name}-{size}px.npy"


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def describe(ds) -> str:
    """What a run would do to each image: the reader and its transform."""
    if isinstance(ds, (ImageFiles, LMDBImages)):
        return f"{type(ds).__name__} -> {ds.transform!r}".replace("\n", " ")
    if isinstance(ds, torch.utils.data.ConcatDataset):
        return " + ".join(describe(d) for d in ds.datasets)
    if isinstance(ds, ArrayImages):
        return f"ArrayImages(size={ds.size})"
    return type(ds).__name__


def _expected(name: str, size: int, loaded: Loaded, data_root) -> dict:
    source = fingerprint(name, data_root)
    if source is None:
        raise DataError(f"dataset '{name}': its files cannot be fingerprinted, so a prepared copy could not be "
                        "checked against them")
    return {"format": FORMAT, "dataset": name, "size": size, "shape": list(loaded.shape), "count": len(loaded.train),
            "source": source, "transform": describe(loaded.train)}


def preparable(name: str, loaded: Loaded) -> None:
    if loaded.kind != "image":
        raise ConfigError(f"dataset '{name}' is {loaded.kind}: its random crops and flips are drawn per step, so it "
                          "is decoded on the fly (suite prepare takes image datasets)")
    if not isinstance(loaded.train, torch.utils.data.Dataset) or not len(loaded.train):
        raise ConfigError(f"dataset '{name}' is held in memory already: nothing to prepare")


def _u8(batch: torch.Tensor) -> np.ndarray:
    """The transform's output (2k/255 - 1, float32) back to its integer k, exactly."""
    return batch.add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8).numpy()


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def prepare(name: str, size: int, loaded: Loaded, data_root=None, workers: int = 0, progress: bool = True) -> Path:
    """Decode and store `loaded.train` (loaded at `size`, on the fly); resumes a `.partial`."""
    preparable(name, loaded)
    expected = _expected(name, size, loaded, data_root)
    path = file_for(name, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and _manifest_path(path).is_file() and json.loads(_manifest_path(path).read_text()) == expected:
        return path  # already prepared from this very source
    partial, state = path.with_name(path.name + ".partial"), path.with_name(path.name + ".partial.json")
    n, shape = expected["count"], tuple(expected["shape"])
    done = 0
    if partial.is_file() and state.is_file():
        saved = json.loads(state.read_text())
        done = saved.get("done", 0) if saved.get("expected") == expected else 0
    out = np.lib.format.open_memmap(partial, mode="r+" if done else "w+", dtype=np.uint8, shape=(n, *shape))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(loaded.train, range(done, n)), batch_size=CHUNK,
                                         num_workers=workers, shuffle=False)
    bar = Progress(n, done, desc=f"prepare {name} {size}px", enabled=progress)
    at = done
    for batch in loader:
        out[at : at + len(batch)] = _u8(batch)
        at += len(batch)
        out.flush()
        _write_json(state, {"expected": expected, "done": at})
        bar.update(at)
    bar.close()
    del out
    os.replace(partial, path)
    _write_json(_manifest_path(path), expected)
    state.unlink(missing_ok=True)
    return path


def use(name: str, size: int, loaded: Loaded, data_root=None) -> Loaded:
    """`loaded` reading a matching prepared file, memory-mapped, if one exists (meta['source']
    says which); a prepared file made from another copy or with another transform is refused."""
    path = file_for(name, size)
    if loaded.kind != "image" or not isinstance(loaded.train, torch.utils.data.Dataset) or not path.is_file():
        return loaded
    manifest = json.loads(_manifest_path(path).read_text()) if _manifest_path(path).is_file() else {}
    expected = _expected(name, size, loaded, data_root)
    if manifest != expected:
        what = next((k for k in ("source", "transform", "count", "shape", "format") if manifest.get(k) != expected[k]),
                    "manifest")
        raise DataError(f"the prepared {path} does not match dataset '{name}' as it is now (its {what} changed since "
                        f"`suite prepare`): run `python -m suite prepare {name} --size {size}` again, or "
                        "--set prepared=false to decode on the fly")
    array = np.load(path, mmap_mode="r")
    if array.shape != (expected["count"], *expected["shape"]):
        raise DataError(f"the prepared {path} holds {array.shape}, its manifest says {expected['count']} x "
                        f"{expected['shape']}: prepare it again")
    loaded.train = ArrayImages(array)
    loaded.meta["source"] = f"prepared {path}"
    return loaded
