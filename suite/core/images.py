"""Pictures of samples: image grids and 2D scatter plots, as uint8 HxWx3 arrays."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, min_side: int = 0) -> np.ndarray:
    """Images in [-1, 1] (N x C x H x W) -> one uint8 grid, nrow per row (default: square).
    `min_side`: enlarge small images by an integer factor (nearest) so figures stay readable."""
    from torchvision.utils import make_grid  # heavy optional: importing torchvision costs ~1 s

    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    x = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    if min_side and x.shape[-1] < min_side:
        x = torch.nn.functional.interpolate(x, scale_factor=math.ceil(min_side / x.shape[-1]), mode="nearest")
    g = make_grid(x, nrow=nrow, padding=pad, pad_value=1.0)
    return (g.mul(255).round().byte().permute(1, 2, 0).numpy()).copy()


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display here or on CI)."""
    import matplotlib  # heavy optional: only figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy optional: only figures need it

    return plt


def render(fig) -> np.ndarray:
    """A matplotlib figure as uint8 HxWx3 pixels; the figure is closed, whatever happens."""
    try:
        return figure_to_array(fig)
    finally:
        pyplot().close(fig)


def figure_to_array(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).copy()


def scatter(points: torch.Tensor, modes: torch.Tensor | None = None, title: str = "", limit: float | None = None):
    """Generated 2D points over the mixture's mode centres (GAN Lab style)."""
    plt = pyplot()
    pts = points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="tab:blue", label="generated")
    if modes is not None:
        m = modes.numpy()
        ax.scatter(m[:, 0], m[:, 1], s=40, marker="x", color="tab:red", label="mode centres")
    lim = limit or (1.25 * float(np.abs(modes.numpy()).max()) + 0.5 if modes is not None else None)
    if lim:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return render(fig)


def load_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).copy()


def landscape(surface: np.ndarray, extent: float, real: np.ndarray, fake: np.ndarray, pull: np.ndarray,
              modes: np.ndarray | None, title: str) -> np.ndarray:
    """GAN Lab's picture of one moment: the discriminator's output as a heat map over the plane
    (`surface`, a square grid over [-extent, extent]^2), real (green) and generated (purple) points on
    top, and arrows where the generator's gradient moves each generated point."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    im = ax.imshow(surface, origin="lower", extent=(-extent, extent, -extent, extent), cmap="RdBu",
                   vmin=0, vmax=1, alpha=0.8, interpolation="bilinear")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label("D(x), probability of real", fontsize=7)
    ax.scatter(real[:, 0], real[:, 1], s=3, color="tab:green", alpha=0.6, label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=3, color="purple", alpha=0.7, label="generated")
    norm = np.linalg.norm(pull, axis=1, keepdims=True)
    scale = np.maximum(norm, 1e-12) / max(float(norm.max()), 1e-12)  # longest arrow: a tenth of the plane
    arrows = pull / np.maximum(norm, 1e-12) * scale * extent * 0.2
    ax.quiver(fake[:, 0], fake[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy", scale=1,
              width=0.004, color="black", alpha=0.5)
    if modes is not None:
        ax.scatter(modes[:, 0], modes[:, 1], s=25, marker="x", color="black", linewidths=1)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)
    ax.legend(loc="upper right", fontsize=6, markerscale=3)
    ax.set_title(title, fontsize=8)
    return render(fig)


def animation(frames: list[np.ndarray], ms_per_frame: int = 400) -> bytes:
    """Frames (HxWx3 uint8, resized to the first one's size) as a looping GIF."""
    first = Image.fromarray(frames[0])
    rest = [Image.fromarray(f).resize(first.size) for f in frames[1:]]
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=rest, duration=ms_per_frame, loop=0, optimize=True)
    return buf.getvalue()
