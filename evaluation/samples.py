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


def check_layout(x: torch.Tensor, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Samples as N x C x H x W images (or N x 2 points) of the dataset's channels, whatever their
    values: a wrong shape is refused before anything is said about the values."""
    if not torch.is_tensor(x):
        raise DataError("samples must be an array or tensor")
    if x.numel() == 0 or len(x) == 0:
        raise DataError("samples are empty")
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
    return x


def check_samples(x: torch.Tensor, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Validate and normalise samples: float in [-1, 1], N x C x H x W (or N x 2 points)."""
    x = check_layout(x, kind, shape)
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
        return x
    if x.min() < -1.001 or x.max() > 1.001:
        raise DataError(f"float samples must lie in [-1, 1]; got values in [{x.min():.3g}, {x.max():.3g}]")
    return x.clamp(-1, 1)


RANGES = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0), "0,255": (0.0, 255.0)}


def as_range(x: torch.Tensor, value_range: str | None, what: str = "samples") -> torch.Tensor:
    """Float samples mapped to [-1, 1] from the range they are in: uint8 is 0-255; a float array
    is read as [-1, 1] only when it has negative values — all values >= 0 could be [0, 1], [-1, 1]
    or 0-255 alike, so the user says which (`--range`), and nothing is guessed."""
    if value_range is not None and value_range not in RANGES:
        raise DataError(f"--range must be one of {', '.join(RANGES)}, got '{value_range}'")
    if not torch.is_tensor(x) or not x.is_floating_point() or x.numel() == 0 or not torch.isfinite(x).all():
        if value_range is not None and torch.is_tensor(x) and x.dtype == torch.uint8 and value_range != "0,255":
            raise DataError(f"{what} are uint8 (0-255), not in [{value_range}]")
        return x  # uint8, empty or non-finite: check_samples says what is wrong with them
    lo, hi = float(x.min()), float(x.max())
    if value_range is None:
        if lo < 0:
            return x
        guess = "0,1" if hi <= 1 else "0,255" if hi <= 255 else None
        options = "--range 0,1 or --range -1,1" if guess == "0,1" else "--range 0,255"
        raise DataError(f"{what} are floats in [{lo:.3g}, {hi:.3g}]: every value is >= 0, so their range is "
                        f"ambiguous; say it with {options} (python: value_range=...)")
    low, high = RANGES[value_range]
    if lo < low - 1e-3 * (high - low) or hi > high + 1e-3 * (high - low):
        raise DataError(f"{what} have values in [{lo:.3g}, {hi:.3g}], outside the stated range [{value_range}]")
    return ((x.float() - low) / (high - low) * 2 - 1).clamp(-1, 1)


def image_shape(x: torch.Tensor) -> tuple[int, int, int]:
    """(C, H, W) of a batch of images in any of the layouts check_samples accepts."""
    if x.dim() == 3:
        return 1, int(x.shape[1]), int(x.shape[2])
    if x.dim() == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            return int(x.shape[-1]), int(x.shape[1]), int(x.shape[2])
        return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    raise DataError(f"reference images must be N x H x W or N x C x H x W, got shape {tuple(x.shape)}")


def _image_array(path: Path) -> np.ndarray:
    """One image file as float32 H x W x C in [-1, 1], C = 1 for a grayscale image (whatever mode
    holds it: 1, L, I;16, I, palette or RGB with equal channels) and 3 otherwise. Transparency,
    animation and floating-point pixels have no faithful reading as a sample: refused in one line."""
    with Image.open(path) as im:
        if getattr(im, "n_frames", 1) > 1:
            raise DataError(f"{path} is an animation of {im.n_frames} frames: one image per file")
        mode = im.mode
        if mode == "F":
            raise DataError(f"{path} holds 32-bit float pixels, which have no standard range: save 8- or 16-bit "
                            "images, or an .npy array with --range")
        if mode in ("1", "L"):
            return np.asarray(im.convert("L"), dtype=np.float32)[..., None] / 127.5 - 1
        if mode.startswith("I"):  # 16-bit (I;16, I;16B) or 32-bit integer grayscale
            a = np.asarray(im, dtype=np.float64)
            depth = 255 if mode == "I" and a.max() <= 255 else 65535
            if a.min() < 0 or a.max() > depth:
                raise DataError(f"{path}: integer pixels in [{a.min():g}, {a.max():g}] fit neither 8 nor 16 bits")
            return (a / depth * 2 - 1).astype(np.float32)[..., None]
        if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in im.info):
            rgba = np.asarray(im.convert("RGBA"))
            if (rgba[..., 3] < 255).any():
                raise DataError(f"{path} has transparent pixels: flatten it onto a background first")
            im = im.convert("RGB")
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)  # P, CMYK, YCbCr, LAB, HSV: Pillow's conversions
    if (rgb[..., :1] == rgb).all():
        rgb = rgb[..., :1]
    return rgb / 127.5 - 1


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
                arrays.append(_image_array(f))
            except (OSError, SyntaxError, ValueError) as e:  # not an image, truncated, or a decoder's complaint
                raise DataError(f"{f} is not a readable image ({str(e).splitlines()[0][:100]})") from None
        if len({a.shape[:2] for a in arrays}) > 1:
            raise DataError(f"images in {path} have different sizes")
        channels = max(a.shape[2] for a in arrays)  # grayscale ones join colour ones as three equal channels
        x = np.stack([np.repeat(a, channels // a.shape[2], axis=2) for a in arrays])
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    if not path.is_file():
        raise DataError(f"samples file {path} does not exist")
    try:
        if path.suffix == ".npy":
            a = np.load(path, allow_pickle=False)
            if a.dtype.fields is not None or a.dtype.kind not in "biuf":
                raise DataError(f"{path} holds a {a.dtype} array ({'structured' if a.dtype.fields else a.dtype.kind}): "
                                "samples are a plain uint8 or float array")
            return torch.from_numpy(a.astype(np.float32) if a.dtype.kind in "bi" or a.dtype == np.float16 else a.copy())
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
