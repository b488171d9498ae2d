"""A study's report: the summary (best trial vs the paper's default), the trials table, Optuna's
plots, and the trial runs compared."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation import seeds
from reports import figures
from reports.compare import comparison
from reports.document import Document, Section, Table, Text
from reports.sources import artifact_png, json_artifact, png, rows
from suite.core import tracking
from suite.core.errors import ConfigError


def study_parent(name: str):
    found = tracking.find_runs(f"tags.`suite.study` = '{name}' and tags.`suite.kind` = 'study'")
    if not found:
        raise ConfigError(f"no study named '{name}' in {tracking.paths.shown_uri()}")
    return found[0]


def report_study(name: str) -> tuple[Document, str]:
    parent = study_parent(name)
    pid, tags = parent.info.run_id, parent.data.tags
    doc = Document(f"Study {name}", f"{tags.get('suite.recipe')} · objective {tags.get('suite.objective')} "
                                    f"({tags.get('suite.direction')}) · sampler {tags.get('suite.sampler')} · pruner "
                                    f"{tags.get('suite.pruner')}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        summary = json_artifact(pid, "study/summary.json", tmp) or {}
        top = doc.add(_summary(summary))
        csv = tracking.download_artifact(pid, "study/trials.csv", tmp)
        if csv:
            done = _trials_table(top, pd.read_csv(csv), summary)
            if len(done) >= 2:
                doc.add(_budget(done, summary))
        plots = doc.add(Section("Optuna plots"))
        for key, caption in (("optimization_history", "optimization history: objective per trial and best so far"),
                             ("param_importances", "parameter importance (fANOVA)"),
                             ("parallel_coordinate", "parallel coordinates of the trials' parameters")):
            img = artifact_png(pid, f"study/{key}.png", tmp, caption)
            if img:
                plots.add(img)
    children = tracking.find_runs(f"tags.mlflow.parentRunId = '{pid}'")
    for s in comparison(children) if children else []:
        s.title = "Trial runs"
        doc.add(s)
    return doc, pid


def _summary(summary: dict) -> Section:
    top = Section("Summary")
    if "best_value" in summary:
        line = (f"Best trial #{summary['best_trial']}: {summary['metric']} = {summary['best_value']:.4g} with "
                + ", ".join(f"{k} = {v:.3g}" for k, v in summary["best_params"].items()))
        if summary.get("default_value") is not None:
            d, b = summary["default_value"], summary["best_value"]
            moved = f"by {(b - d) / abs(d):+.1%}" if d else f"from 0 to {b:.4g}"  # a relative change of 0 is undefined
            line += f". The paper's default scored {d:.4g}: tuning moved the objective {moved}."
        top.add(Text(line))
    top.add(Text(f"{summary.get('trials', 0)} trials: {summary.get('complete', 0)} complete, "
                 f"{summary.get('pruned', 0)} pruned, {summary.get('failed', 0)} failed."))
    return top


def _trials_table(top: Section, df: pd.DataFrame, summary: dict) -> list[float]:
    """The trials as a sortable table, the best highlighted; returns the complete trials' values."""
    if "duration" in df:  # pandas writes timedeltas as '0 days 00:01:41.2'
        df["duration"] = pd.to_timedelta(df["duration"]).dt.total_seconds().map(
            lambda v: None if np.isnan(v) else f"{v:.0f} s")
    params = [c for c in df.columns if c.startswith("params_")]
    keep = ["number", "state", "value", *params, "user_attrs_slot", "duration", "user_attrs_reason"]
    df = df[[c for c in keep if c in df.columns]]  # the long free-text reason last
    best = df["value"].idxmin() if summary.get("direction", "minimize") == "minimize" else df["value"].idxmax()
    top.add(Table([c.replace("params_", "").replace("user_attrs_", "") for c in df.columns], rows(df),
                  sortable=True, highlight=int(best) if df["value"].notna().any() else None,
                  caption="trials (highlighted: best); slot 0 holds the paper's defaults"))
    return df[df["state"] == "COMPLETE"]["value"].dropna().tolist() if "state" in df else []


def _budget(done: list[float], summary: dict) -> Section:
    curve = seeds.budget_curve(done, summary.get("direction") == "maximize")
    budget = Section("Budget curve")
    budget.add(png(figures.budget({"expected best (band: 95 % of the best of k)": curve},
                                  f"expected best {summary.get('metric')} vs trials", summary.get("metric", "objective")),
                   "expected best score of k trials drawn from this study's complete trials, with the "
                   "95 % band of the best of k (bootstrap over trials; Lucic et al. 2018)"))
    budget.add(Text(f"With 1 trial the expected score is {curve[0]['expected_best']:.4g}; with "
                    f"{len(done)} it is {curve[-1]['expected_best']:.4g}. Compare families at equal "
                    "budget (the same k), not at their best single trial."))
    return budget
