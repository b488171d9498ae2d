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


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array).save(path)
