"""Several runs side by side: a sortable table of params and best/last metrics, the best run
marked by its primary metric's direction (evaluation.metrics), and overlaid curves."""

from __future__ import annotations

from evaluation import metrics
from reports import figures
from reports.document import Section, Table
from reports.sources import png, rows
from suite.core import tracking


def _short_number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return f"{number:.4g}" if any(ch in str(value) for ch in ".e") else value


def comparison(runs) -> list[Section]:
    """A sortable table of params and best/last metrics (pandas from mlflow.search_runs) and
    overlaid curves; the best run by its primary metric is marked."""
    exp_ids = sorted({r.info.experiment_id for r in runs})
    ids = [r.info.run_id for r in runs]
    df = tracking.runs_frame(exp_ids)
    df = df[df["run_id"].isin(ids)].copy()
    primary = next((r.data.tags["suite.best_metric"] for r in runs if "suite.best_metric" in r.data.tags), None)
    param_cols = [c for c in df.columns if c.startswith("params.")]
    varying = [c for c in param_cols if df[c].nunique(dropna=False) > 1]
    shown_params = sorted(set(varying) | {c for c in ("params.lr_g", "params.lr_d", "params.seed") if c in df})
    cols = ["tags.mlflow.runName", "status"] + shown_params
    metric_cols = [c for c in (f"metrics.{primary}" if primary else None, "metrics.loss/g", "metrics.loss/d",
                               "metrics.wasserstein_estimate") if c and c in df]
    table = df[cols + metric_cols].copy()
    for c in shown_params:  # MLflow keeps params as the strings Python printed: 0.00022947357329194948
        table[c] = table[c].map(_short_number)
    best_values = {}
    lower_better = True
    if primary:
        lower_better = metrics.direction(primary) != "max"
        for r in runs:
            best_values[r.info.run_id] = metrics.best(primary, [v for _, v in tracking.history(r.info.run_id, primary)])
        table.insert(len(cols), f"best {primary}", [best_values.get(i) for i in df["run_id"]])
    headers = ["run", "status"] + [c.removeprefix("params.") for c in shown_params]
    headers += ([f"best {primary}"] if primary else []) + [f"last {c.removeprefix('metrics.')}" for c in metric_cols]
    highlight = None
    scored = [(v, i) for i, v in enumerate(best_values.get(rid) for rid in df["run_id"]) if v is not None]
    if scored:
        highlight = (min(scored) if lower_better else max(scored))[1]
    section = Section("Comparison of runs")
    section.add(Table(headers, rows(table), sortable=True, highlight=highlight,
                      caption="click a column to sort; highlighted: the best run by "
                              f"{primary or 'its primary metric'} ({'lower' if lower_better else 'higher'} is better)"))
    names = {r.info.run_id: (r.info.run_name or r.info.run_id[:8]) for r in runs}
    if primary:
        series = {names[r]: tracking.history(r, primary) for r in ids}
        section.add(png(figures.curves(series, primary, "value", smooth=False), f"{primary} of every run"))
    for key in ("loss/g", "wasserstein_estimate"):
        series = {names[r.info.run_id]: tracking.history(r.info.run_id, key) for r in runs if key in r.data.metrics}
        if series:
            section.add(png(figures.curves(series, f"{key} of every run", key), f"{key} overlaid (EMA)"))
    return [section]
