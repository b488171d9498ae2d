"""Matplotlib figures for reports: curves with readable axes, units and legends."""

from __future__ import annotations

import math

import numpy as np

from suite.core.images import pyplot, render

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


def forest(rows: list[dict], title: str, xlabel: str) -> np.ndarray:
    """One line per spec: the mean and its interval over seeds, every seed's value as a dot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.4, 1.3 + 0.45 * len(rows)))
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        ax.scatter(r["values"], [y] * len(r["values"]), color="0.55", s=14, zorder=2, label="seeds" if i == 0 else None)
        if r.get("ci_low") is not None:
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color="C0", lw=2.2, zorder=3,
                    label="95 % interval" if i == 0 else None)
        ax.scatter([r["mean"]], [y], color="C0", marker="D", s=36, zorder=4, label="mean" if i == 0 else None)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["spec"] for r in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return render(fig)


def bands(curves: dict[str, list[tuple]], title: str, ylabel: str, xlabel: str = "generator step") -> np.ndarray:
    """Per name: a line through (x, centre) with a band from low to high (None: no band there)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, (name, pts) in enumerate(curves.items()):
        x = np.array([p[0] for p in pts])
        centre = np.array([p[1] for p in pts], dtype=float)
        lo = np.array([np.nan if p[2] is None else p[2] for p in pts], dtype=float)
        hi = np.array([np.nan if p[3] is None else p[3] for p in pts], dtype=float)
        ax.plot(x, centre, color=f"C{i % 10}", lw=1.6, marker="o", ms=3, label=name)
        ax.fill_between(x, lo, hi, color=f"C{i % 10}", alpha=0.18, lw=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return render(fig)


def budget(curves: dict[str, list[dict]], title: str, ylabel: str, against: str = "k") -> np.ndarray:
    """Expected best score against the number of trials (Lucic et al. 2018), or against the
    device-hours they cost (`against="device_hours"`), each with a 95 % band."""
    xlabel = "trials (budget)" if against == "k" else "device-hours (budget)"
    return bands({name: [(c[against], c["expected_best"], c["band_low"], c["band_high"]) for c in curve]
                  for name, curve in curves.items() if all(c.get(against) is not None for c in curve)},
                 title, ylabel, xlabel=xlabel)
