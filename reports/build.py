"""Reports from MLflow runs and Optuna studies (read back from MLflow only).

    python -m suite report RUN_ID -o report.html
    python -m suite report --experiment dcgan_fashion
    python -m suite report --study wgan_fashion-tune --format md -o study.md
    python -m suite report --benchmark NAME -o bench.html
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from reports.benchmark import report_benchmark
from reports.compare import comparison
from reports.document import Document, to_html, to_markdown
from reports.run import run_sections
from reports.study import report_study
from suite.core import tracking
from suite.core.errors import ConfigError

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


def _subtitle(runs) -> str:
    recipes = sorted({r.data.tags.get("suite.recipe", "?") for r in runs})
    return f"recipes: {', '.join(recipes)} · tracking store: {tracking.paths.shown_uri()}"


def write(doc: Document, out: Path, fmt: str) -> Path:
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


FORMATS = ("html", "md")  # the CLI's --format choices


def main(run_ids, experiment, study, out: str | None, fmt: str, log: bool = True, bench: str | None = None) -> Path:
    chosen = sum(bool(x) for x in (run_ids, experiment, study, bench))
    if chosen != 1:
        raise ConfigError("report needs RUN_ID [RUN_ID ...], or --experiment NAME, --study NAME or --benchmark NAME")
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be html or md, got '{fmt}'")
    target = Path(out or f"report.{fmt}")
    _check_writable(target)  # before minutes of report building; creates nothing
    owner = None
    if study:
        doc, owner = report_study(study)
    elif bench:
        doc, owner = report_benchmark(bench)
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
