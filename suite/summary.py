"""What a command says when it ends: a few lines a person can act on, read back from MLflow (so a
resumed run's summary covers all of it). Printed on stderr; stdout keeps the run id alone.

    python -m suite run dcgan_digits        # ends with run_summary's lines, then the run id
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from evaluation import metrics
from suite.core import paths, tracking

NEXT = "next: python -m suite report {ref}   (an HTML page)  |  python -m suite ui   (compare runs in MLflow)"


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"


def _local(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _final_checks(run_id: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_artifact(run_id, "eval/result_final.json", Path(tmp))
        return json.loads(path.read_text()).get("checks", {}) if path else {}


def run_summary(run_id: str) -> list[str]:
    """The primary metric at the best checkpoint and the last step, the collapse and memorization
    verdicts in words, where the samples and checkpoints are, and the next commands."""
    run = tracking.get_run(run_id)
    tags, values = run.data.tags, run.data.metrics
    steps = max((m.step for m in tracking.client().get_metric_history(run_id, "loss/g")), default=0)
    lines = [f"run {run.info.run_name} ({tags.get('suite.recipe', '?')}, seed {tags.get('suite.seed', '?')}): "
             f"{run.info.status}, {steps} steps"]
    primary = tags.get("suite.best_metric") or next((k for k in sorted(values) if metrics.is_evaluation(k)), None)
    if primary:
        better = {"min": "lower is better", "max": "higher is better"}.get(metrics.direction(primary), "")
        hist = tracking.history(run_id, primary)
        last = f"{_fmt(hist[-1][1])} at the last evaluation (step {hist[-1][0]})" if hist else "not measured"
        best = (f"{tags['suite.best_value']} at the best checkpoint (step {tags['suite.best_step']}), "
                if "suite.best_value" in tags else "")
        lines.append(f"  {primary} ({better}): {best}{last}")
    else:
        lines.append("  not evaluated (--no-eval, or no metric for this dataset here): "
                     "python -m suite evaluate " + run_id)
    checks = _final_checks(run_id)
    for sentence, _ in metrics.verdicts(checks):
        lines.append(f"  {sentence}")
    if checks and "memorization" not in checks:
        lines.append("  Memorization: not checked for this dataset")
    if line := _input_bound(run_id, tags):
        lines.append(line)
    artifacts = _local(run.info.artifact_uri)
    lines.append(f"  samples: {artifacts}/samples   checkpoints: {paths.run_dir(run_id) / 'checkpoints'}")
    if reason := tags.get("suite.failure_reason"):
        lines.append(f"  why it stopped: {reason}")
    lines.append("  " + NEXT.format(ref=run_id))
    return lines


INPUT_BOUND = 0.25  # share of the wall time spent waiting for batches beyond which input is the bottleneck


def _input_bound(run_id: str, tags: dict) -> str | None:
    """Said when the steps waited for their batches more than INPUT_BOUND of the time."""
    waits = [v for _, v in tracking.history(run_id, "perf/data_wait")]
    if not waits or (share := sum(waits) / len(waits)) <= INPUT_BOUND:
        return None
    fix = ("`python -m suite prepare " + tags.get("suite.dataset", "DATASET") + " --size N` decodes it once"
           if tags.get("suite.data_source", "").startswith("decoded") else "more DataLoader workers (--set num_workers)")
    return f"  input was the bottleneck: {share:.0%} of the time went to waiting for batches; {fix}"


def study_summary(summary: dict) -> list[str]:
    """Best trial against the paper's default, with the trial counts."""
    lines = [f"study {summary['study']}: {summary['trials']} trials ({summary['complete']} complete, "
             f"{summary['pruned']} pruned, {summary['failed']} failed); objective {summary['metric']} "
             f"({summary['direction']})"]
    if "best_value" in summary:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in summary["best_params"].items())
        lines.append(f"  best: trial {summary['best_trial']} {_fmt(summary['best_value'])} with {params}")
        if "default_value" in summary:
            d, b = summary["default_value"], summary["best_value"]
            if b == d:
                verdict = "no trial beat it"
            else:
                verdict = f"the best trial is better by {abs(d - b):.4g}" + (f" ({abs(d - b) / abs(d):.1%})" if d else "")
            lines.append(f"  paper default: {_fmt(d)}; {verdict} (one seed each: confirm with "
                         "`python -m suite benchmark` over several seeds)")
        else:
            lines.append("  paper default: not finished (its trial failed or was pruned)")
    else:
        lines.append("  no trial finished: nothing to compare")
    lines.append("  " + NEXT.format(ref=f"--study {summary['study']}"))
    return lines
