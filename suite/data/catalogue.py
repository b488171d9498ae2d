"""The datasets the suite knows, each registered with how to load it, where its files are and
how to get it; and `load`, which every layer above calls.

    python -m suite list     # recipes and the dataset each trains on

Small datasets (2D mixtures, digits, Fashion-MNIST, MNIST) are held in memory as tensors in
[-1, 1]; large ones (CelebA, LSUN, horse2zebra) are read from files by a DataLoader. A dataset
that is not present raises DatasetNotFound naming where it looked and how to get it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from suite.core import paths
from suite.data import archives
from suite.data import prepared as prepared_files
from suite.data.readers import (ArrayImages, ImageFiles, LMDBImages, UnpairedFiles, find_file, image_files, read_idx,
                                resize, to_unit_range, transform)
from suite.data.spec import DATASETS, DatasetSpec, Loaded, PairSource, TensorSource, get_spec, register
from suite.core.errors import DataError, DatasetNotFound

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


# --------------------------------------------------------------------------- IDX (Fashion-MNIST, MNIST)

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class IdxFolders:
    """Where one IDX dataset may lie: --data-root, a Debian package, torchvision's layout."""

    def __init__(self, folder_names: tuple[str, ...], system_dirs: tuple[str, ...], tv_class: str):
        self.folder_names, self.system_dirs, self.tv_class = folder_names, system_dirs, tv_class

    def folders(self, data_root=None) -> list[Path]:
        out = []
        for root in paths.data_roots(data_root):
            out += [root] + [root / f for f in self.folder_names] + [root / self.tv_class / "raw"]
        out += [Path(d) for d in self.system_dirs]
        out.append(paths.home() / "data" / self.tv_class / "raw")
        return list(dict.fromkeys(out))

    def split_files(self, folders: list[Path]) -> dict[str, tuple[Path | None, Path | None]]:
        """(images, labels) file of each split, None where absent."""
        return {split: (find_file(folders, img), find_file(folders, lab)) for split, (img, lab) in IDX_FILES.items()}

    def files(self, data_root=None) -> list[Path | None]:
        return [p for pair in self.split_files(self.folders(data_root)).values() for p in pair]

    def loader(self, name: str, classes: tuple[str, ...]):
        def load(data_root=None, download=False, **_) -> Loaded:
            folders = self.folders(data_root)
            found = self.split_files(folders)
            if found["train"][0] is None and download:
                import torchvision  # heavy optional: only --download fetches with it

                getattr(torchvision.datasets, self.tv_class)(str(paths.home() / "data"), download=True)
                found = self.split_files(folders)
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

        return load


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_FILES = IdxFolders(("fashion_mnist", "fashion-mnist"), ("/usr/share/datasets/fashion-mnist",), "FashionMNIST")
MNIST_FILES = IdxFolders(("mnist", "MNIST/raw"), ("/usr/share/datasets/mnist",), "MNIST")


# --------------------------------------------------------------------------- scikit-learn digits


def _digits_files(data_root=None) -> list[Path | None]:
    import sklearn.datasets  # heavy optional: only the digits dataset

    path = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"  # the file load_digits reads
    return [path if path.is_file() else None]


def _load_digits(**_) -> Loaded:
    from sklearn.datasets import load_digits  # heavy optional: only the digits dataset

    d = load_digits()
    x = torch.from_numpy(d.images).float().div(16).mul(2).sub(1).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1500], perm[1500:]  # fixed held-out split of 297 digits
    return Loaded("digits", "image", TensorSource(x[train], y[train]), TensorSource(x[test], y[test]), (1, 8, 8),
                  {"classes": DIGIT_CLASSES})


# --------------------------------------------------------------------------- fashion_unpaired


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


def _candidates(data_root, names: tuple[str, ...]) -> list[Path]:
    out = []
    for root in paths.data_roots(data_root):
        out += [root / n for n in names] + [root]
    return list(dict.fromkeys(out))


def _missing(name: str, looked: list[Path]) -> DatasetNotFound:
    return DatasetNotFound(f"dataset '{name}' not found: looked in {', '.join(map(str, looked))}. "
                           f"{DATASETS[name].how_to_get}")


CELEBA_FOLDERS = ("celeba/img_align_celeba", "img_align_celeba", "celeba")
LSUN_FOLDERS = ("bedroom_train_lmdb", "lsun/bedroom_train_lmdb", "lsun/bedroom", "bedroom", "lsun")


def _celeba_source(data_root) -> tuple[list[Path], list[Path]]:
    """(where it looked, the image files of the first folder holding any)."""
    looked = _candidates(data_root, CELEBA_FOLDERS) + [paths.home() / "data" / "celeba" / "img_align_celeba"]
    for folder in looked:
        if folder.is_dir() and (files := image_files(folder)):
            return looked, files
    return looked, []


def _load_celeba(data_root=None, download=False, image_size=64, **_) -> Loaded:
    looked, files = _celeba_source(data_root)
    if not files and download:
        import torchvision  # heavy optional: only --download fetches with it

        torchvision.datasets.CelebA(str(paths.home() / "data"), download=True)
        looked, files = _celeba_source(data_root)
    if files:
        ds = ImageFiles(files, transform(image_size))
        return Loaded("celeba", "image", ds, None, (3, image_size, image_size), {"root": str(files[0].parent)})
    raise _missing("celeba", looked)


def _lsun_source(data_root) -> tuple[list[Path], Path | None, list[Path]]:
    """(where it looked, the LMDB folder or None, the image files of a folder export)."""
    looked = _candidates(data_root, LSUN_FOLDERS)
    for folder in looked:
        if (folder / "data.mdb").is_file():
            return looked, folder, []
        if folder.is_dir() and (files := image_files(folder)):
            return looked, None, files
    return looked, None, []


def _lsun_files(data_root=None) -> list[Path | None]:
    _, lmdb_folder, files = _lsun_source(data_root)
    return [lmdb_folder / "data.mdb"] if lmdb_folder else (files or [None])


def _celeba_files(data_root=None) -> list[Path | None]:
    return _celeba_source(data_root)[1] or [None]


def _load_lsun(data_root=None, image_size=64, **_) -> Loaded:
    looked, lmdb_folder, files = _lsun_source(data_root)
    if lmdb_folder is None and not files:
        raise _missing("lsun_bedroom", looked)
    ds = LMDBImages(lmdb_folder, transform(image_size)) if lmdb_folder else ImageFiles(files, transform(image_size))
    root = lmdb_folder or files[0].parent
    return Loaded("lsun_bedroom", "image", ds, None, (3, image_size, image_size), {"root": str(root)})


def _load_horse2zebra(data_root=None, download=False, image_size=256, load_size=286, flip=True, **_) -> Loaded:
    looked = _candidates(data_root, ("horse2zebra",))
    if download:
        from torchvision.datasets.utils import download_and_extract_archive  # heavy optional: --download

        url = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
        download_and_extract_archive(url, str(paths.home() / "data"))
        looked.insert(0, paths.home() / "data" / "horse2zebra")
    for folder in looked:
        parts = {p: image_files(folder / p) if (folder / p).is_dir() else [] for p in ("trainA", "trainB", "testA", "testB")}
        if parts["trainA"] and parts["trainB"]:
            train_tf, test_tf = transform(image_size, load_size, flip), transform(image_size)
            train = UnpairedFiles(ImageFiles(parts["trainA"], train_tf), ImageFiles(parts["trainB"], train_tf))
            test = None
            if parts["testA"] and parts["testB"]:
                test = UnpairedFiles(ImageFiles(parts["testA"], test_tf), ImageFiles(parts["testB"], test_tf))
            return Loaded("horse2zebra", "unpaired", train, test, (3, image_size, image_size), {"root": str(folder)})
    raise _missing("horse2zebra", looked)


# --------------------------------------------------------------------------- CIFAR-10 / 100, STL-10


def _cifar_roots(data_root) -> list[Path]:
    return _candidates(data_root, ("cifar", "cifar10", "cifar100", "cifar-10", "cifar-100")) + [paths.home() / "data"]


def _cifar(classes: int):
    name = f"cifar{classes}"

    def files(data_root=None) -> list[Path | None]:
        found = archives.cifar_folder(_cifar_roots(data_root), classes)
        return archives.cifar_files(*found, classes) if found else [None]

    def load(data_root=None, download=False, **_) -> Loaded:
        roots = _cifar_roots(data_root)
        if download and archives.cifar_folder(roots, classes) is None:
            import torchvision  # heavy optional: only --download fetches with it

            getattr(torchvision.datasets, f"CIFAR{classes}")(str(paths.home() / "data"), download=True)
        found = archives.cifar_folder(roots, classes)
        if found is None:
            folders = (archives.CIFAR10_BINARY, archives.CIFAR10_PYTHON) if classes == 10 else (
                archives.CIFAR100_BINARY, archives.CIFAR100_PYTHON)
            raise DatasetNotFound(f"dataset '{name}' not found: looked for {' or '.join(folders)} in "
                                  f"{', '.join(map(str, roots))}. {DATASETS[name].how_to_get}")
        splits = {}
        for split in ("train", "test"):
            x, y = archives.read_cifar(*found, classes, split)
            splits[split] = TensorSource(to_unit_range(torch.from_numpy(x)), torch.from_numpy(y))
        labels = archives.CIFAR10_CLASSES if classes == 10 else archives.cifar100_classes(*found)
        return Loaded(name, "image", splits["train"], splits["test"], (3, 32, 32),
                      {"classes": labels, "root": str(found[0]), "version": found[1]})

    return files, load


def _stl_folder(data_root) -> Path | None:
    return next((r / archives.STL10_BINARY for r in _cifar_roots(data_root) + _candidates(data_root, ("stl10",))
                 if (r / archives.STL10_BINARY / "train_X.bin").is_file()), None)


def _stl_files(data_root=None) -> list[Path | None]:
    folder = _stl_folder(data_root)
    names = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
    return [folder / n if folder and (folder / n).is_file() else None for n in names]


def _load_stl10(data_root=None, image_size=96, **_) -> Loaded:
    """Training images: the 5,000 labelled and (where present) the 100,000 unlabelled ones, read
    from the memory-mapped files (11 GB as floats); the 8,000 test images held in memory."""
    folder = _stl_folder(data_root)
    if folder is None:
        looked = _cifar_roots(data_root)
        raise DatasetNotFound(f"dataset 'stl10' not found: looked for {archives.STL10_BINARY}/train_X.bin in "
                              f"{', '.join(map(str, looked))}. {DATASETS['stl10'].how_to_get}")
    train = [archives.stl_images(folder / "train_X.bin")]
    if (folder / "unlabeled_X.bin").is_file():
        train.append(archives.stl_images(folder / "unlabeled_X.bin"))
    test = archives.stl_images(folder / "test_X.bin")
    y = torch.from_numpy(archives.stl_labels(folder / "test_y.bin", len(test)))
    test_x = resize(to_unit_range(torch.from_numpy(np.ascontiguousarray(test))), image_size)
    ds = torch.utils.data.ConcatDataset([ArrayImages(a, image_size) for a in train])
    return Loaded("stl10", "image", ds, TensorSource(test_x, y), (3, image_size, image_size),
                  {"classes": archives.STL10_CLASSES, "root": str(folder)})


_CIFAR10_FILES, _LOAD_CIFAR10 = _cifar(10)
_CIFAR100_FILES, _LOAD_CIFAR100 = _cifar(100)
_ENV = "pass --data-root DIR (or set SUITE_DATA_ROOT=DIR)"
register(DatasetSpec("ring8", "points", "8 Gaussians on a circle of radius 2, std 0.02 (VEEGAN/PacGAN)",
                     "", 0, _load_mixture("ring8"), channels=2))
register(DatasetSpec("grid25", "points", "25 Gaussians on a 5x5 grid, spacing 2, std 0.05 (VEEGAN/PacGAN)",
                     "", 0, _load_mixture("grid25"), channels=2))
register(DatasetSpec("digits", "image", "scikit-learn's 1,797 8x8 handwritten digits (1,500 train / 297 test)",
                     "It ships with scikit-learn: pip install scikit-learn.", 8, _load_digits, DIGIT_CLASSES,
                     files=_digits_files))
register(DatasetSpec(
    "fashion_mnist", "image", "Fashion-MNIST, 60k train / 10k test, 28x28 grey",
    f"Install it with `apt-get install dataset-fashion-mnist` (Debian), put the IDX files in a folder and {_ENV}, "
    "or add --download to fetch it with torchvision.", 28,
    FASHION_FILES.loader("fashion_mnist", FASHION_CLASSES), FASHION_CLASSES, files=FASHION_FILES.files))
register(DatasetSpec(
    "mnist", "image", "MNIST, 60k train / 10k test, 28x28 grey",
    f"Put the four IDX files (yann.lecun.com/exdb/mnist) in a folder and {_ENV}, or add --download to fetch it "
    "with torchvision.", 28, MNIST_FILES.loader("mnist", DIGIT_CLASSES), DIGIT_CLASSES, files=MNIST_FILES.files))
register(DatasetSpec("fashion_unpaired", "unpaired",
                     "Fashion-MNIST split in two disjoint halves; domain B = inverted, tone-curved A (known inverse)",
                     DATASETS["fashion_mnist"].how_to_get, 28, _load_fashion_unpaired, FASHION_CLASSES,
                     evaluated_as="fashion_mnist"))
register(DatasetSpec(
    "celeba", "image", "CelebA aligned faces (img_align_celeba), 202,599 images",
    f"Download img_align_celeba.zip (mmlab.ie.cuhk.edu.hk/projects/CelebA.html), unzip it under DIR/celeba and {_ENV}; "
    "--download tries torchvision's Google Drive fetch.", 178, _load_celeba, channels=3, has_test=False,
    files=_celeba_files))
register(DatasetSpec(
    "lsun_bedroom", "image", "LSUN bedrooms (lmdb or an image folder)",
    f"Fetch it with `python download.py -c bedroom` from github.com/fyu/lsun, unzip bedroom_train_lmdb under DIR and "
    f"{_ENV} (a folder of exported images works too).", 256, _load_lsun, channels=3, has_test=False,
    files=_lsun_files))
register(DatasetSpec(
    "cifar10", "image", "CIFAR-10, 50k train / 10k test, 32x32 colour, 10 classes",
    "Download cifar-10-binary.tar.gz or cifar-10-python.tar.gz (www.cs.toronto.edu/~kriz/cifar.html), unpack it "
    f"under DIR and {_ENV}, or add --download to fetch it with torchvision.", 32, _LOAD_CIFAR10,
    archives.CIFAR10_CLASSES, channels=3, files=_CIFAR10_FILES))
register(DatasetSpec(
    "cifar100", "image", "CIFAR-100, 50k train / 10k test, 32x32 colour, 100 fine classes",
    "Download cifar-100-binary.tar.gz or cifar-100-python.tar.gz (www.cs.toronto.edu/~kriz/cifar.html), unpack it "
    f"under DIR and {_ENV}, or add --download to fetch it with torchvision.", 32, _LOAD_CIFAR100, channels=3,
    files=_CIFAR100_FILES))
register(DatasetSpec(
    "stl10", "image", "STL-10, 5k labelled + 100k unlabelled train / 8k test, 96x96 colour",
    f"Download stl10_binary.tar.gz (cs.stanford.edu/~acoates/stl10), unpack it under DIR and {_ENV}.", 96,
    _load_stl10, archives.STL10_CLASSES, channels=3, files=_stl_files))
register(DatasetSpec(
    "horse2zebra", "unpaired", "CycleGAN horse2zebra (trainA/trainB/testA/testB)",
    "Download efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip, unzip it under DIR and "
    f"{_ENV}, or add --download.", 256, _load_horse2zebra, channels=3))


# --------------------------------------------------------------------------- loading


def load(name: str, *, data_root=None, download: bool = False, image_size: int = 0, load_size: int = 0,
         flip: bool = False, subset: int = 0, prepared: bool = True) -> Loaded:
    """Load a registered dataset; in-memory images are resized to `load_size or image_size`;
    `subset` keeps the first N training examples (of each domain); file-backed images come from
    a matching `suite prepare` file where there is one (unless prepared=False)."""
    spec = get_spec(name)
    size = image_size or spec.native_size
    loaded = spec.load(data_root=data_root, download=download, image_size=size, load_size=load_size, flip=flip)
    if prepared:
        loaded = prepared_files.use(name, size, loaded, data_root)
    on_disk = isinstance(loaded.train, torch.utils.data.Dataset) and not isinstance(loaded.train, TensorSource)
    loaded.meta.setdefault("source", "decoded on the fly" if on_disk else "in memory")
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
