"""File readers: IDX (MNIST format), image folders, LSUN's LMDB, and the torchvision transforms
of the tutorials. Pure I/O: no registry, no batching."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from suite.core import paths
from suite.core.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def to_unit_range(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float in [-1, 1] (the Normalize(0.5, 0.5) of the tutorials)."""
    return images_u8.float().div_(127.5).sub_(1.0)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize of a float batch, antialiased when shrinking (as torchvision's Resize)."""
    if size == 0 or x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = []
    for i in range(0, len(x), 4096):
        out.append(F.interpolate(x[i : i + 4096], size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=size < x.shape[-1]))
    return torch.cat(out).clamp_(-1, 1)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise DataError(f"{path}: truncated IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(dims):
        raise DataError(f"{path}: truncated IDX file ({len(data) - offset} of {math.prod(dims)} bytes)")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


class ImageFiles(torch.utils.data.Dataset):
    """Images from a list of files (CelebA's img_align_celeba, an LSUN export, horse2zebra)."""

    def __init__(self, files: list[Path], transform=None):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image  # heavy optional: only file-backed datasets decode images

        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
        return self.transform(im)


_LMDB_ENVS: dict[str, tuple[object, int]] = {}  # LMDB path -> (its read-only handle, the pid that opened it)


def _lmdb_env(path: Path):
    """One read-only handle per LMDB and process: LMDB refuses a second open of the same
    environment in one process (a run's training set and its evaluation reference are two readers),
    and a forked DataLoader worker inherits the parent's handle, closed there and opened anew."""
    import lmdb  # heavy optional: LSUN only

    key = str(path.resolve())
    env, owner = _LMDB_ENVS.get(key, (None, None))
    if env is not None and owner != os.getpid():
        env.close()  # this process's copy only: the parent's handle stays open
        env = None
    if env is None:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
        _LMDB_ENVS[key] = (env, os.getpid())
    return env


class LMDBImages(torch.utils.data.Dataset):
    """Encoded images in an LMDB (LSUN's format). Written here rather than using
    torchvision.datasets.LSUN because that class writes its key cache into the current
    directory; ours goes to SUITE_HOME/cache."""

    def __init__(self, path: Path, transform=None):
        self.path, self.transform, self.env = path, transform, None
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
        cache = paths.cache_dir("lmdb") / f"{digest}.keys"
        if cache.exists():
            self.keys = cache.read_bytes().split(b"\n")
        else:
            with _lmdb_env(path).begin(write=False) as txn:
                self.keys = [k for k, _ in txn.cursor()]
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(b"\n".join(self.keys))
            tmp.replace(cache)
        if not self.keys or self.keys == [b""]:
            raise DataError(f"{path}: the LMDB holds no images")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        from PIL import Image  # heavy optional: only file-backed datasets decode images

        if self.env is None:  # opened lazily: one handle per DataLoader worker
            self.env = _lmdb_env(self.path)
        with self.env.begin(write=False) as txn:
            buf = txn.get(self.keys[i])
        with Image.open(io.BytesIO(buf)) as im:
            im = im.convert("RGB")
        return self.transform(im)


def from_u8(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> [-1, 1] with torchvision's own arithmetic (ToTensor's /255, Normalize(0.5, 0.5)),
    so decoded-once pixels equal those of the on-the-fly transform to the bit."""
    return x.float().div(255).sub_(0.5).div_(0.5)


class ArrayImages(torch.utils.data.Dataset):
    """Images from a uint8 N x C x H x W array (a memory map: nothing is read before it is
    indexed), resized to `size` where it differs."""

    def __init__(self, array: np.ndarray, size: int = 0):
        self.array, self.size = array, size

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """A DataLoader's whole batch in one read of the map, in file order (torch calls this
        instead of one __getitem__ per image)."""
        order = np.argsort(indices, kind="stable")
        block = np.array(self.array[np.asarray(indices)[order]])  # a copy: the map is read-only
        x = from_u8(torch.from_numpy(block))[torch.from_numpy(np.argsort(order, kind="stable"))]
        return list(resize(x, self.size) if self.size and self.size != x.shape[-1] else x)


class UnpairedFiles(torch.utils.data.Dataset):
    """Index (i, j) -> (A[i], B[j]); the batch sampler draws both indices."""

    def __init__(self, a: ImageFiles, b: ImageFiles):
        self.a, self.b = a, b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, ij):
        i, j = ij
        return self.a[i], self.b[j]


def transform(image_size: int, load_size: int = 0, flip: bool = False):
    from torchvision import transforms as T  # heavy optional: only file-backed datasets

    if load_size > image_size:  # CycleGAN: resize to load_size, random crop, flip
        ops = [T.Resize((load_size, load_size), T.InterpolationMode.BICUBIC), T.RandomCrop(image_size)]
    else:  # DCGAN tutorial: Resize + CenterCrop
        ops = [T.Resize(image_size), T.CenterCrop(image_size)]
    if flip:
        ops.append(T.RandomHorizontalFlip())
    return T.Compose(ops + [T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
