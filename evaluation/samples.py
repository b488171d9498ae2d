"""Samples coming in: what a dataset's samples look like, reading them from files, and
validating them before any feature network is built or trained.

    python -m suite evaluate --samples samples.npy --dataset fashion_mnist
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from suite import data
from suite.core import checkpoint
from suite.core.errors import DataError


def sample_format(dataset: str) -> tuple[str, str, tuple[int, ...]]:
    """(reference dataset, kind, shape of one sample) — enough to validate samples before any
    feature network is built or trained."""
    spec = data.get_spec(data.get_spec(dataset).reference)
    size = spec.native_size
    return spec.name, spec.kind, (2,) if spec.kind == "points" else (spec.channels, size, size)


def check_samples(x: torch.Tensor, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Validate and normalise samples: float in [-1, 1], N x C x H x W (or N x 2 points)."""
    if not torch.is_tensor(x):
        raise DataError("samples must be an array or tensor")
    if x.numel() == 0 or len(x) == 0:
        raise DataError("samples are empty")
    if x.dtype == torch.uint8:
        x = x.float().div(127.5).sub(1)
    elif x.is_floating_point():
        x = x.float()
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum()) if x.dim() > 1 else 1
            raise DataError(f"samples contain NaN or inf values ({bad} of {len(x)} samples)")
    else:
        raise DataError(f"samples must be uint8 (0-255) or float in [-1, 1], got {x.dtype}")
    if kind == "points":
        if x.dim() != 2 or x.shape[1] != 2:
            raise DataError(f"2D mixture samples must be N x 2, got shape {tuple(x.shape)}")
        return x
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise DataError(f"image samples must be N x H x W or N x C x H x W, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # N x H x W x C
    if x.shape[1] != shape[0]:
        raise DataError(f"samples have {x.shape[1]} channels, the dataset's images have {shape[0]}")
    if min(x.shape[-2:]) < 4:
        raise DataError(f"samples are {x.shape[-2]}x{x.shape[-1]} pixels: too small to be images")
    if x.shape[-2] != x.shape[-1]:  # resizing them to the dataset's square would squash them
        raise DataError(f"samples are {x.shape[-2]}x{x.shape[-1]} pixels, the dataset's images are square "
                        f"({shape[-2]}x{shape[-1]}): crop them to a square first")
    if x.min() < -1.001 or x.max() > 1.001:
        raise DataError(f"float samples must lie in [-1, 1]; got values in [{x.min():.3g}, {x.max():.3g}]")
    return x.clamp(-1, 1)


def load_samples(path: str | Path) -> torch.Tensor:
    """.npy / .pt array or tensor, or a folder of images."""
    path = Path(path)
    if path.is_dir():
        files = data.image_files(path)
        if not files:
            raise DataError(f"no images in folder {path}")
        arrays = []
        for f in files:
            try:
                with Image.open(f) as im:
                    arrays.append(np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB")))
            except (OSError, SyntaxError, ValueError) as e:  # not an image, truncated, or a decoder's complaint
                raise DataError(f"{f} is not a readable image ({str(e).splitlines()[0][:100]})") from None
        try:
            x = np.stack(arrays)
        except ValueError:
            raise DataError(f"images in {path} have different sizes") from None
        return torch.from_numpy(x.copy())
    if not path.is_file():
        raise DataError(f"samples file {path} does not exist")
    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False).copy())
        if path.suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and "samples" in obj:
                obj = obj["samples"]
            if not torch.is_tensor(obj):
                raise DataError(f"{path} holds a {type(obj).__name__}, not a tensor of samples")
            return obj
    except (ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        if checkpoint.refused_pickle(e):
            raise DataError(f"{path} holds Python objects besides tensors; refused (loaded with weights_only=True; "
                            "save a plain tensor or a .npy array)") from None
        raise DataError(f"cannot read samples from {path}: {str(e).splitlines()[0][:120]}") from None
    raise DataError(f"unsupported samples file {path.name}: use .npy, .pt or a folder of images")
