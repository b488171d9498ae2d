"""Dataset registry: name -> loader, plus the batch stream the harness trains from.

Small datasets (2D mixtures, digits, Fashion-MNIST, MNIST) are held in memory as tensors in
[-1, 1] and batched by slicing; large ones (CelebA, LSUN, horse2zebra) are read from files by a
DataLoader. Both follow one seeded permutation per epoch, so a run resumes mid-epoch exactly.
A dataset that is not present raises DatasetNotFound naming where it looked and how to get it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from recipes.base import DataInfo
from suite import paths
from suite.errors import ConfigError, DataError, DatasetNotFound

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


# --------------------------------------------------------------------------- sources


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


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name} registered twice")
    DATASETS[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# --------------------------------------------------------------------------- 2D mixtures


def mixture_modes(name: str) -> tuple[torch.Tensor, float]:
    """Mode centres and std of the VEEGAN / PacGAN toy mixtures."""
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([2 * torch.cos(angles), 2 * torch.sin(angles)], 1).float(), 0.02
    if name == "grid25":
        v = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(v, v), 0.05
    raise KeyError(name)


def sample_mixture(name: str, n: int, seed: int) -> TensorSource:
    modes, std = mixture_modes(name)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(modes), (n,), generator=g)
    x = modes[labels] + std * torch.randn(n, 2, generator=g)
    return TensorSource(x, labels)


def _load_mixture(name: str):
    def load(**_) -> Loaded:
        modes, std = mixture_modes(name)
        return Loaded(name, "points", sample_mixture(name, 50_000, seed=0), sample_mixture(name, 10_000, seed=1),
                      (2,), {"modes": modes, "std": std})

    return load


# --------------------------------------------------------------------------- image helpers


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


def _find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _idx_folders(folder_names: tuple[str, ...], system_dirs: tuple[str, ...], tv_class: str, data_root) -> list[Path]:
    folders = []
    for root in paths.data_roots(data_root):
        folders += [root] + [root / f for f in folder_names] + [root / tv_class / "raw"]
    folders += [Path(d) for d in system_dirs]
    folders.append(paths.home() / "data" / tv_class / "raw")
    return list(dict.fromkeys(folders))


IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _split_files(folders: list[Path]) -> dict[str, tuple[Path | None, Path | None]]:
    """(images, labels) file of each split, None where absent."""
    return {split: (_find_file(folders, img), _find_file(folders, lab)) for split, (img, lab) in IDX_FILES.items()}


def _idx_loader(name: str, folder_names: tuple[str, ...], system_dirs: tuple[str, ...], tv_class: str,
                classes: tuple[str, ...]):
    """Fashion-MNIST / MNIST: IDX files under --data-root, a Debian package, or torchvision."""

    def files(data_root=None) -> dict[str, tuple[Path | None, Path | None]]:
        return _split_files(_idx_folders(folder_names, system_dirs, tv_class, data_root))

    def load(data_root=None, download=False, **_) -> Loaded:
        folders = _idx_folders(folder_names, system_dirs, tv_class, data_root)
        found = _split_files(folders)
        if found["train"][0] is None and download:
            import torchvision

            getattr(torchvision.datasets, tv_class)(str(paths.home() / "data"), download=True)
            found = _split_files(folders)
        splits = {}
        for split, (img, lab) in found.items():
            if img is None or lab is None:
                raise DatasetNotFound(
                    f"dataset '{name}' not found: looked for {IDX_FILES[split][0]}[.gz] in "
                    f"{', '.join(map(str, folders))}. {DATASETS[name].how_to_get}")
            x = torch.from_numpy(read_idx(img).copy()).unsqueeze(1)
            y = torch.from_numpy(read_idx(lab).astype(np.int64))
            if len(x) != len(y):
                raise DataError(f"{img}: {len(x)} images but {len(y)} labels")
            splits[split] = TensorSource(to_unit_range(x), y)
        return Loaded(name, "image", splits["train"], splits["test"], (1, 28, 28), {"classes": classes})

    load.files = files
    return load


def fingerprint(name: str, data_root=None) -> str | None:
    """A cheap identity of a dataset's local copy (file paths, sizes, times; or the package that
    ships it) for cache keys, without decoding it. None when it cannot be told cheaply."""
    spec = get_spec(name)
    if name == "digits":
        import sklearn

        return f"sklearn-{sklearn.__version__}"
    files = getattr(spec.load, "files", None)
    if files is None:
        return None
    parts = []
    for img, lab in files(data_root).values():
        if img is None or lab is None:
            return None
        parts += [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in (img, lab)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))


def _load_digits(**_) -> Loaded:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().div(16).mul(2).sub(1).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1500], perm[1500:]  # fixed held-out split of 297 digits
    return Loaded("digits", "image", TensorSource(x[train], y[train]), TensorSource(x[test], y[test]), (1, 8, 8),
                  {"classes": DIGIT_CLASSES})


def restyle(x: torch.Tensor) -> torch.Tensor:
    """Domain B of `fashion_unpaired`: a fixed, invertible, label-preserving restyling of A
    (inverted intensities through a square-root tone curve: dark garments on a white ground)."""
    unit = (x + 1) / 2
    return (1 - unit.clamp(0, 1).sqrt()) * 2 - 1


def unrestyle(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `restyle`: the ground-truth B -> A translation."""
    unit = (x + 1) / 2
    return (1 - unit.clamp(0, 1)).square() * 2 - 1


def _load_fashion_unpaired(**kw) -> Loaded:
    base = DATASETS["fashion_mnist"].load(**kw)

    def split(src: TensorSource, seed: int) -> PairSource:
        perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(seed))
        half = len(src) // 2
        ia, ib = perm[:half], perm[half:]  # disjoint halves: no image appears in both domains
        return PairSource(TensorSource(src.x[ia], src.y[ia]), TensorSource(restyle(src.x[ib]), src.y[ib]))

    return Loaded("fashion_unpaired", "unpaired", split(base.train, 0), split(base.test, 1), (1, 28, 28),
                  {"classes": FASHION_CLASSES, "restyle": "restyle", "paired_truth": True})


# --------------------------------------------------------------------------- file-backed


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


class ImageFiles(torch.utils.data.Dataset):
    """Images from a list of files (CelebA's img_align_celeba, an LSUN export, horse2zebra)."""

    def __init__(self, files: list[Path], transform=None):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
        return self.transform(im)


class LMDBImages(torch.utils.data.Dataset):
    """Encoded images in an LMDB (LSUN's format). Written here rather than using
    torchvision.datasets.LSUN because that class writes its key cache into the current
    directory; ours goes to SUITE_HOME/cache."""

    def __init__(self, path: Path, transform=None):
        import lmdb

        self.path, self.transform, self.env = path, transform, None
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
        cache = paths.cache_dir("lmdb") / f"{digest}.keys"
        if cache.exists():
            self.keys = cache.read_bytes().split(b"\n")
        else:
            env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
            with env.begin(write=False) as txn:
                self.keys = [k for k, _ in txn.cursor()]
            env.close()
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(b"\n".join(self.keys))
            tmp.replace(cache)
        if not self.keys or self.keys == [b""]:
            raise DataError(f"{path}: the LMDB holds no images")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        import lmdb
        from PIL import Image

        if self.env is None:  # opened lazily: one handle per DataLoader worker
            self.env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False)
        with self.env.begin(write=False) as txn:
            buf = txn.get(self.keys[i])
        with Image.open(io.BytesIO(buf)) as im:
            im = im.convert("RGB")
        return self.transform(im)


class UnpairedFiles(torch.utils.data.Dataset):
    """Index (i, j) -> (A[i], B[j]); the batch sampler draws both indices."""

    def __init__(self, a: ImageFiles, b: ImageFiles):
        self.a, self.b = a, b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, ij):
        i, j = ij
        return self.a[i], self.b[j]


def _transform(image_size: int, load_size: int = 0, flip: bool = False):
    from torchvision import transforms as T

    if load_size > image_size:  # CycleGAN: resize to load_size, random crop, flip
        ops = [T.Resize((load_size, load_size), T.InterpolationMode.BICUBIC), T.RandomCrop(image_size)]
    else:  # DCGAN tutorial: Resize + CenterCrop
        ops = [T.Resize(image_size), T.CenterCrop(image_size)]
    if flip:
        ops.append(T.RandomHorizontalFlip())
    return T.Compose(ops + [T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])


def _candidates(data_root, names: tuple[str, ...]) -> list[Path]:
    out = []
    for root in paths.data_roots(data_root):
        out += [root / n for n in names] + [root]
    return list(dict.fromkeys(out))


def _missing(name: str, looked: list[Path]) -> DatasetNotFound:
    return DatasetNotFound(f"dataset '{name}' not found: looked in {', '.join(map(str, looked))}. "
                           f"{DATASETS[name].how_to_get}")


def _load_celeba(data_root=None, download=False, image_size=64, **_) -> Loaded:
    looked = _candidates(data_root, ("celeba/img_align_celeba", "img_align_celeba", "celeba"))
    if download:
        import torchvision

        torchvision.datasets.CelebA(str(paths.home() / "data"), download=True)
        looked.insert(0, paths.home() / "data" / "celeba" / "img_align_celeba")
    for folder in looked:
        files = image_files(folder) if folder.is_dir() else []
        if files:
            ds = ImageFiles(files, _transform(image_size))
            return Loaded("celeba", "image", ds, None, (3, image_size, image_size), {"root": str(folder)})
    raise _missing("celeba", looked)


def _load_lsun(data_root=None, image_size=64, split="train", **_) -> Loaded:
    looked = _candidates(data_root, ("bedroom_train_lmdb", "lsun/bedroom_train_lmdb", "lsun/bedroom", "bedroom", "lsun"))
    for folder in looked:
        if (folder / "data.mdb").is_file():
            ds = LMDBImages(folder, _transform(image_size))
        elif folder.is_dir() and (files := image_files(folder)):
            ds = ImageFiles(files, _transform(image_size))
        else:
            continue
        return Loaded("lsun_bedroom", "image", ds, None, (3, image_size, image_size), {"root": str(folder)})
    raise _missing("lsun_bedroom", looked)


def _load_horse2zebra(data_root=None, download=False, image_size=256, load_size=286, flip=True, **_) -> Loaded:
    looked = _candidates(data_root, ("horse2zebra",))
    if download:
        from torchvision.datasets.utils import download_and_extract_archive

        url = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
        download_and_extract_archive(url, str(paths.home() / "data"))
        looked.insert(0, paths.home() / "data" / "horse2zebra")
    for folder in looked:
        parts = {p: image_files(folder / p) if (folder / p).is_dir() else [] for p in ("trainA", "trainB", "testA", "testB")}
        if parts["trainA"] and parts["trainB"]:
            train_tf, test_tf = _transform(image_size, load_size, flip), _transform(image_size)
            train = UnpairedFiles(ImageFiles(parts["trainA"], train_tf), ImageFiles(parts["trainB"], train_tf))
            test = None
            if parts["testA"] and parts["testB"]:
                test = UnpairedFiles(ImageFiles(parts["testA"], test_tf), ImageFiles(parts["testB"], test_tf))
            return Loaded("horse2zebra", "unpaired", train, test, (3, image_size, image_size), {"root": str(folder)})
    raise _missing("horse2zebra", looked)


_ENV = "pass --data-root DIR (or set SUITE_DATA_ROOT=DIR)"
register(DatasetSpec("ring8", "points", "8 Gaussians on a circle of radius 2, std 0.02 (VEEGAN/PacGAN)",
                     "", 0, _load_mixture("ring8"), channels=2))
register(DatasetSpec("grid25", "points", "25 Gaussians on a 5x5 grid, spacing 2, std 0.05 (VEEGAN/PacGAN)",
                     "", 0, _load_mixture("grid25"), channels=2))
register(DatasetSpec("digits", "image", "scikit-learn's 1,797 8x8 handwritten digits (1,500 train / 297 test)",
                     "It ships with scikit-learn: pip install scikit-learn.", 8, _load_digits, DIGIT_CLASSES))
register(DatasetSpec(
    "fashion_mnist", "image", "Fashion-MNIST, 60k train / 10k test, 28x28 grey",
    f"Install it with `apt-get install dataset-fashion-mnist` (Debian), put the IDX files in a folder and {_ENV}, "
    "or add --download to fetch it with torchvision.", 28,
    _idx_loader("fashion_mnist", ("fashion_mnist", "fashion-mnist"), ("/usr/share/datasets/fashion-mnist",),
                "FashionMNIST", FASHION_CLASSES), FASHION_CLASSES))
register(DatasetSpec(
    "mnist", "image", "MNIST, 60k train / 10k test, 28x28 grey",
    f"Put the four IDX files (yann.lecun.com/exdb/mnist) in a folder and {_ENV}, or add --download to fetch it "
    "with torchvision.", 28,
    _idx_loader("mnist", ("mnist", "MNIST/raw"), ("/usr/share/datasets/mnist",), "MNIST", DIGIT_CLASSES),
    DIGIT_CLASSES))
register(DatasetSpec("fashion_unpaired", "unpaired",
                     "Fashion-MNIST split in two disjoint halves; domain B = inverted, tone-curved A (known inverse)",
                     DATASETS["fashion_mnist"].how_to_get, 28, _load_fashion_unpaired, FASHION_CLASSES))
register(DatasetSpec(
    "celeba", "image", "CelebA aligned faces (img_align_celeba), 202,599 images",
    f"Download img_align_celeba.zip (mmlab.ie.cuhk.edu.hk/projects/CelebA.html), unzip it under DIR/celeba and {_ENV}; "
    "--download tries torchvision's Google Drive fetch.", 178, _load_celeba, channels=3, has_test=False))
register(DatasetSpec(
    "lsun_bedroom", "image", "LSUN bedrooms (lmdb or an image folder)",
    f"Fetch it with `python download.py -c bedroom` from github.com/fyu/lsun, unzip bedroom_train_lmdb under DIR and "
    f"{_ENV} (a folder of exported images works too).", 256, _load_lsun, channels=3, has_test=False))
register(DatasetSpec(
    "horse2zebra", "unpaired", "CycleGAN horse2zebra (trainA/trainB/testA/testB)",
    "Download efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip, unzip it under DIR and "
    f"{_ENV}, or add --download.", 256, _load_horse2zebra, channels=3))


def load(name: str, *, data_root=None, download: bool = False, image_size: int = 0, load_size: int = 0,
         flip: bool = False, subset: int = 0) -> Loaded:
    """Load a registered dataset; in-memory images are resized to `load_size or image_size`;
    `subset` keeps the first N training examples (of each domain)."""
    spec = get_spec(name)
    size = image_size or spec.native_size
    loaded = spec.load(data_root=data_root, download=download, image_size=size, load_size=load_size, flip=flip)
    if subset:
        loaded.train = _subset(loaded.train, subset)
    if spec.kind != "points" and isinstance(loaded.train, (TensorSource, PairSource)):
        stored = max(load_size, size)
        loaded.train = _resized(loaded.train, stored)
        loaded.test = _resized(loaded.test, size) if loaded.test is not None else None
        loaded.shape = (loaded.shape[0], size, size)
    return loaded


def _subset(src, n: int):
    if isinstance(src, PairSource):
        return PairSource(_subset(src.a, n), _subset(src.b, n))
    if isinstance(src, UnpairedFiles):
        return UnpairedFiles(_subset(src.a, n), _subset(src.b, n))
    if isinstance(src, TensorSource):
        return TensorSource(src.x[:n], None if src.y is None else src.y[:n])
    if isinstance(src, ImageFiles):
        return ImageFiles(src.files[:n], src.transform)
    return torch.utils.data.Subset(src, range(min(n, len(src))))


def _resized(src, size):
    if isinstance(src, PairSource):
        return PairSource(_resized(src.a, size), _resized(src.b, size))
    return TensorSource(resize(src.x, size), src.y)


def data_info(loaded: Loaded, batch_size: int) -> DataInfo:
    n = len(loaded.train)
    if n < batch_size:
        raise DataError(f"dataset '{loaded.name}' has {n} training examples, fewer than batch_size={batch_size}")
    return DataInfo(loaded.name, loaded.kind, tuple(loaded.shape), n, n // batch_size)


# --------------------------------------------------------------------------- batches


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def augment(x: torch.Tensor, size: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop to `size` and random horizontal flip of an in-memory batch."""
    n, extra = len(x), x.shape[-1] - size
    if extra > 0:
        oy = torch.randint(0, extra + 1, (n,), generator=g)
        ox = torch.randint(0, extra + 1, (n,), generator=g)
        x = torch.stack([x[i, :, oy[i] : oy[i] + size, ox[i] : ox[i] + size] for i in range(n)])
    if flip:
        mask = torch.rand(n, generator=g) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


class BatchStream:
    """Endless batches following a seeded permutation per epoch (drop_last). Its state is the
    epoch and the number of batches consumed in it, so a resumed run sees the same batches."""

    def __init__(self, loaded: Loaded, batch_size: int, seed: int, device, image_size: int = 0, flip: bool = False,
                 num_workers: int = 0):
        self.src, self.bs, self.seed = loaded.train, batch_size, seed
        self.device = torch.device(device)
        self.size, self.flip, self.num_workers = image_size, flip, num_workers
        self.paired = isinstance(self.src, (PairSource, UnpairedFiles))
        self.in_memory = isinstance(self.src, (TensorSource, PairSource))
        self.steps_per_epoch = len(self.src) // batch_size
        self.epoch, self.pos = 0, 0
        self._order = None
        self._iter = None

    def _epoch_order(self):
        g = _epoch_generator(self.seed, self.epoch)
        n = len(self.src)
        if not self.paired:
            return torch.randperm(n, generator=g)
        na, nb = len(self.src.a), len(self.src.b)
        tile = lambda m: torch.cat([torch.randperm(m, generator=g) for _ in range(-(-n // m))])[:n]  # noqa: E731
        return torch.stack([tile(na), tile(nb)], 1)

    def _in_memory_batch(self, idx):
        g = _epoch_generator(self.seed, 7919 * (self.epoch + 1) + self.pos)
        if self.paired:
            a = self.src.a.x[idx[:, 0]]
            b = self.src.b.x[idx[:, 1]]
            if self.size or self.flip:
                a, b = augment(a, self.size or a.shape[-1], self.flip, g), augment(b, self.size or b.shape[-1], self.flip, g)
            return a.to(self.device, non_blocking=True), b.to(self.device, non_blocking=True)
        x = self.src.x[idx]
        if x.dim() == 4 and (self.flip or (self.size and x.shape[-1] != self.size)):
            x = augment(x, self.size or x.shape[-1], self.flip, g)
        return x.to(self.device, non_blocking=True)

    def _loader_iter(self):
        order = self._epoch_order()
        batches = [order[i * self.bs : (i + 1) * self.bs].tolist() for i in range(self.pos, self.steps_per_epoch)]
        if self.paired:
            batches = [[tuple(ij) for ij in b] for b in batches]
        loader = torch.utils.data.DataLoader(
            self.src, batch_sampler=batches, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False)
        return iter(loader)

    def __call__(self):
        if self.pos >= self.steps_per_epoch:
            self.epoch, self.pos, self._order, self._iter = self.epoch + 1, 0, None, None
        if self.in_memory:
            if self._order is None:
                self._order = self._epoch_order()
            batch = self._in_memory_batch(self._order[self.pos * self.bs : (self.pos + 1) * self.bs])
        else:
            if self._iter is None:
                self._iter = self._loader_iter()
            batch = next(self._iter)
            if self.paired:
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            else:
                batch = batch.to(self.device, non_blocking=True)
        self.pos += 1
        return batch

    @property
    def epochs_done(self) -> int:
        """Completed passes (a pass ends when its last batch has been consumed)."""
        return self.epoch + (1 if self.pos >= self.steps_per_epoch else 0)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos, self._order, self._iter = int(state["epoch"]), int(state["pos"]), None, None


def fixed_examples(loaded: Loaded, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n held-out (else training) pairs: the inputs of CycleGAN's triplet grids."""
    src = loaded.test if loaded.test is not None else loaded.train
    if isinstance(src, PairSource):
        size = loaded.shape[-1]
        return resize(src.a.x[:n], size), resize(src.b.x[:n], size)
    pairs = [src[(i % len(src.a), i % len(src.b))] for i in range(n)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
