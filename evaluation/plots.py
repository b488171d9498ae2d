"""Figures of one evaluation: the nearest-neighbour grid, the class and the mode histograms."""

from __future__ import annotations

import math

import numpy as np
import torch

from evaluation import features
from evaluation.defaults import DEFAULTS
from suite.core import images


def nn_figure(samples: torch.Tensor, train: torch.Tensor, idx: torch.Tensor, size: int, rows: int = 8,
              matched: torch.Tensor | None = None):
    """The GAN paper's rightmost column: each generated sample, the training image it matches under
    small edits (shift, mirror, rescale, re-lighting), then its nearest training images as they are."""
    g = features.prepare_images(samples[:rows], size)
    cols = [g] + ([train[matched[:rows]]] if matched is not None else []) + [train[idx[:rows, j]]
                                                                            for j in range(idx.shape[1])]
    tiles = torch.stack(cols, 1).flatten(0, 1)
    return images.grid(tiles, nrow=len(cols), min_side=64)


def class_figure(ch: dict, classes) -> np.ndarray:
    plt = images.pyplot()
    k = len(ch["class_histogram"])
    labels = list(classes) if classes and len(classes) == k else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = torch.arange(k).numpy()
    ax.bar(xs - 0.2, ch["data_histogram"], 0.4, label="data", color="tab:gray")
    ax.bar(xs + 0.2, ch["class_histogram"], 0.4, label="generated", color="tab:blue")
    ax.set_xticks(xs, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of samples")
    ax.set_title(f"classes covered {ch['modes_covered']}/{ch['modes_total']}, KL to data {ch['kl_to_data']:.3f}",
                 fontsize=9)
    ax.legend(fontsize=7)
    return images.render(fig)


def mode_figure(mc: dict, points: torch.Tensor, modes: torch.Tensor):
    plt = images.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    k = len(mc["per_mode"])
    ax.bar(range(k), mc["per_mode"], color="tab:blue")
    ax.axhline(math.ceil(DEFAULTS["mode_min_share"] * len(points)), color="tab:red", ls="--", lw=1,
               label="counts as covered")
    ax.set_xlabel("mode")
    ax.set_ylabel("high-quality samples")
    ax.set_title(f"modes covered {mc['modes_covered']}/{k}, high quality {mc['high_quality_share']:.1%}", fontsize=9)
    ax.legend(fontsize=7)
    return images.render(fig)
