"""Evaluate a stored training run: load its best or last checkpoint, sample, evaluate, and log
the result back to the run. The application's job: evaluation itself only receives samples.

    python -m suite evaluate RUN_ID --checkpoint best --n 10000
"""

from __future__ import annotations

import dataclasses
import json

from evaluation.evaluate import MIN_SAMPLES, min_samples_reason
from suite import harness, run_setup, stored
from suite.core.errors import ConfigError
from suite.core.tracking import Tracker


def evaluate_run(run_id: str, which: str = "best", n: int | None = None, device: str = "cpu") -> dict:
    """Evaluate a finished run's best or last checkpoint and log the result to that run."""
    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, got '{which}'")
    if n is not None and n < MIN_SAMPLES:
        raise ConfigError(f"--n {n}: {min_samples_reason()}")
    tracker = Tracker.attach(run_id)
    saved = stored.training_config(tracker)
    cfg = stored.rebuild_config(saved)
    if n:
        cfg = dataclasses.replace(cfg, eval_n=n)
    p = run_setup.prepare(saved["recipe"], cfg, device)
    state = stored.stored_checkpoint(tracker, which, f"checkpoints/{which}.pt")
    trainer = run_setup.build_trainer(p)
    trainer.load_state_dict(state["trainer"])
    evaluator = run_setup.default_evaluator(p)
    if evaluator is None:
        raise ConfigError(f"no evaluator applies to run {run_id} on this machine")
    step = trainer.step
    result = harness.judge(trainer, evaluator, final=True)
    harness.log_evaluation(tracker, result, step, "final")
    metrics = result.metrics
    tracker.log_metrics(step, metrics)
    tracker.flush(wait=True)
    out = {"run_id": run_id, "checkpoint": which, "step": step, "metrics": metrics}
    tracker.log_text(json.dumps(out, indent=2), f"eval/{which}_step{step:06d}.json")
    return out
