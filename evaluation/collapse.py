"""Mode-collapse checks.

2D mixtures: the VEEGAN / PacGAN table — modes covered (a mode counts when at least
`mode_min_share` of the samples lie within 3 std of it), share of high-quality samples, the
per-mode histogram, and the KL of the induced mode distribution to the uniform one.
Images: the class histogram of generated samples under the domain classifier — classes covered,
KL to the data's class distribution, mean confidence.
"""

from __future__ import annotations

import math

import torch
from scipy import optimize

from evaluation.defaults import DEFAULTS


def _kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-10) -> float:
    p, q = p.double() + eps, q.double() + eps
    p, q = p / p.sum(), q / q.sum()
    return float((p * (p / q).log()).sum())


def mixture_modes(points: torch.Tensor, modes: torch.Tensor, std: float, sigmas: float = DEFAULTS["mode_sigmas"],
                  min_share: float = DEFAULTS["mode_min_share"]) -> dict:
    d = torch.cdist(points.float(), modes.float())
    nearest_d, nearest = d.min(1)
    hq = nearest_d <= sigmas * std
    per_mode = torch.bincount(nearest[hq], minlength=len(modes))
    counts_all = torch.bincount(nearest, minlength=len(modes)).float()
    covered = int((per_mode >= max(1, math.ceil(min_share * len(points)))).sum())
    return {
        "modes_covered": covered,
        "modes_total": len(modes),
        "high_quality_share": float(hq.float().mean()),
        # the toys' primary: 1 = every mode covered and every sample near a mode; a smeared ring
        # (no mode covered) and a collapse to one mode (1 of 8 covered) both score low
        "mode_quality": covered / len(modes) * float(hq.float().mean()),
        "per_mode": per_mode.tolist(),
        "kl_to_uniform": _kl(counts_all / counts_all.sum(), torch.full((len(modes),), 1 / len(modes))),
        "flagged": covered < len(modes),
    }


def class_histogram(logits: torch.Tensor, data_counts: torch.Tensor, n_classes: int,
                    min_share: float = DEFAULTS["class_min_share"], confusion: torch.Tensor | None = None) -> dict:
    """data_counts: examples per class in the reference data. `confusion` (true x predicted,
    rows summing to 1: the classifier on held-out images) corrects the predicted histogram for
    the classifier's own mistakes before classes are counted (black-box shift estimation, Lipton
    et al. 2018: predicted = confusion^T true, solved by non-negative least squares), so a class
    that only receives other classes' misclassified samples is not counted as covered."""
    probs = logits.float().softmax(1)
    pred = probs.argmax(1)
    hist = torch.bincount(pred, minlength=n_classes).float() / len(pred)
    counts = torch.zeros(n_classes).index_add_(0, torch.arange(len(data_counts)), data_counts.float())
    data_hist = counts / counts.sum()
    estimated = hist if confusion is None else true_shares(hist, confusion)
    covered = int((estimated >= min_share * data_hist).sum())
    out = {
        "modes_covered": covered,
        "modes_total": n_classes,
        "class_histogram": [round(v, 5) for v in hist.tolist()],
        "data_histogram": [round(v, 5) for v in data_hist.tolist()],
        "kl_to_data": _kl(hist, data_hist),
        "mean_confidence": float(probs.max(1).values.mean()),
        "flagged": covered < n_classes,
    }
    if confusion is not None:
        out["estimated_histogram"] = [round(v, 5) for v in estimated.tolist()]
    return out


def true_shares(predicted: torch.Tensor, confusion: torch.Tensor) -> torch.Tensor:
    """The class shares whose predictions, through `confusion`, are closest to `predicted`."""
    q, _ = optimize.nnls(confusion.double().T.numpy(), predicted.double().numpy())
    q = torch.from_numpy(q).float()
    return q / q.sum().clamp(min=1e-12)


def confusion_matrix(labels: torch.Tensor, logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """P(predicted | true) of a classifier on labelled held-out images (rows sum to 1)."""
    m = torch.zeros(n_classes, n_classes)
    m.index_put_((labels.long(), logits.argmax(1)), torch.ones(len(labels)), accumulate=True)
    return m / m.sum(1, keepdim=True).clamp(min=1)
