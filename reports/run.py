"""One run's sections of a report: overview and config, training curves, evaluation over
training, fixed-noise samples, the checks in words, and the latent space."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from evaluation import classifier, features, metrics
from recipes import registry
from recipes.base import Trainer
from reports import figures, latent
from reports.document import Section, Table, Text
from reports.sources import artifact_png, json_artifact, png
from suite import data
from suite.core import checkpoint, tracking


def _eval_keys(run) -> list[str]:
    return sorted(k for k in run.data.metrics if metrics.is_evaluation(k))


def run_sections(run, tmp: Path, latent_figures: bool = True) -> list[Section]:
    """One run's sections, each left out where the run has nothing for it."""
    family = run.data.tags.get("suite.family", "")
    trainer = registry.FAMILIES[family].trainer if family in registry.FAMILIES else Trainer
    sections = [_overview(run), _curves(run, trainer), _evaluations(run), _samples(run, trainer, tmp),
                _landscape(run, tmp), _checks(run, tmp)]
    if latent_figures and trainer.kind != "translation":
        sections.append(latent_section(run.info.run_id, tmp))
    return [s for s in sections if s is not None and s.blocks]


def _overview(run) -> Section:
    rid, tags, params = run.info.run_id, run.data.tags, run.data.params
    overview = Section(f"Run {run.info.run_name or rid}", anchor=f"run-{rid}")
    rows = [["run id", rid], ["status", run.info.status], ["recipe", tags.get("suite.recipe")],
            ["family", tags.get("suite.family", "")], ["dataset", tags.get("suite.dataset")], ["seed", tags.get("suite.seed")],
            ["device", tags.get("suite.device")], ["git commit", tags.get("suite.git_commit", "")[:12]],
            ["torch / mlflow", f"{tags.get('suite.torch_version')} / {tags.get('suite.mlflow_version')}"]]
    if tags.get("suite.plugin"):
        rows.append(["plugin", f"{tags['suite.plugin']} (sha256 {tags.get('suite.plugin_sha256', '')[:12]})"])
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
    return overview


def _curves(run, trainer) -> Section:
    losses = Section("Training curves", level=3)
    for title, ylabel, keys, hlines in trainer.loss_panels:
        series = {k: tracking.history(run.info.run_id, k) for k in keys if k in run.data.metrics}
        if series:
            losses.add(png(figures.curves(series, title, ylabel, hlines=hlines), f"{title} per generator step "
                            "(faint: raw, solid: exponential moving average)"))
    return losses


def _evaluations(run) -> Section:
    rid, tags = run.info.run_id, run.data.tags
    evals = Section("Evaluation over training", level=3)
    marks = {"best checkpoint": int(tags["suite.best_step"])} if "suite.best_step" in tags else {}
    over_time = {k: h for k in _eval_keys(run) if len(h := tracking.history(rid, k)) >= 2}
    if over_time:
        evals.add(png(figures.small_multiples(over_time, {k: metrics.unit(k) for k in over_time}, marks),
                       "evaluation metrics at each evaluation during training; dashed: the kept best checkpoint"))
    final = {k: run.data.metrics[k] for k in _eval_keys(run)}
    if final:
        evals.add(Table(["metric", "last value"], [[k, v] for k, v in final.items()],
                        caption="metric names encode the protocol: samples, feature extractor, reference split"))
    share_keys = [k for k in run.data.metrics if k.startswith(("class_share/", "mode_share/"))]
    if share_keys:
        hist = {k: tracking.history(rid, k) for k in share_keys}
        if max(len(h) for h in hist.values()) >= 2:
            labels = list(data.get_spec(tags["suite.dataset"]).classes) if share_keys[0].startswith("class") else None
            evals.add(png(figures.shares(hist, "Class shares of generated samples over training", labels),
                           "mode hopping shows as bands that swell and vanish between evaluations"))
    return evals


def _samples(run, trainer, tmp: Path) -> Section:
    rid = run.info.run_id
    samples = Section("Samples from fixed noise", level=3)
    files = sorted(p for p in tracking.list_artifacts(rid, "samples") if p.endswith(".png"))
    for path in _spread(files, 6):
        step = int(re.findall(r"(\d+)", path)[-1])
        caption = (f"step {step}: rows of input, translation, reconstruction (A then B)" if trainer.kind == "translation"
                   else f"step {step}: the same latent vectors at every step")
        if img := artifact_png(rid, path, tmp, caption):
            samples.add(img)
    return samples


def _landscape(run, tmp: Path) -> Section:
    rid = run.info.run_id
    scape = Section("What the discriminator sees (GAN Lab view)", level=3)
    frames = sorted(p for p in tracking.list_artifacts(rid, "landscape") if p.endswith(".png"))
    gif = artifact_png(rid, "landscape/animation.gif", tmp,
                       "over training: D(x) as a heat map (blue: taken for real, red: for fake), real points green, "
                       "generated purple, arrows the generator's gradient at each generated point")
    if gif:
        scape.add(gif)
    for path in _spread(frames, 3):
        if img := artifact_png(rid, path, tmp, f"step {_step_of(path)}"):
            scape.add(img)
    return scape


def _checks(run, tmp: Path) -> Section:
    rid = run.info.run_id
    checks = Section("Checks", level=3)
    result = json_artifact(rid, "eval/result_final.json", tmp)
    if result:
        for text, ok in metrics.verdicts(result.get("checks", {})):
            checks.add(Text(text, "verdict-ok" if ok else "verdict-bad"))
    for path, caption in (("eval/nn_grid.png", "memorization: each generated sample (left), the training image it "
                                               "matches under small edits, then its three nearest training images "
                                               "in pixel space"),
                          ("eval/modes.png", "mode coverage: generated vs data class (or mode) histogram"),
                          ("eval/translations_atob.png", "held-out A images: input, translation, reconstruction")):
        if img := artifact_png(rid, path, tmp, caption):
            checks.add(img)
    return checks


def _step_of(path: str) -> int:
    return int(re.findall(r"(\d+)", path)[-1])


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in sorted(set(idx))]


def latent_section(run_id: str, tmp: Path) -> Section | None:
    path = tracking.download_artifact(run_id, "checkpoints/generator.pt", tmp)
    if path is None:
        return None
    try:
        trainer = latent.load_generator(checkpoint.load(path))
    except Exception as e:  # noqa: BLE001 - an old or foreign checkpoint: say so, keep the report
        return Section("Latent space", [Text(f"latent figures unavailable: {e}", "note")], level=3)
    section = Section("Latent space", level=3)
    section.add(png(latent.interpolation(trainer), "spherical interpolation between fixed latent vectors "
                                                    "(one pair per row)"))
    dataset = trainer.cfg.dataset
    if trainer.kind == "image" and dataset in classifier.SUPPORTED:
        ext = features.get("lenet", dataset)
        picture, rows = latent.class_arithmetic(trainer, ext, data.get_spec(dataset).classes)
        if picture is not None:
            section.add(png(picture, "class directions: each row walks from the mean latent of one class (as the "
                                      "domain classifier labels the samples) to another's"))
            section.add(Table(["from", "to", "z - mean(from) + mean(to) labelled 'to'", "latents"],
                              [[r["from"], r["to"], f"{r['moved']:.0%}", r["n"]] for r in rows],
                              caption="latent arithmetic, checked by the domain classifier"))
    return section
