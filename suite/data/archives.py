"""Readers for the official CIFAR-10 / CIFAR-100 and STL-10 archives, unpacked where the user
put them (https://www.cs.toronto.edu/~kriz/cifar.html, https://cs.stanford.edu/~acoates/stl10/).
CIFAR's binary version is read as bytes; its python version through `SafeUnpickler`, which
rebuilds numpy arrays, lists, dicts, strings and bytes and refuses every other global, so a
crafted batch file cannot run code. Pure I/O: uint8 arrays N x C x H x W and int64 labels.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from suite.core.errors import DataError

CIFAR_SIDE, STL_SIDE = 32, 96
CIFAR10_BINARY = "cifar-10-batches-bin"
CIFAR10_PYTHON = "cifar-10-batches-py"
CIFAR100_BINARY = "cifar-100-binary"
CIFAR100_PYTHON = "cifar-100-python"
STL10_BINARY = "stl10_binary"
CIFAR10_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_SPLITS = {"train": ["train"], "test": ["test"]}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


class SafeUnpickler(pickle.Unpickler):
    """Only what a CIFAR batch holds: numpy's array reconstruction (ndarray, dtype, the
    `_reconstruct` helper under its old and new module names) and `_codecs.encode` (how protocol 2
    writes bytes from Python 3), besides pickle's own containers."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def safe_load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a CIFAR batch ({str(e)[:120]}); only arrays, lists, dicts, strings and bytes "
                        "are accepted") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR's binary layout: per image `label_bytes` label bytes, then 1024 R, 1024 G, 1024 B."""
    raw = np.fromfile(path, dtype=np.uint8)
    size = label_bytes + 3 * CIFAR_SIDE * CIFAR_SIDE
    if raw.size == 0 or raw.size % size:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {size}-byte CIFAR records (truncated?)")
    rec = raw.reshape(-1, size)
    return rec[:, label_bytes:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), rec[:, label_bytes - 1].astype(np.int64)


def _python_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_load(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' is not an N x 3072 uint8 array")
    if labels is None or len(labels) != len(data):
        raise DataError(f"{path}: '{label_key}' does not give one label per image")
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), np.asarray(labels, dtype=np.int64)


def cifar_folder(candidates: list[Path], classes: int) -> tuple[Path, str] | None:
    """The first candidate holding the archive unpacked, and its version (binary | python)."""
    names = (CIFAR10_BINARY, CIFAR10_PYTHON) if classes == 10 else (CIFAR100_BINARY, CIFAR100_PYTHON)
    splits = CIFAR10_SPLITS if classes == 10 else CIFAR100_SPLITS
    for root in candidates:
        for name, version in zip(names, ("binary", "python")):
            folder = root / name
            suffix = ".bin" if version == "binary" else ""
            if all((folder / f"{f}{suffix}").is_file() for files in splits.values() for f in files):
                return folder, version
    return None


def cifar_files(folder: Path, version: str, classes: int) -> list[Path]:
    splits = CIFAR10_SPLITS if classes == 10 else CIFAR100_SPLITS
    return [folder / (f + (".bin" if version == "binary" else "")) for files in splits.values() for f in files]


def read_cifar(folder: Path, version: str, classes: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x 3 x 32 x 32 and the labels (CIFAR-100: the 100 fine labels) of one split."""
    files = (CIFAR10_SPLITS if classes == 10 else CIFAR100_SPLITS)[split]
    parts = []
    for name in files:
        if version == "binary":
            parts.append(_records(folder / f"{name}.bin", 1 if classes == 10 else 2))
        else:
            parts.append(_python_batch(folder / name, "labels" if classes == 10 else "fine_labels"))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cifar100_classes(folder: Path, version: str) -> tuple[str, ...]:
    if version == "python" and (folder / "meta").is_file():
        names = safe_load(folder / "meta").get("fine_label_names", [])
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if (folder / "fine_label_names.txt").is_file():
        return tuple(line.strip() for line in (folder / "fine_label_names.txt").read_text().splitlines() if line.strip())
    return tuple(str(i) for i in range(100))


def stl_images(path: Path) -> np.ndarray:
    """STL-10's X files: uint8 images of 3 x 96 x 96, each channel stored column-major; memory-mapped
    (the unlabeled split is 2.8 GB)."""
    n, rem = divmod(path.stat().st_size, 3 * STL_SIDE * STL_SIDE)
    if rem or not n:
        raise DataError(f"{path}: {path.stat().st_size} bytes is not a whole number of 96x96 RGB images")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, STL_SIDE, STL_SIDE)).transpose(0, 1, 3, 2)


def stl_labels(path: Path, n: int) -> np.ndarray:
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1  # stored 1..10
    if len(y) != n:
        raise DataError(f"{path}: {len(y)} labels for {n} images")
    return y
