"""Reports from MLflow runs and Optuna studies (read back from MLflow only).

    python -m suite report RUN_ID -o report.html
    python -m suite report --experiment dcgan_fashion
    python -m suite report --study wgan_fashion-tune --format md -o study.md
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from reports import figures, latent
from reports.document import Document, Image, Section, Table, Text
from suite import checkpoint, tracking
from suite.errors import ConfigError

LOSS_PANELS = {  # per family: (title, y label, metric keys, reference lines)
    "gan": [("Losses", "BCE loss", ["loss/d", "loss/g"], {}),
            ("Discriminator outputs", "mean probability", ["d_real", "d_fake", "d_fake_gstep"],
             {"D* = 1/2 at the optimum": 0.5})],
    "wgan": [("Wasserstein estimate", "mean f(real) - mean f(fake)", ["wasserstein_estimate"], {}),
             ("Critic and generator losses", "loss", ["loss/d", "loss/g"], {})],
    "cyclegan": [("Adversarial terms (LSGAN)", "MSE", ["loss/g_adv_a", "loss/g_adv_b", "loss/d_a", "loss/d_b"], {}),
                 ("Cycle and identity terms", "weighted L1", ["loss/cycle_a", "loss/cycle_b", "loss/idt_a",
                                                              "loss/idt_b"], {})],
}
LOSS_PANELS["cnn_gan"] = LOSS_PANELS["dcgan"] = LOSS_PANELS["gan"]
NOT_EVAL = ("loss/", "lr/", "perf/", "class_share/", "mode_share/", "d_real", "d_fake", "wasserstein_estimate",
            "critic_steps", "objective")


def _png(array: np.ndarray, caption: str, alt: str = "") -> Image:
    return Image.from_array(array, caption, alt)


def _artifact_png(run_id: str, path: str, tmp: Path, caption: str) -> Image | None:
    local = tracking.download_artifact(run_id, path, tmp)
    return Image(local.read_bytes(), caption, path) if local else None


def _json_artifact(run_id: str, path: str, tmp: Path) -> dict | None:
    local = tracking.download_artifact(run_id, path, tmp)
    return json.loads(local.read_text()) if local else None


def _eval_keys(run) -> list[str]:
    return sorted(k for k in run.data.metrics if not k.startswith(NOT_EVAL) and not k.endswith("_std"))


# --------------------------------------------------------------------------- one run


def run_sections(run, tmp: Path, latent_figures: bool = True) -> list[Section]:
    rid, tags, params = run.info.run_id, run.data.tags, run.data.params
    family = tags.get("suite.family", "")
    name = run.info.run_name or rid
    out = []
    overview = Section(f"Run {name}", anchor=f"run-{rid}")
    rows = [["run id", rid], ["status", run.info.status], ["recipe", tags.get("suite.recipe")],
            ["family", family], ["dataset", tags.get("suite.dataset")], ["seed", tags.get("suite.seed")],
            ["device", tags.get("suite.device")], ["git commit", tags.get("suite.git_commit", "")[:12]],
            ["torch / mlflow", f"{tags.get('suite.torch_version')} / {tags.get('suite.mlflow_version')}"]]
    if run.info.end_time and run.info.start_time:
        rows.append(["duration", f"{(run.info.end_time - run.info.start_time) / 1000:.1f} s"])
    if "suite.best_step" in tags:
        rows.append(["best checkpoint", f"step {tags['suite.best_step']}: {tags['suite.best_metric']} = "
                                        f"{tags['suite.best_value']}"])
    if tags.get("suite.failure_reason"):
        rows.append(["failure", tags["suite.failure_reason"]])
    overview.add(Table(["", ""], rows))
    items = sorted(params.items())
    per = -(-len(items) // 3)  # three column pairs keep the config table short
    cols = [items[i * per:(i + 1) * per] for i in range(3)]
    grid = [[x for col in cols for x in (col[r] if r < len(col) else ("", ""))] for r in range(per)]
    overview.add(Table(["parameter", "value"] * 3, grid, caption="resolved config (also config.json in the run)"))
    out.append(overview)

    losses = Section("Training curves", level=3)
    for title, ylabel, keys, hlines in LOSS_PANELS.get(family, LOSS_PANELS["gan"]):
        series = {k: tracking.history(rid, k) for k in keys if k in run.data.metrics}
        if series:
            losses.add(_png(figures.curves(series, title, ylabel, hlines=hlines), f"{title} per generator step "
                            "(faint: raw, solid: exponential moving average)"))
    if losses.blocks:
        out.append(losses)

    evals = Section("Evaluation over training", level=3)
    marks = {"best checkpoint": int(tags["suite.best_step"])} if "suite.best_step" in tags else {}
    over_time = {k: h for k in _eval_keys(run) if len(h := tracking.history(rid, k)) >= 2}
    if over_time:
        evals.add(_png(figures.small_multiples(over_time, {k: _unit(k) for k in over_time}, marks),
                       "evaluation metrics at each evaluation during training; dashed: the kept best checkpoint"))
    final = {k: run.data.metrics[k] for k in _eval_keys(run)}
    if final:
        evals.add(Table(["metric", "last value"], [[k, v] for k, v in final.items()],
                        caption="metric names encode the protocol: samples, feature extractor, reference split"))
    share_keys = [k for k in run.data.metrics if k.startswith(("class_share/", "mode_share/"))]
    if share_keys:
        hist = {k: tracking.history(rid, k) for k in share_keys}
        if max(len(h) for h in hist.values()) >= 2:
            from suite import data

            labels = list(data.get_spec(tags["suite.dataset"]).classes) if share_keys[0].startswith("class") else None
            evals.add(_png(figures.shares(hist, "Class shares of generated samples over training", labels),
                           "mode hopping shows as bands that swell and vanish between evaluations"))
    if evals.blocks:
        out.append(evals)

    samples = Section("Samples from fixed noise", level=3)
    files = sorted(p for p in tracking.list_artifacts(rid, "samples") if p.endswith(".png"))
    for path in _spread(files, 6):
        step = int(re.findall(r"(\d+)", path)[-1])
        caption = (f"step {step}: rows of input, translation, reconstruction (A then B)" if family == "cyclegan"
                   else f"step {step}: the same latent vectors at every step")
        img = _artifact_png(rid, path, tmp, caption)
        if img:
            samples.add(img)
    if samples.blocks:
        out.append(samples)

    checks = Section("Checks", level=3)
    result = _json_artifact(rid, "eval/result_final.json", tmp)
    if result:
        for text, ok in verdicts(result.get("checks", {})):
            checks.add(Text(text, "verdict-ok" if ok else "verdict-bad"))
    for path, caption in (("eval/nn_grid.png", "memorization: each generated sample (left) beside its three nearest "
                                               "training images in pixel space"),
                          ("eval/modes.png", "mode coverage: generated vs data class (or mode) histogram"),
                          ("eval/translations_atob.png", "held-out A images: input, translation, reconstruction")):
        img = _artifact_png(rid, path, tmp, caption)
        if img:
            checks.add(img)
    if checks.blocks:
        out.append(checks)

    if latent_figures and family != "cyclegan":
        section = latent_section(rid, tmp)
        if section is not None:
            out.append(section)
    return out


UNITS = {"fid": "FID (lower is better)", "kid": "KID (lower is better)", "is": "score (higher is better)",
         "precision": "share of samples", "recall": "share of real data", "density": "density (1 = like data)",
         "coverage": "share of real data", "modes_covered": "modes / classes", "mode_kl": "KL divergence",
         "confidence": "mean max probability", "label_acc": "accuracy", "l1_to_truth": "mean |error| in [-1, 1]"}


def _unit(key: str) -> str:
    prefix = re.match(r"[a-z_]+?(?=\d|$)", key)
    return UNITS.get(prefix.group(0) if prefix else key, key)


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in sorted(set(idx))]


def verdicts(checks: dict) -> list[tuple[str, bool]]:
    """The collapse and memorization checks in words."""
    out = []
    mc = checks.get("mode_collapse")
    if mc and mc.get("modes_total"):
        what = "modes" if "per_mode" in mc else "classes"
        detail = (f"{mc['modes_covered']}/{mc['modes_total']} {what} covered"
                  + (f", KL to the data's class distribution {mc['kl_to_data']:.3f}, mean classifier confidence "
                     f"{mc['mean_confidence']:.2f}" if "kl_to_data" in mc else
                     f", {mc['high_quality_share']:.1%} of samples within 3 std of a mode, KL to uniform "
                     f"{mc['kl_to_uniform']:.3f}"))
        out.append((("Mode collapse FLAGGED: " if mc["flagged"] else "No mode collapse: ") + detail, not mc["flagged"]))
    mem = checks.get("memorization")
    if mem and "pixels" in mem:
        px, ft = mem["pixels"], mem["features"]
        detail = (f"{px['near_copy_share']:.2%} of samples are near copies in pixel space and {ft['near_copy_share']:.2%} "
                  f"in feature space (closer to a training image than 99 % of held-out images are); median "
                  f"distance to the nearest training image is {px['nn_ratio']:.2f}x that of held-out images; "
                  f"C_T = {mem['ct']:.2f} (data copying would be below {mem['ct_flag']})")
        out.append((("Memorization FLAGGED: " if mem["flagged"] else "No memorization found: ") + detail,
                    not mem["flagged"]))
    return out


def latent_section(run_id: str, tmp: Path) -> Section | None:
    path = tracking.download_artifact(run_id, "checkpoints/generator.pt", tmp)
    if path is None:
        return None
    try:
        trainer = latent.load_generator(checkpoint.load(path))
    except Exception as e:  # noqa: BLE001 - an old or foreign checkpoint: say so, keep the report
        return Section("Latent space", [Text(f"latent figures unavailable: {e}", "note")], level=3)
    section = Section("Latent space", level=3)
    section.add(_png(latent.interpolation(trainer), "spherical interpolation between fixed latent vectors "
                                                    "(one pair per row)"))
    dataset = trainer.cfg.dataset
    from evaluation import classifier, features

    if trainer.kind == "image" and dataset in classifier.SUPPORTED:
        from suite import data

        ext = features.get("lenet", dataset)
        picture, rows = latent.class_arithmetic(trainer, ext, data.get_spec(dataset).classes)
        if picture is not None:
            section.add(_png(picture, "class directions: each row walks from the mean latent of one class (as the "
                                      "domain classifier labels the samples) to another's"))
            section.add(Table(["from", "to", "z - mean(from) + mean(to) labelled 'to'", "latents"],
                              [[r["from"], r["to"], f"{r['moved']:.0%}", r["n"]] for r in rows],
                              caption="latent arithmetic, checked by the domain classifier"))
    return section


# --------------------------------------------------------------------------- several runs


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
        from suite.tune import infer_direction

        lower_better = infer_direction(primary) == "minimize"
        for r in runs:
            hist = [v for _, v in tracking.history(r.info.run_id, primary)]
            best_values[r.info.run_id] = (min(hist) if lower_better else max(hist)) if hist else None
        table.insert(len(cols), f"best {primary}", [best_values.get(i) for i in df["run_id"]])
    headers = ["run", "status"] + [c.removeprefix("params.") for c in shown_params]
    headers += ([f"best {primary}"] if primary else []) + [f"last {c.removeprefix('metrics.')}" for c in metric_cols]
    rows = [[None if (isinstance(v, float) and np.isnan(v)) else v for v in row] for row in table.values.tolist()]
    highlight = None
    scored = [(v, i) for i, v in enumerate(best_values.get(rid) for rid in df["run_id"]) if v is not None]
    if scored:
        highlight = (min(scored) if lower_better else max(scored))[1]
    section = Section("Comparison of runs")
    section.add(Table(headers, rows, sortable=True, highlight=highlight,
                      caption="click a column to sort; highlighted: the best run by "
                              f"{primary or 'its primary metric'} ({'lower' if lower_better else 'higher'} is better)"))
    names = {r.info.run_id: (r.info.run_name or r.info.run_id[:8]) for r in runs}
    if primary:
        series = {names[r]: tracking.history(r, primary) for r in ids}
        section.add(_png(figures.curves(series, primary, "value", smooth=False), f"{primary} of every run"))
    for key in ("loss/g", "wasserstein_estimate"):
        series = {names[r.info.run_id]: tracking.history(r.info.run_id, key) for r in runs if key in r.data.metrics}
        if series:
            section.add(_png(figures.curves(series, f"{key} of every run", key), f"{key} overlaid (EMA)"))
    return [section]


# --------------------------------------------------------------------------- entry points


def report_runs(run_ids: list[str], latent_figures: bool = True) -> Document:
    runs = [tracking.get_run(r) for r in run_ids]
    title = (f"Run {runs[0].info.run_name}" if len(runs) == 1 else f"{len(runs)} runs compared")
    return _runs_document(title, runs, latent_figures)


def report_experiment(name: str, latent_figures: bool = False) -> Document:
    runs = [r for r in tracking.experiment_runs(name) if r.data.tags.get("suite.kind") != "study"]
    if not runs:
        raise ConfigError(f"experiment '{name}' has no runs")
    return _runs_document(f"Experiment {name}", runs, latent_figures)


def _runs_document(title: str, runs: list, latent_figures: bool) -> Document:
    """The comparison table (two runs or more), then each run's own sections."""
    doc = Document(title, _subtitle(runs))
    with tempfile.TemporaryDirectory() as tmp:
        if len(runs) > 1:
            for s in comparison(runs):
                doc.add(s)
        for r in runs:
            for s in run_sections(r, Path(tmp), latent_figures):
                doc.add(s)
    return doc


def study_parent(name: str):
    found = tracking.find_runs(f"tags.`suite.study` = '{name}' and tags.`suite.kind` = 'study'")
    if not found:
        raise ConfigError(f"no study named '{name}' in {tracking.paths.tracking_uri()}")
    return found[0]


def report_study(name: str) -> tuple[Document, str]:
    parent = study_parent(name)
    pid = parent.info.run_id
    children = tracking.find_runs(f"tags.mlflow.parentRunId = '{pid}'")
    doc = Document(f"Study {name}", f"{parent.data.tags.get('suite.recipe')} · objective "
                                    f"{parent.data.tags.get('suite.objective')} ({parent.data.tags.get('suite.direction')})"
                                    f" · sampler {parent.data.tags.get('suite.sampler')} · pruner "
                                    f"{parent.data.tags.get('suite.pruner')}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        summary = _json_artifact(pid, "study/summary.json", tmp) or {}
        top = doc.add(Section("Summary"))
        if "best_value" in summary:
            line = (f"Best trial #{summary['best_trial']}: {summary['metric']} = {summary['best_value']:.4g} with "
                    + ", ".join(f"{k} = {v:.3g}" for k, v in summary["best_params"].items()))
            if summary.get("default_value") is not None:
                d, b = summary["default_value"], summary["best_value"]
                line += f". The paper's default scored {d:.4g}: tuning moved the objective by {(b - d) / abs(d):+.1%}."
            top.add(Text(line))
        top.add(Text(f"{summary.get('trials', 0)} trials: {summary.get('complete', 0)} complete, "
                     f"{summary.get('pruned', 0)} pruned, {summary.get('failed', 0)} failed."))
        csv = tracking.download_artifact(pid, "study/trials.csv", tmp)
        if csv:
            import pandas as pd

            df = pd.read_csv(csv)
            if "duration" in df:  # pandas writes timedeltas as '0 days 00:01:41.2'
                df["duration"] = pd.to_timedelta(df["duration"]).dt.total_seconds().map(
                    lambda v: None if np.isnan(v) else f"{v:.0f} s")
            params = [c for c in df.columns if c.startswith("params_")]
            keep = ["number", "state", "value", *params, "user_attrs_slot", "duration", "user_attrs_reason"]
            df = df[[c for c in keep if c in df.columns]]  # the long free-text reason last
            best = df["value"].idxmin() if summary.get("direction", "minimize") == "minimize" else df["value"].idxmax()
            rows = [[None if (isinstance(v, float) and np.isnan(v)) else v for v in r] for r in df.values.tolist()]
            top.add(Table([c.replace("params_", "").replace("user_attrs_", "") for c in df.columns], rows,
                          sortable=True, highlight=int(best) if df["value"].notna().any() else None,
                          caption="trials (highlighted: best); slot 0 holds the paper's defaults"))
        plots = doc.add(Section("Optuna plots"))
        for key, caption in (("optimization_history", "optimization history: objective per trial and best so far"),
                             ("param_importances", "parameter importance (fANOVA)"),
                             ("parallel_coordinate", "parallel coordinates of the trials' parameters")):
            img = _artifact_png(pid, f"study/{key}.png", tmp, caption)
            if img:
                plots.add(img)
        if children:
            for s in comparison(children):
                s.title = "Trial runs"
                doc.add(s)
    return doc, pid


def _subtitle(runs) -> str:
    recipes = sorted({r.data.tags.get("suite.recipe", "?") for r in runs})
    return f"recipes: {', '.join(recipes)} · tracking store: {tracking.paths.tracking_uri()}"


def write(doc: Document, out: Path, fmt: str) -> Path:
    from reports.document import to_html, to_markdown

    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "md":
        return to_markdown(doc, out)
    out.write_text(to_html(doc))
    return out


def _check_writable(target: Path) -> None:
    """The report could be written there: an existing writable file, or a writable folder as its
    nearest existing ancestor. Bad input must leave nothing behind, not even an empty file."""
    if target.exists():
        ok, why = target.is_file() and os.access(target, os.W_OK), "not a writable file"
    else:
        folder = next(p for p in target.absolute().parents if p.exists())
        ok, why = folder.is_dir() and os.access(folder, os.W_OK), f"{folder} is not a writable folder"
    if not ok:
        raise ConfigError(f"cannot write the report to {target}: {why}")


def main(run_ids, experiment, study, out: str | None, fmt: str, log: bool = True) -> Path:
    chosen = sum(bool(x) for x in (run_ids, experiment, study))
    if chosen != 1:
        raise ConfigError("report needs RUN_ID [RUN_ID ...], or --experiment NAME, or --study NAME")
    if fmt not in ("html", "md"):
        raise ConfigError(f"--format must be html or md, got '{fmt}'")
    target = Path(out or f"report.{fmt}")
    _check_writable(target)  # before minutes of report building; creates nothing
    owner = None
    if study:
        doc, owner = report_study(study)
    elif experiment:
        doc = report_experiment(experiment)
    else:
        doc = report_runs(run_ids)
        owner = run_ids[0] if len(run_ids) == 1 else None
    try:
        path = write(doc, target, fmt)
    except OSError as e:
        raise ConfigError(f"cannot write the report to {target}: {e.strerror}") from None
    if log and owner and fmt == "html":
        tracking.Tracker(owner).log_text(path.read_text(), "report/index.html")
    print(f"report written to {path}", file=sys.stderr)
    return path
