"""Matplotlib figures for reports: curves with readable axes, units and legends."""

from __future__ import annotations

import math

import numpy as np

from suite.images import pyplot, render

Series = list[tuple[int, float]]  # (step, value)


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average (bias-corrected) for noisy per-step losses."""
    if span <= 1 or len(values) < 3:
        return values
    alpha, out, acc, norm = 2 / (span + 1), np.empty_like(values, dtype=float), 0.0, 0.0
    for i, v in enumerate(values):
        acc = (1 - alpha) * acc + alpha * v
        norm = (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def curves(series: dict[str, Series], title: str, ylabel: str, xlabel: str = "generator step",
           smooth: bool = True, marks: dict[str, int] | None = None, hlines: dict[str, float] | None = None,
           logy: bool = False, size=(6.4, 3.4)) -> np.ndarray:
    """Several named series on one axis; raw values faint, smoothed ones solid; vertical marks
    (e.g. the best checkpoint) and reference lines (e.g. D(x) = 1/2 at the optimum)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    for i, (name, pts) in enumerate(series.items()):
        if not pts:
            continue
        pts = sorted(pts)
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts], dtype=float)
        color = f"C{i % 10}"
        if smooth and len(pts) > 50:
            ax.plot(x, y, color=color, alpha=0.2, lw=0.7)
            ax.plot(x, ema(y, max(5, len(y) // 50)), color=color, lw=1.6, label=f"{name} (EMA)")
        else:
            ax.plot(x, y, color=color, lw=1.6, marker="o" if len(pts) < 30 else None, ms=3, label=name)
    for label, step in (marks or {}).items():
        ax.axvline(step, color="0.3", ls="--", lw=1)
        ax.annotate(label, (step, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8, color="0.3")
    for label, value in (hlines or {}).items():
        ax.axhline(value, color="tab:red", ls=":", lw=1)
        ax.annotate(label, (1, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", fontsize=8, color="tab:red", ha="right")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if any(series.values()):  # below the axes: curves spanning the whole plot are never hidden
        n = sum(1 for v in series.values() if v)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(n, 4), frameon=False)
    return render(fig)


def shares(history: dict[str, Series], title: str, labels: list[str] | None = None) -> np.ndarray:
    """Class (or mode) shares of generated samples over training: mode hopping shows as bands
    that swell and vanish."""
    plt = pyplot()
    keys = sorted(history)
    steps = sorted({s for k in keys for s, _ in history[k]})
    grid = np.array([[dict(history[k]).get(s, 0.0) for s in steps] for k in keys])
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    names = labels if labels and len(labels) == len(keys) else [k.split("/")[-1] for k in keys]
    ax.stackplot(steps, grid, labels=names, alpha=0.85)
    ax.set_ylim(0, 1)
    ax.set_xlabel("generator step")
    ax.set_ylabel("share of generated samples")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return render(fig)


def small_multiples(series: dict[str, Series], units: dict[str, str], marks: dict[str, int] | None = None,
                    cols: int = 3) -> np.ndarray:
    """One small panel per metric (its own y axis and unit), the best checkpoint marked in each."""
    plt = pyplot()
    n = len(series)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, pts) in zip(axes.flat, series.items()):
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.4)
        for label, step in (marks or {}).items():
            ax.axvline(step, color="0.3", ls="--", lw=1, label=label)
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("generator step", fontsize=7)
        ax.set_ylabel(units.get(name, ""), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if marks:
        axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return render(fig)
