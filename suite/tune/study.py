"""Hyperparameter studies: Optuna searches the learning rates, every trial is an MLflow run.

    python -m suite tune wgan_fashion --trials 12 --max-steps 300 --workers 2
    python -m suite tune gan_ring8 --storage postgresql://user@db/optuna --study-name lab-ring8

A study is a fixed number of trial slots queued in Optuna's storage (slot 0 holds the paper's
defaults); workers claim queued slots one at a time, so K workers — in one process tree or on
several machines sharing the storage — run exactly that many trials, none twice. Workers send
heartbeats; a worker that dies leaves a stale trial that the next worker marks failed, and
Optuna's RetryHeartbeatStaleTrialCallback queues it again. Re-running the same command resumes.

MLflow: one parent run per study in the recipe's experiment, each trial a child run
(`mlflow.parentRunId`). Optuna's own MLflowCallback is not used: it needs an active parent run
in the calling process for nesting and logs through one process, which serialises parallel
workers; here each trial is logged by the process that trains it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time

import optuna
from optuna.trial import TrialState

from evaluation import metrics
from suite import harness, plugins, run_setup
from suite.core import signals
from suite.core.errors import ConfigError, Stopped, StopRun, SuiteError
from suite.core.tracking import Tracker
from suite.tune.space import infer_direction
from suite.tune.spec import ObjectiveMissing, StudySpec, make_pruner, make_sampler
from suite.tune.storage import (default_storage, drain_queue, heartbeat, joiner_seed, mark_setup, open_storage,
                                requeue, run_workers, safe_url, stopped, wait_for_parent, worker_spec)
from suite.tune.summary import finalize


def resolved_trial_config(spec: StudySpec):
    """The recipe config a trial starts from: evaluations frequent enough to report and prune."""
    cfg = run_setup.resolve_config(spec.recipe, spec.overrides, max_steps=spec.max_steps)
    if cfg.eval_every == 0:
        total = cfg.max_steps or 0
        if not total:
            raise ConfigError("tuning needs --max-steps (or --set eval_every=N) so trials report progress")
        cfg = dataclasses.replace(cfg, eval_every=max(1, total // 4))
    return cfg


def load_study(spec: StudySpec, seed_offset: int = 0):
    cfg = resolved_trial_config(spec)
    return optuna.load_study(study_name=spec.study_name, storage=open_storage(spec.storage),
                             sampler=make_sampler(spec.sampler, spec.seed + seed_offset),
                             pruner=make_pruner(spec.pruner, cfg.max_steps, cfg.eval_every)), cfg


def prepare_study(spec: StudySpec):
    """Create or load the study, its MLflow parent run, and queue the missing trial slots."""
    cfg = resolved_trial_config(spec)
    if not spec.metric:
        p = run_setup.prepare(spec.recipe, cfg, spec.device, spec.data_root)
        evaluator = run_setup.default_evaluator(p)
        if evaluator is None:
            raise ConfigError(f"no evaluation metric is available for {spec.recipe} here; pass --metric")
        spec.metric = evaluator.primary
    elif metrics.lookup(spec.metric) is None:
        raise ConfigError(f"--metric {spec.metric}: not an evaluation metric (names are like "
                          f"fid10k_lenet_fashion_mnist_train; families: {', '.join(sorted(metrics.METRICS))}); "
                          "omit --metric for the recipe's primary")
    spec.direction = spec.direction or infer_direction(spec.metric)
    if spec.direction not in ("minimize", "maximize"):
        raise ConfigError(f"--direction must be minimize or maximize, got '{spec.direction}'")
    storage = open_storage(spec.storage)
    sampler, pruner = make_sampler(spec.sampler, spec.seed), make_pruner(spec.pruner, cfg.max_steps, cfg.eval_every)
    try:  # creating a study is atomic: exactly one coordinator owns it and makes the parent run
        study = optuna.create_study(study_name=spec.study_name, storage=storage, direction=spec.direction,
                                    sampler=sampler, pruner=pruner)
        owner = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.study_name, storage=storage, sampler=sampler, pruner=pruner)
        owner = False
    def setup() -> str:
        for key, value in {"recipe": spec.recipe, "metric": spec.metric, "direction": spec.direction,
                           "params": [dataclasses.asdict(p) for p in spec.params],
                           "plugins": plugins.sources([cfg.family])}.items():
            study.set_user_attr(key, value)
        queue_slots(study, spec, cfg)  # before the parent id appears: joiners wait for that
        study.set_user_attr("mlflow_parent_run_id", _create_parent(spec, cfg))
        return study.user_attrs["mlflow_parent_run_id"]

    if owner:
        mark_setup(study)
        return study, setup()
    spec.seed_offset = joiner_seed()  # a joining coordinator must not repeat the owner's draws
    parent_id = wait_for_parent(study, "--study-name", setup)
    attrs = study.user_attrs
    plugins.check_same_sources(attrs.get("plugins", {}), f"study '{spec.study_name}'")
    if attrs.get("recipe") != spec.recipe or attrs.get("metric") != spec.metric:
        raise ConfigError(f"study '{spec.study_name}' belongs to recipe {attrs.get('recipe')} / metric "
                          f"{attrs.get('metric')}; use another --study-name")
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(f"study '{spec.study_name}' already exists with direction {study.direction.name.lower()}")
    Tracker.attach(parent_id).mark_running()
    queue_slots(study, spec, cfg)  # a resumed study may ask for more trials than it has
    return study, parent_id


def _create_parent(spec: StudySpec, cfg) -> str:
    tags = {"suite.study": spec.study_name, "suite.storage": safe_url(spec.storage),
            "suite.sampler": spec.sampler, "suite.pruner": spec.pruner, "suite.objective": spec.metric,
            "suite.direction": spec.direction, "suite.recipe": spec.recipe, "suite.kind": "study"}
    params = {"recipe": spec.recipe, "trials": spec.trials, "sampler": spec.sampler, "pruner": spec.pruner,
              "objective": spec.metric, "direction": spec.direction,
              "search_space": ";".join(f"{p.name}:{p.low:g}:{p.high:g}:{'log' if p.log else 'lin'}"
                                       for p in spec.params)}
    parent = Tracker.create(spec.recipe, f"study-{spec.study_name}", params, tags,
                            {"study": json.loads(spec.to_json()) | {"storage": safe_url(spec.storage)},
                             "config": dataclasses.asdict(cfg)})
    return parent.run_id


def _slots(study) -> set[int]:
    return {t.user_attrs["slot"] for t in study.get_trials(deepcopy=False) if "slot" in t.user_attrs}


def queue_slots(study, spec: StudySpec, cfg) -> None:
    """Slots 0..trials-1, each one queued trial; slot 0 carries the paper's values."""
    have = _slots(study)
    for slot in range(spec.trials):
        if slot in have:
            continue
        params = {p.name: getattr(cfg, p.name) for p in spec.params} if slot == 0 else {}
        if slot == 0:  # out-of-range defaults cannot be enqueued: widen nothing, just say so
            for p in spec.params:
                if not p.low <= params[p.name] <= p.high:
                    params.pop(p.name)
        study.enqueue_trial(params, user_attrs={"slot": slot, "paper_default": slot == 0})


# --------------------------------------------------------------------------- workers


class _Trial:
    """One trial's hooks into its training run: tags at the start, each evaluation reported to Optuna
    (and pruned by it), the values seen kept for the trial's result."""

    def __init__(self, trial, spec: StudySpec):
        self.trial, self.spec, self.seen, self.tracker = trial, spec, [], None

    def on_start(self, tracker) -> None:
        self.tracker = tracker
        self.trial.set_user_attr("mlflow_run_id", tracker.run_id)
        tracker.set_tags({"suite.trial_number": self.trial.number, "suite.trial_slot": self.trial.user_attrs.get("slot"),
                          "suite.study": self.spec.study_name, "suite.trial_state": "running"})

    def on_eval(self, step: int, metrics: dict) -> None:
        spec = self.spec
        if spec.metric not in metrics:
            raise ObjectiveMissing(f"--metric {spec.metric} is not computed at the evaluations of {spec.recipe}; "
                                   f"available: {', '.join(sorted(k for k in metrics if '/' not in k))}")
        value = metrics[spec.metric]
        self.seen.append(value)
        self.trial.report(value, step)
        self.tracker.log_metrics(step, {"objective": value})
        if self.trial.should_prune():
            raise StopRun(f"pruned by the {spec.pruner} pruner at step {step} ({spec.metric}={value:.4g})")

    def best(self) -> float:
        """The best checkpoint's value (the objective of a completed trial)."""
        finite = [v for v in self.seen if math.isfinite(v)]
        if not finite:
            raise ConfigError(f"trial produced no finite value of {self.spec.metric}")
        sign = 1 if self.spec.direction == "minimize" else -1
        return min(finite, key=lambda v: sign * v)


def _request(spec: StudySpec, trial, params: dict, parent_id: str, hooks: _Trial) -> run_setup.RunRequest:
    req = run_setup.RunRequest(
        recipe=spec.recipe, overrides={**spec.overrides, **params}, max_steps=spec.max_steps, device=spec.device,
        data_root=spec.data_root, progress=False, parent_run_id=parent_id,
        run_name=f"{spec.study_name}-trial{trial.number:03d}",
        extra_tags={"suite.study": spec.study_name}, on_eval=hooks.on_eval, on_start=hooks.on_start)
    req.overrides.setdefault("eval_every", resolved_trial_config(spec).eval_every)
    return req


def run_trial(study, trial, spec: StudySpec, parent_id: str) -> None:
    params = {p.name: p.suggest(trial) for p in spec.params}
    hooks = _Trial(trial, spec)
    state, value, reason = TrialState.COMPLETE, None, ""
    with heartbeat(study, trial):
        try:
            harness.train(_request(spec, trial, params, parent_id, hooks))
            value = hooks.best()
        except Stopped as e:  # not the trial's fault: it goes back to the queue, uncounted
            requeue(study, trial, params, ("slot", "paper_default"), str(e))
            raise
        except ObjectiveMissing as e:  # no trial can succeed: the study stops here, in one line
            trial.set_user_attr("reason", str(e)[:500])
            study.tell(trial, state=TrialState.FAIL)
            raise
        except StopRun as e:
            state, reason = TrialState.PRUNED, str(e)
        except (Exception, SuiteError) as e:  # noqa: BLE001 - a failed trial must not end the study
            state, reason = TrialState.FAIL, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
    _record(study, trial, hooks, state, value, reason)
    label = f"trial {trial.number} (slot {trial.user_attrs.get('slot')}) {state.name.lower()}"
    print(f"{label}: {params} -> {value if value is not None else reason}", file=sys.stderr, flush=True)


def _record(study, trial, hooks: _Trial, state, value: float | None, reason: str) -> None:
    """The trial's end in Optuna and on its MLflow run."""
    if reason:
        trial.set_user_attr("reason", reason)
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    else:
        study.tell(trial, state=state)
    if hooks.tracker is not None:
        tags = {"suite.trial_state": state.name.lower()}
        if value is not None:
            tags["suite.trial_value"] = f"{value:.6g}"
        hooks.tracker.set_tags(tags)


def work(spec: StudySpec, worker_id: int = 0, deadline: float | None = None) -> None:
    with signals.stoppable():
        _work(spec, worker_id, deadline)


def _work(spec: StudySpec, worker_id: int, deadline: float | None) -> None:
    """Claim and run queued trials until none is queued or running elsewhere (or time is up)."""
    run_setup.share_cores(spec.workers)
    study, _ = load_study(spec, seed_offset=spec.seed_offset + worker_id)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    drain_queue(study, lambda trial: run_trial(study, trial, spec, parent_id), deadline, "trials")


def tune(spec: StudySpec) -> dict:
    spec.storage = spec.storage or default_storage()
    spec.study_name = spec.study_name or f"{spec.recipe}-tune"
    if spec.workers < 1 or spec.trials < 1:
        raise ConfigError("--workers and --trials must be >= 1")
    if spec.timeout is not None and not spec.timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {spec.timeout:g}")
    study, parent_id = prepare_study(spec)
    deadline = time.time() + spec.timeout if spec.timeout else None
    try:
        if spec.workers == 1:
            work(spec, 0, deadline)
        else:
            run_workers("_tune-worker", spec.to_json(), [str(deadline or "")], spec.workers)
    except (Stopped, signals.Interrupted) as e:
        raise stopped(parent_id, e.signum, "trials", f"suite tune {spec.recipe}",
                      f"study '{spec.study_name}'") from None
    except SuiteError as e:  # e.g. an objective no evaluation computes: every trial would fail
        Tracker.attach(parent_id).finish("FAILED", str(e))
        raise
    return finalize(study, spec, parent_id)


def worker_main(worker_id: str, deadline: str) -> int:
    work(StudySpec.from_json(worker_spec()), int(worker_id), float(deadline) if deadline else None)
    return 0

