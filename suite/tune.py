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
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from suite import paths
from suite.errors import ConfigError, StopRun, SuiteError

LR_RANGE = (1e-5, 1e-3)  # default search range of every learning rate (log-uniform)
# A worker beats every HEARTBEAT_S seconds; after GRACE_S without a beat its trial is stale.
HEARTBEAT_S = int(os.environ.get("SUITE_TUNE_HEARTBEAT", "5"))
GRACE_S = int(os.environ.get("SUITE_TUNE_GRACE", "30"))
MAXIMIZE_PREFIXES = ("is", "precision", "recall", "density", "coverage", "label_acc", "modes_covered", "hq_share")


@dataclass
class Param:
    name: str
    low: float
    high: float
    log: bool
    integer: bool

    def suggest(self, trial):
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass
class StudySpec:
    recipe: str
    trials: int = 12
    timeout: float | None = None
    params: list[Param] = field(default_factory=list)
    metric: str | None = None
    direction: str | None = None
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    pruner: str = "median"
    sampler: str = "tpe"
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    max_steps: int | None = None
    device: str = "cpu"
    data_root: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        d = json.loads(text)
        d["params"] = [Param(**p) for p in d["params"]]
        return cls(**d)


# --------------------------------------------------------------------------- search space


def parse_space(text: str | None, cfg) -> list[Param]:
    """'lr_g,lr_d' (learning rates log-uniform over LR_RANGE; other numeric fields over
    [default / 4, default * 4]) or explicit 'name:low:high[:log|:lin]'."""
    from recipes.base import config_fields

    fields = config_fields(type(cfg))
    out = []
    for item in (text or "lr_g,lr_d").split(","):
        parts = item.strip().split(":")
        name = parts[0]
        if name not in fields:
            raise ConfigError(f"--params: '{name}' is not a config field of {cfg.family}")
        kind = fields[name]
        if kind not in (int, float):
            raise ConfigError(f"--params: '{name}' is not numeric")
        default = getattr(cfg, name)
        try:
            if len(parts) >= 3:
                low, high = float(parts[1]), float(parts[2])
            elif name.startswith("lr"):
                low, high = LR_RANGE
            else:
                low, high = (max(1, default // 4), default * 4) if kind is int else (default / 4, default * 4)
        except ValueError:
            raise ConfigError(f"--params: cannot read the range in '{item}'") from None
        log = parts[3] != "lin" if len(parts) >= 4 else (name.startswith("lr") or kind is float)
        if not low < high or (log and low <= 0):
            raise ConfigError(f"--params: invalid range for {name}: [{low}, {high}]{' (log)' if log else ''}")
        out.append(Param(name, low, high, log, kind is int))
    return out


def infer_direction(metric: str) -> str:
    return "maximize" if metric.startswith(MAXIMIZE_PREFIXES) else "minimize"


# --------------------------------------------------------------------------- storage and study


def default_storage() -> str:
    paths.home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{paths.home() / 'optuna.db'}"


def open_storage(url: str):
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat args
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:///"):
        # Journal files are what Optuna recommends for many processes on one file system; they
        # have no heartbeat, so a killed worker's trial is failed by the next resume instead.
        return JournalStorage(JournalFileBackend(url[len("journal://"):]))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors of many kinds
        raise ConfigError(f"cannot open Optuna storage {safe_url(url)}: {str(e).splitlines()[0][:200]}") from None
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def safe_url(url: str) -> str:
    if url.startswith(("journal:", "sqlite:")):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


def make_sampler(name: str, seed: int):
    import optuna

    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed)}
    if name not in samplers:
        raise ConfigError(f"--sampler must be one of {', '.join(samplers)}, got '{name}'")
    return samplers[name]()


def make_pruner(name: str, max_steps: int, eval_every: int):
    import optuna

    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=max_steps),
               "none": lambda: optuna.pruners.NopPruner()}
    if name not in pruners:
        raise ConfigError(f"--pruner must be one of {', '.join(pruners)}, got '{name}'")
    return pruners[name]()


def resolved_trial_config(spec: StudySpec):
    """The recipe config a trial starts from: evaluations frequent enough to report and prune."""
    from suite import harness

    cfg = harness.resolve_config(spec.recipe, spec.overrides, max_steps=spec.max_steps)
    if cfg.eval_every == 0:
        total = cfg.max_steps or 0
        if not total:
            raise ConfigError("tuning needs --max-steps (or --set eval_every=N) so trials report progress")
        cfg = dataclasses.replace(cfg, eval_every=max(1, total // 4))
    return cfg


def load_study(spec: StudySpec, seed_offset: int = 0):
    import optuna

    cfg = resolved_trial_config(spec)
    return optuna.load_study(study_name=spec.study_name, storage=open_storage(spec.storage),
                             sampler=make_sampler(spec.sampler, spec.seed + seed_offset),
                             pruner=make_pruner(spec.pruner, cfg.max_steps, cfg.eval_every)), cfg


def prepare_study(spec: StudySpec):
    """Create or load the study, its MLflow parent run, and queue the missing trial slots."""
    import optuna

    from evaluation.evaluate import training_evaluator
    from suite import harness
    from suite.tracking import Tracker

    cfg = resolved_trial_config(spec)
    if not spec.metric:
        p = harness.prepare(spec.recipe, cfg, spec.device, spec.data_root)
        evaluator = training_evaluator(p)
        if evaluator is None:
            raise ConfigError(f"no evaluation metric is available for {spec.recipe} here; pass --metric")
        spec.metric = evaluator.primary
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
    if owner:
        for key, value in {"recipe": spec.recipe, "metric": spec.metric, "direction": spec.direction,
                           "params": [dataclasses.asdict(p) for p in spec.params]}.items():
            study.set_user_attr(key, value)
        queue_slots(study, spec, cfg)  # before the parent id appears: joiners wait for that
        study.set_user_attr("mlflow_parent_run_id", _create_parent(spec, cfg))
        return study, study.user_attrs["mlflow_parent_run_id"]
    parent_id = _wait_for_parent(study)
    attrs = study.user_attrs
    if attrs.get("recipe") != spec.recipe or attrs.get("metric") != spec.metric:
        raise ConfigError(f"study '{spec.study_name}' belongs to recipe {attrs.get('recipe')} / metric "
                          f"{attrs.get('metric')}; use another --study-name")
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(f"study '{spec.study_name}' already exists with direction {study.direction.name.lower()}")
    Tracker.attach(parent_id).mark_running()
    queue_slots(study, spec, cfg)  # a resumed study may ask for more trials than it has
    return study, parent_id


def _create_parent(spec: StudySpec, cfg) -> str:
    from suite.tracking import Tracker

    tags = {"suite.study": spec.study_name, "suite.storage": safe_url(spec.storage),
            "suite.sampler": spec.sampler, "suite.pruner": spec.pruner, "suite.objective": spec.metric,
            "suite.direction": spec.direction, "suite.recipe": spec.recipe, "suite.kind": "study"}
    params = {"recipe": spec.recipe, "trials": spec.trials, "sampler": spec.sampler, "pruner": spec.pruner,
              "objective": spec.metric, "direction": spec.direction,
              "search_space": ";".join(f"{p.name}:{p.low:g}:{p.high:g}:{'log' if p.log else 'lin'}"
                                       for p in spec.params)}
    parent = Tracker.create(spec.recipe, f"study-{spec.study_name}", params, tags,
                            {"study": spec.to_json(), "config": dataclasses.asdict(cfg)})
    return parent.run_id


def _wait_for_parent(study, timeout: float = 120) -> str:
    """A joining coordinator waits for the owner to queue the slots and create the parent run."""
    t0 = time.time()
    while True:
        parent_id = study.user_attrs.get("mlflow_parent_run_id")
        if parent_id:
            return parent_id
        if time.time() - t0 > timeout:
            raise ConfigError(f"study '{study.study_name}' exists but its coordinator never created the MLflow "
                              "parent run; use another --study-name")
        time.sleep(1)


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


def claim(study):
    """Atomically take one queued trial (a second claimant is refused), or None."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage  # Study exposes no public handle; claiming needs the storage
    rdb = getattr(storage, "_backend", storage)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            won = (_compare_and_set_running(rdb, t._trial_id) if hasattr(rdb, "engine")
                   else storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if won:
            return optuna.Trial(study, t._trial_id)
    return None


def _compare_and_set_running(rdb, trial_id: int) -> bool:
    """WAITING -> RUNNING in one conditional UPDATE.

    Optuna's set_trial_state_values reads with SELECT ... FOR UPDATE, which SQLite ignores: two
    processes can both read WAITING and both "win" (seen in CI: one trial trained twice). A
    single UPDATE ... WHERE state = 'WAITING' is atomic on SQLite, PostgreSQL and MySQL alike,
    and the row count says who won.
    """
    from datetime import datetime, timezone

    from optuna.storages._rdb.models import TrialModel
    from optuna.trial import TrialState
    from sqlalchemy import update

    table = TrialModel.__table__
    stmt = (update(table).where(table.c.trial_id == trial_id, table.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING,
                    datetime_start=datetime.now(timezone.utc).replace(tzinfo=None)))  # Optuna stores naive UTC
    with rdb.engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


class Heartbeat:
    """Records a trial's heartbeat every HEARTBEAT_S seconds while it runs (RDB storages)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = None
        if hasattr(storage, "get_heartbeat_interval") and storage.get_heartbeat_interval() is not None:
            self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                pass
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread:
            self.thread.join()


def fail_stale(study) -> None:
    """Trials whose worker stopped beating are failed; the retry callback queues them again."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_trial(study, trial, spec: StudySpec, parent_id: str) -> None:
    from optuna.trial import TrialState

    from evaluation.evaluate import training_evaluator
    from suite import harness

    params = {p.name: p.suggest(trial) for p in spec.params}
    sign = 1 if spec.direction == "minimize" else -1
    seen: list[float] = []
    run = {}

    def on_start(tracker):
        run["tracker"] = tracker
        trial.set_user_attr("mlflow_run_id", tracker.run_id)
        tracker.set_tags({"suite.trial_number": trial.number, "suite.trial_slot": trial.user_attrs.get("slot"),
                          "suite.study": spec.study_name, "suite.trial_state": "running"})

    def on_eval(step, metrics):
        if spec.metric not in metrics:
            raise ConfigError(f"metric '{spec.metric}' is not computed for {spec.recipe}; "
                              f"available: {', '.join(sorted(k for k in metrics if '/' not in k))}")
        value = metrics[spec.metric]
        seen.append(value)
        trial.report(value, step)
        run["tracker"].log_metrics(step, {"objective": value})
        if trial.should_prune():
            raise StopRun(f"pruned by the {spec.pruner} pruner at step {step} ({spec.metric}={value:.4g})")

    req = harness.RunRequest(
        recipe=spec.recipe, overrides={**spec.overrides, **params}, max_steps=spec.max_steps, device=spec.device,
        data_root=spec.data_root, progress=False, parent_run_id=parent_id,
        run_name=f"{spec.study_name}-trial{trial.number:03d}",
        extra_tags={"suite.study": spec.study_name}, on_eval=on_eval, on_start=on_start)
    cfg = resolved_trial_config(spec)
    req.overrides.setdefault("eval_every", cfg.eval_every)
    state, value, reason = TrialState.COMPLETE, None, ""
    with Heartbeat(study._storage, trial._trial_id):
        try:
            harness.train(req, evaluator_factory=training_evaluator)
            finite = [v for v in seen if math.isfinite(v)]
            if not finite:
                raise ConfigError(f"trial produced no finite value of {spec.metric}")
            value = min(finite, key=lambda v: sign * v)  # the best checkpoint's value
        except StopRun as e:
            state, reason = TrialState.PRUNED, str(e)
        except (Exception, SuiteError) as e:  # noqa: BLE001 - a failed trial must not end the study
            state, reason = TrialState.FAIL, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
    if reason:
        trial.set_user_attr("reason", reason)
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    else:
        study.tell(trial, state=state)
    if "tracker" in run:
        tags = {"suite.trial_state": state.name.lower()}
        if value is not None:
            tags["suite.trial_value"] = f"{value:.6g}"
        run["tracker"].set_tags(tags)
    label = f"trial {trial.number} (slot {trial.user_attrs.get('slot')}) {state.name.lower()}"
    print(f"{label}: {params} -> {value if value is not None else reason}", file=sys.stderr, flush=True)


def work(spec: StudySpec, worker_id: int = 0, deadline: float | None = None) -> None:
    """Claim and run queued trials until none is queued or running elsewhere (or time is up)."""
    from optuna.trial import TrialState

    import torch

    if spec.workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.workers))
    study, _ = load_study(spec, seed_offset=worker_id)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    while deadline is None or time.time() < deadline:
        fail_stale(study)
        trial = claim(study)
        if trial is not None:
            run_trial(study, trial, spec, parent_id)
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        time.sleep(HEARTBEAT_S)  # another worker's trial: wait for it to finish or go stale


# --------------------------------------------------------------------------- the study end


def finalize(study, spec: StudySpec, parent_id: str) -> dict:
    """Best params and value, trials CSV and Optuna's plots on the parent run."""
    from optuna.trial import TrialState

    from suite.tracking import Tracker

    tracker = Tracker.attach(parent_id)
    df = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration",
                                       "intermediate_values"))
    tracker.log_text(df.to_csv(index=False), "study/trials.csv")
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    summary = {"study": spec.study_name, "metric": spec.metric, "direction": spec.direction,
               "trials": len(study.trials), "complete": len(done),
               "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
               "failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))}
    if done:
        best = study.best_trial
        default = next((t for t in done if t.user_attrs.get("paper_default")), None)
        summary.update({"best_value": best.value, "best_params": best.params, "best_trial": best.number})
        metrics = {"best_value": best.value, "trials_complete": len(done), "trials_pruned": summary["pruned"],
                   "trials_failed": summary["failed"]}
        if default is not None:
            summary["default_value"] = default.value
            metrics["default_value"] = default.value
        tracker.log_metrics(len(study.trials), metrics)
        tracker.set_tags({"suite.best_trial": best.number, "suite.best_value": f"{best.value:.6g}",
                          **{f"best.{k}": f"{v:.6g}" if isinstance(v, float) else v for k, v in best.params.items()},
                          "suite.best_run_id": best.user_attrs.get("mlflow_run_id", "")})
    tracker.log_text(json.dumps(summary, indent=2, default=str), "study/summary.json")
    for name, image in study_plots(study).items():
        tracker.log_image(image, f"study/{name}.png")
    tracker.finish("FINISHED")
    return summary


def study_plots(study) -> dict:
    """Optuna's optimization history, parallel coordinates and parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm

    from suite.images import figure_to_array

    out = {}
    plots = {"optimization_history": vm.plot_optimization_history, "parallel_coordinate": vm.plot_parallel_coordinate,
             "param_importances": vm.plot_param_importances}
    for name, fn in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few finished trials
                print(f"note: {name} plot skipped ({str(e).splitlines()[0][:100]})", file=sys.stderr)
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flatten()[0].figure
        fig.set_size_inches(9.5 if name == "parallel_coordinate" else 7, 4.5)  # one axis per parameter
        out[name] = figure_to_array(fig)
        plt.close(fig)
    return out


def tune(spec: StudySpec) -> dict:
    spec.storage = spec.storage or default_storage()
    spec.study_name = spec.study_name or f"{spec.recipe}-tune"
    if spec.workers < 1 or spec.trials < 1:
        raise ConfigError("--workers and --trials must be >= 1")
    study, parent_id = prepare_study(spec)
    deadline = time.time() + spec.timeout if spec.timeout else None
    if spec.workers == 1:
        work(spec, 0, deadline)
    else:
        procs = [subprocess.Popen([sys.executable, "-m", "suite", "_tune-worker", spec.to_json(), str(i),
                                   str(deadline or "")], cwd=os.getcwd()) for i in range(spec.workers)]
        try:
            for p in procs:
                p.wait()
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            raise
    return finalize(study, spec, parent_id)


def worker_main(spec_json: str, worker_id: str, deadline: str) -> int:
    work(StudySpec.from_json(spec_json), int(worker_id), float(deadline) if deadline else None)
    return 0

