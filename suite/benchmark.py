"""Multi-seed benchmarks: every SPEC x seed cell trained, then a leaderboard with intervals and
paired comparisons in words (Lucic et al. 2018: one seed cannot tell a recipe from a lucky seed).

    python -m suite benchmark gan_fashion cnn_gan_fashion dcgan_fashion wgan_fashion --seeds 8 --max-steps 600
    python -m suite benchmark gan_ring8 "gan_ring8:lr_g=1e-3,lr_d=1e-3" --seeds 6 --json
    python -m suite benchmark gan_fashion dcgan_fashion --trials 12 --max-steps 400   # equal-budget random search
    python -m suite benchmark gan_ring8 "gan_ring8:lr_d=1e-3" --until-decided --max-seeds 11 --margin 0.05

A SPEC is a named recipe, optionally with overrides after a colon; its text is its label. Cells
are trials of an Optuna study in the same storage queue `suite tune` uses (atomic claims,
heartbeats, a killed worker's cell queued again), so K hosts join one benchmark with the same
command and `--storage`. Every cell is an MLflow child run of the benchmark's parent run, in the
experiment `benchmarks` (so the MLflow UI nests them); re-running the command reuses finished cells and trains the rest.
With --until-decided the seeds come in rounds and each pair stops once decided (evaluation/sequential.py);
every cell records its wall time, device and steps, and the result says what the benchmark cost in device-hours.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState

from evaluation import leaderboard, metrics, seeds, sequential
from suite import harness, plugins, run_setup
from suite.core import jsonout, signals, tracking
from suite.core.errors import ConfigError, Stopped, SuiteError
from suite.core.tracking import Tracker
from suite.tune.space import LR_RANGE
from suite.tune.storage import (default_storage, drain_queue, fail_stale, heartbeat, mark_setup, open_storage,
                                requeue, run_workers, safe_url, stopped, wait_for_parent, worker_spec)

EXPERIMENT = "benchmarks"
SEARCH_SEED = 16  # of the random search's draws (a constant: every host draws the same ones)


@dataclass
class BenchmarkSpec:
    specs: list[str]
    seeds: int = 5
    trials: int | None = None  # random search: trial t = seed t with learning rates drawn for t (Lucic et al. 2018)
    max_steps: int | None = None
    sets: dict = field(default_factory=dict)  # --set, applied to every spec
    metrics: list[str] = field(default_factory=list)  # compared besides the primary
    baseline: str | None = None  # compare every spec with this one only (fewer pairs, more power)
    test: str = "t"
    name: str | None = None
    storage: str | None = None
    workers: int = 1
    device: str = "cpu"
    data_root: str | None = None
    until_decided: bool = False  # seeds in rounds, each pair stopped once decided (evaluation/sequential.py)
    max_seeds: int | None = None
    min_seeds: int = 3
    batch: int = 2
    margins: dict = field(default_factory=dict)  # metric name or key ('' = primary) -> equivalence margin

    def design(self) -> sequential.Design:
        if self.until_decided:
            return sequential.Design(max_seeds=self.max_seeds, sequential=True, min_seeds=self.min_seeds,
                                     batch=self.batch)
        return sequential.Design(max_seeds=self.seeds)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchmarkSpec:
        return cls(**json.loads(text))


def parse_spec(text: str) -> tuple[str, dict[str, str]]:
    """'gan_ring8:lr_g=1e-3,lr_d=1e-3' -> ('gan_ring8', {'lr_g': '1e-3', 'lr_d': '1e-3'})."""
    recipe, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"spec '{text}': overrides are key=value, got '{item}'")
        if key.strip() in overrides:
            raise ConfigError(f"spec '{text}' sets {key.strip()} twice")
        overrides[key.strip()] = value.strip()
    return recipe.strip(), overrides


def resolved(b: BenchmarkSpec, label: str, seed: int = 0):
    recipe, overrides = parse_spec(label)
    try:
        return run_setup.resolve_config(recipe, {**b.sets, **overrides}, seed, b.max_steps)
    except ConfigError as e:
        raise ConfigError(f"spec '{label}': {e}") from None


def datasets(b: BenchmarkSpec) -> dict[str, str]:
    """spec label -> the dataset its samples are judged on (specs are compared only within one)."""
    return {label: resolved(b, label).dataset for label in b.specs}


def pairs(b: BenchmarkSpec) -> list[tuple[str, str]]:
    ds = datasets(b)
    if b.baseline:
        return [(s, b.baseline) for s in b.specs if s != b.baseline]
    return [(a, c) for i, a in enumerate(b.specs) for c in b.specs[i + 1:] if ds[a] == ds[c]]


def power_note(b: BenchmarkSpec) -> str:
    """Said before training: what these seeds can and cannot decide (Holm's family: the pairs on
    one dataset, for one metric; the largest family decides)."""
    ds, compared = datasets(b), pairs(b)
    m = max((sum(ds[a] == d for a, _ in compared) for d in set(ds.values())), default=0)
    test = seeds.TESTS[b.test]
    need = seeds.seeds_needed(m, b.test)
    if not m:
        return "no two specs share a dataset: the leaderboard has intervals but no comparisons"
    if b.until_decided:
        return b.design().plan(m, b.margins)
    if b.seeds < need:
        return (f"with {b.seeds} seeds and {m} pair{'s' * (m > 1)} the {test} (Holm) can declare no difference; "
                f"use at least {need} seeds. The leaderboard's intervals are still computed.")
    alpha = seeds.ALPHA / m
    k = seeds.min_detectable(b.seeds, 1.0, alpha, b.test)
    eq = (" Equivalence within " + ", ".join(f"{v:g} ({k or 'primary'})" for k, v in b.margins.items())
          + ": two one-sided tests (TOST), Holm with Shaffer's restriction.") if b.margins else ""
    return (f"{test}, Holm over {m} pair{'s' * (m > 1)}: with {b.seeds} seeds a difference is detected with 80 % "
            f"power once it is {k:.2g} standard deviations of the per-seed differences.{eq}")


def validate(b: BenchmarkSpec) -> None:
    if not b.specs:
        raise ConfigError("benchmark needs at least one SPEC (a recipe, optionally RECIPE:key=value,...)")
    if len(set(b.specs)) != len(b.specs):
        raise ConfigError("a spec is named twice")
    if b.trials is not None:
        if b.trials < 2:
            raise ConfigError(f"--trials {b.trials}: a budget curve needs at least 2 trials")
        b.seeds = b.trials  # trial t trains with seed t
    _validate_design(b)
    if b.seeds < 2:
        raise ConfigError(f"--seeds {b.seeds}: an interval over seeds needs at least 2 (a verdict at least "
                          f"{seeds.seeds_needed(1, b.test)})")
    if b.workers < 1:
        raise ConfigError("--workers must be >= 1")
    if b.test not in seeds.TESTS:
        raise ConfigError(f"--test must be one of {', '.join(seeds.TESTS)}, got '{b.test}'")
    configs = {}
    for label in b.specs:  # unknown recipes, keys and values: one line before anything runs
        cfg = dataclasses.asdict(resolved(b, label))
        if same := next((other for other, c in configs.items() if c == cfg), None):
            raise ConfigError(f"specs '{same}' and '{label}' are the same config under two labels: a benchmark "
                              "would compare it with itself")
        configs[label] = cfg
    for m in b.metrics:
        if metrics.lookup(m) is None and m not in metrics.METRICS:
            raise ConfigError(f"--metric '{m}' is not an evaluation metric (see evaluation/metrics.py)")
    ds = datasets(b)
    if b.baseline:
        if b.baseline not in b.specs:
            raise ConfigError(f"--baseline '{b.baseline}' is not one of the specs")
        other = [s for s in b.specs if ds[s] != ds[b.baseline]]
        if other:
            raise ConfigError(f"cannot compare {other[0]} ({ds[other[0]]}) with the baseline {b.baseline} "
                              f"({ds[b.baseline]}): specs are compared only on the same dataset")


def _validate_design(b: BenchmarkSpec) -> None:
    """--until-decided's rounds and --margin, refused in one line before anything trains."""
    for key, m in b.margins.items():
        if not (isinstance(m, (int, float)) and math.isfinite(m) and m > 0):
            raise ConfigError(f"--margin {key + '=' if key else ''}{m}: a margin is a positive number in the metric's unit")
        if key and metrics.lookup(key) is None and key not in metrics.METRICS:
            raise ConfigError(f"--margin {key}={m}: '{key}' is not an evaluation metric")
    if not b.until_decided:
        if b.max_seeds is not None:
            raise ConfigError("--max-seeds belongs to --until-decided (a fixed design takes --seeds)")
        return
    if b.trials is not None:
        raise ConfigError("--until-decided and --trials: a random search's budget curve needs every trial")
    if b.test != "t":
        raise ConfigError(f"--until-decided uses the sequential t-test; --test {b.test} is for fixed seeds")
    if b.max_seeds is None:
        raise ConfigError("--until-decided needs --max-seeds K, the most seeds any spec may train")
    if b.min_seeds < 3:
        raise ConfigError(f"--min-seeds {b.min_seeds}: the first look needs at least 3 seeds (a t-test at 2 has no "
                          "estimate of spread worth the name)")
    if b.batch < 1:
        raise ConfigError(f"--batch {b.batch}: a round adds at least one seed")
    if not b.min_seeds <= b.max_seeds <= sequential.HORIZON:
        raise ConfigError(f"--max-seeds {b.max_seeds}: between --min-seeds ({b.min_seeds}) and "
                          f"{sequential.HORIZON} (the horizon the boundaries are computed for)")
    b.seeds = b.design().looks()[-1]


# --------------------------------------------------------------------------- the queue


def cells(b: BenchmarkSpec, upto: int | None = None, specs=None) -> list[dict]:
    """A cell is (spec, seed): the same cell whatever the other specs or the seed count. In a
    random search, cell t of every spec has the same drawn learning rates: paired by trial.
    upto / specs: the cells of a sequential round (seeds below upto, of the specs still open)."""
    n = upto if upto is not None else (b.trials or b.seeds)
    return [{"spec": label, "seed": s, **search_params(b, s)} for label in b.specs if specs is None or label in specs
            for s in range(n)]


def search_params(b: BenchmarkSpec, trial: int) -> dict:
    """Random search: lr_g and lr_d log-uniform over tune_space.LR_RANGE, drawn from the trial number."""
    if not b.trials:
        return {}
    lo, hi = np.log(LR_RANGE[0]), np.log(LR_RANGE[1])
    draw = np.exp(np.random.default_rng([SEARCH_SEED, trial]).uniform(lo, hi, 2))
    return {"search": {"lr_g": float(draw[0]), "lr_d": float(draw[1])}}


def _key(attrs: dict) -> tuple[str, int] | None:
    return (attrs["spec"], attrs["seed"]) if "spec" in attrs and "seed" in attrs else None


def prepare(b: BenchmarkSpec):
    """Create or join the benchmark's study and parent run; queue every cell not finished."""
    storage = open_storage(b.storage)
    study_name = f"benchmark-{b.name}"
    try:
        study = optuna.create_study(study_name=study_name, storage=storage)
        owner = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage)
        owner = False
    def setup() -> str:
        study.set_user_attr("benchmark", json.loads(b.to_json()) | {"storage": safe_url(b.storage)})
        study.set_user_attr("plugins", plugins.sources({resolved(b, label).family for label in b.specs}))
        queue(study, first_round(b))
        study.set_user_attr("mlflow_parent_run_id", _create_parent(b))
        return study.user_attrs["mlflow_parent_run_id"]

    if owner:
        mark_setup(study)
        setup()
        return study
    parent = wait_for_parent(study, "--name", setup)
    saved = study.user_attrs.get("benchmark", {})
    plugins.check_same_sources(study.user_attrs.get("plugins", {}), f"benchmark '{b.name}'")
    for key in ("max_steps", "sets", "trials", "test", "until_decided", "min_seeds", "batch", "margins"):
        # reusing cells trained otherwise would mix protocols (a larger --seeds or --max-seeds continues)
        if key in saved and (saved[key] or None) != (getattr(b, key) or None):
            raise ConfigError(f"benchmark '{b.name}' exists with {key} = {saved[key]!r}, not {getattr(b, key)!r}; "
                              "use another --name")
    Tracker.attach(parent).mark_running()
    fail_stale(study)
    queue(study, first_round(b))
    return study


def first_round(b: BenchmarkSpec) -> list[dict]:
    return cells(b, upto=b.design().looks()[0]) if b.until_decided else cells(b)


def _create_parent(b: BenchmarkSpec) -> str:
    tags = {"suite.kind": "benchmark", "suite.benchmark": b.name, "suite.storage": safe_url(b.storage),
            "suite.test": seeds.TESTS[b.test]}
    params = {"specs": " ".join(b.specs), "seeds": b.seeds, "max_steps": b.max_steps, "test": b.test,
              "sets": ",".join(f"{k}={v}" for k, v in b.sets.items()), "baseline": b.baseline}
    config = json.loads(b.to_json()) | {"storage": safe_url(b.storage)}
    return Tracker.create(EXPERIMENT, f"benchmark-{b.name}", params, tags, config).run_id


def _by_cell(study) -> dict[tuple[str, int], list]:
    out: dict[tuple[str, int], list] = {}
    for t in study.get_trials(deepcopy=False):
        if (key := _key(t.user_attrs)) and not t.user_attrs.get("duplicate"):
            out.setdefault(key, []).append(t)
    return out


def queue(study, wanted: list[dict]) -> None:
    """Each cell once: finished ones are kept, queued or running ones left, failed or missing queued."""
    have = _by_cell(study)
    live = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    for c in wanted:
        if not any(t.state in live for t in have.get(_key(c), [])):
            study.enqueue_trial({}, user_attrs=c)


def run_cell(study, trial, b: BenchmarkSpec, parent_id: str) -> None:
    c = trial.user_attrs
    others = [t for t in _by_cell(study).get(_key(c), []) if t.number != trial.number
              and t.state in (TrialState.COMPLETE, TrialState.RUNNING)]
    if others:  # queued twice by two coordinators resuming at once: the first claim trains it
        trial.set_user_attr("duplicate", True)
        study.tell(trial, state=TrialState.FAIL)
        return
    recipe, overrides = parse_spec(c["spec"])
    overrides = {**c.get("search", {}), **b.sets, **overrides}
    if b.workers > 1 and "num_workers" not in overrides:  # K workers share the DataLoader processes too
        overrides["num_workers"] = max(1, run_setup.loader_workers(resolved(b, c["spec"]).num_workers) // b.workers)
    run = {}

    def on_start(tracker):
        run["tracker"] = tracker
        trial.set_user_attr("mlflow_run_id", tracker.run_id)

    req = run_setup.RunRequest(
        recipe=recipe, overrides=overrides, seed=c["seed"], max_steps=b.max_steps, device=b.device,
        data_root=b.data_root, progress=False, parent_run_id=parent_id, experiment=EXPERIMENT,
        run_name=f"{b.name}-{c['spec']}-s{c['seed']}", on_start=on_start,
        extra_tags={"suite.benchmark": b.name, "suite.spec": c["spec"]})
    state, reason = TrialState.COMPLETE, ""
    start = time.monotonic()
    with heartbeat(study, trial):
        try:
            harness.train(req)
        except Stopped as e:  # not the cell's fault: queued again, trained from the start by the next worker
            requeue(study, trial, {}, ("spec", "seed", "search"), str(e))
            raise
        except (Exception, SuiteError) as e:  # noqa: BLE001 - a failed cell must not end the benchmark
            state, reason = TrialState.FAIL, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
    _record_cost(trial, run.get("tracker"), time.monotonic() - start)
    if reason:
        trial.set_user_attr("reason", reason)
    if state == TrialState.COMPLETE:
        study.tell(trial, 0.0)  # the values live in the MLflow run; Optuna only schedules
    else:
        study.tell(trial, state=state)
    print(f"cell {c['spec']} seed {c['seed']}: {state.name.lower()}{' ' + reason if reason else ''}",
          file=sys.stderr, flush=True)


def _record_cost(trial, tracker, wall_s: float) -> None:
    """What the cell cost: wall seconds (setup and evaluation included), device, steps; on the
    trial (the benchmark sums them) and as tags of the cell's run (the MLflow UI shows them)."""
    cost = {"wall_s": round(wall_s, 3), "device": "", "steps": 0}
    if tracker is not None:
        tags = tracker.run().data.tags
        cost.update(device=tags.get("suite.device", ""), steps=int(tags.get("suite.steps", 0)))
        tracker.set_tags({f"suite.cell.{k}": v for k, v in cost.items()})
    trial.set_user_attr("cost", cost)


def work(b: BenchmarkSpec, worker_id: int = 0) -> None:
    """Claim and train cells until none is queued or running elsewhere (or a stop signal)."""
    with signals.stoppable():
        _work(b, worker_id)


def _work(b: BenchmarkSpec, worker_id: int) -> None:
    run_setup.share_cores(b.workers)
    study = optuna.load_study(study_name=f"benchmark-{b.name}", storage=open_storage(b.storage))
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    drain_queue(study, lambda trial: run_cell(study, trial, b, parent_id), what="cells")


def worker_main(worker_id: str) -> int:
    work(BenchmarkSpec.from_json(worker_spec()), int(worker_id))
    return 0


# --------------------------------------------------------------------------- results


def cell_values(run) -> dict:
    """Every evaluation metric of one cell's run at its best checkpoint and at its last step,
    with the sampling interval's half-width where one was logged, and the curve over training."""
    run_id = run.info.run_id
    last = run.data.metrics
    best_step = int(run.data.tags.get("suite.best_step", -1))
    out = {"primary": run.data.tags.get("suite.best_metric", ""), "best": {}, "last": {}, "noise": {}, "curves": {}}
    for key in last:
        if not metrics.is_evaluation(key):
            continue
        hist = tracking.history(run_id, key)
        out["curves"][key] = hist
        out["last"][key] = hist[-1][1] if hist else last[key]
        at_best = [v for s, v in hist if s == best_step]
        if at_best and len(hist) > 1:  # measured once (KID, PRDC: at the end only): no checkpoint was chosen by it
            out["best"][key] = at_best[-1]
        lo, hi = metrics.interval_names(key)
        if lo in last and hi in last:
            out["noise"][key] = (last[hi] - last[lo]) / 2
    return out


def collect(study, b: BenchmarkSpec) -> dict[str, dict[int, dict]]:
    """spec -> seed -> cell values, for the finished cells of this command's specs and seeds."""
    wanted = {_key(c) for c in cells(b)}
    out: dict[str, dict[int, dict]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        key = _key(t.user_attrs)
        if key in wanted and t.user_attrs.get("mlflow_run_id"):
            run = tracking.get_run(t.user_attrs["mlflow_run_id"])
            out.setdefault(key[0], {})[key[1]] = {"run_id": run.info.run_id, **t.user_attrs.get("search", {}),
                                                  "cost": t.user_attrs.get("cost", {}), **cell_values(run)}
    return out


def cost(study, b: BenchmarkSpec, expected: dict[str, int]) -> dict:
    """Device-hours per spec of the cells this design used (seeds below `expected[spec]`; failed
    attempts included: they were paid for), the total, and what the fixed design of `max seeds`
    per spec would have cost at the same cost per cell."""
    spent: dict[str, list[dict]] = {label: [] for label in b.specs}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        key = _key(t.user_attrs)
        if key and key[0] in spent and key[1] < expected[key[0]] and "cost" in t.user_attrs:
            spent[key[0]].append(t.user_attrs["cost"])
    specs = {}
    for label, costs in spent.items():
        hours = sum(c["wall_s"] for c in costs) / 3600
        devices = sorted({c["device"] for c in costs if c["device"]})
        specs[label] = {"cells": len(costs), "device_hours": hours, "device": ", ".join(devices),
                        "steps": sum(c["steps"] for c in costs),
                        "hours_per_cell": hours / len(costs) if costs else None, "seeds": expected[label]}
    out = {"specs": specs, "device_hours": sum(v["device_hours"] for v in specs.values()),
           "cells": sum(v["cells"] for v in specs.values())}
    if b.until_decided:
        k = b.seeds
        per_cell = [v["hours_per_cell"] for v in specs.values() if v["hours_per_cell"] is not None]
        fallback = sum(per_cell) / len(per_cell) if per_cell else 0.0
        out["fixed_design"] = {"seeds": k, "cells": k * len(b.specs),
                               "device_hours": sum(k * (v["hours_per_cell"] or fallback) for v in specs.values())}
    return out


def judge(b: BenchmarkSpec, results: dict, primaries: dict, n_now: int | None = None) -> list[dict]:
    return leaderboard.comparisons(pairs(b), results, primaries, b.metrics, b.test, b.design(), b.margins, n_now)


def rounds(study, b: BenchmarkSpec) -> list[dict]:
    """Train round after round: the seeds of the specs still in an open pair, then every open pair
    tested; stops when none is open or the last look is reached. Each round is recorded (study
    attribute `rounds`, the parent run's benchmark/rounds.json)."""
    done, live = [], set(b.specs)
    for n in b.design().looks():
        queue(study, cells(b, upto=n, specs=live))
        train_queued(b)
        results = collect(study, b)
        board = leaderboard.leaderboard(b.specs, datasets(b), results)
        judged = judge(b, results, board["primaries"], n)
        last = n == b.design().looks()[-1]
        still = sorted({(c["a"], c["b"]) for c in judged if c["decided_at"] is None and not last})
        decided = [f"{c['a']} vs {c['b']} on {c['metric']}: {c['verdict']}" for c in judged if c["decided_at"] == n]
        done.append({"seeds": n, "trained": sorted(live), "decided": decided,
                     "open": [f"{a} vs {c}" for a, c in still]})
        study.set_user_attr("rounds", done)
        print(f"round {len(done)} ({n} seeds): " + ("; ".join(decided) + "; " if decided else "")
              + (f"open: {', '.join(done[-1]['open'])}" if still else "every pair decided" if not last
                 else "the last look"), file=sys.stderr, flush=True)
        if not still:
            break
        live = {x for pair in still for x in pair}
    return done


def finalize(study, b: BenchmarkSpec) -> dict:
    parent = Tracker.attach(study.user_attrs["mlflow_parent_run_id"])
    results = collect(study, b)
    done = study.user_attrs.get("rounds", []) if b.until_decided else []
    expected = {label: b.seeds for label in b.specs}
    if done:  # a spec trained up to the last round it was open in
        expected = {label: max([r["seeds"] for r in done if label in r["trained"]], default=0) for label in b.specs}
    missing = [f"{label} seed {s}" for label in b.specs for s in range(expected[label])
               if s not in results.get(label, {})]
    tried = _by_cell(study)
    why = {f"{spec} seed {seed}": reasons[-1] for (spec, seed), ts in tried.items()
           if (reasons := [t.user_attrs["reason"] for t in ts if t.user_attrs.get("reason")])}
    board = leaderboard.leaderboard(b.specs, datasets(b), results)
    design = b.design()
    out = {"benchmark": b.name, "test": design.method(b.test), "interval": seeds.INTERVAL, "power": power_note(b),
           "rows": board["rows"], "comparisons": [], "missing": missing,
           "failures": {cell: why[cell] for cell in missing if cell in why}, "parent_run_id": parent.run_id,
           "primaries": board["primaries"], "design": {"kind": "sequential" if b.until_decided else "fixed",
                                                       "looks": design.looks(), "alpha": design.alpha,
                                                       "margins": b.margins},
           "rounds": done, "cost": cost(study, b, expected)}
    if b.trials:  # random search: the expected best of k trials per spec (Lucic et al.'s budget curves)
        out["budget"] = {spec: _with_hours(seeds.budget_curve(
            [r["best"][board["primaries"][spec]] for r in runs.values() if board["primaries"][spec] in r["best"]],
            metrics.direction(board["primaries"][spec]) == "max"), out["cost"]["specs"][spec]["hours_per_cell"])
            for spec, runs in results.items()}
    status = ("FINISHED", None) if not missing else ("FAILED", f"cells missing: {', '.join(missing)}")
    try:
        out["comparisons"] = judge(b, results, board["primaries"], done[-1]["seeds"] if done else None)
    except ConfigError:  # e.g. a --metric the cells lack: the last good leaderboard stays as it was
        parent.finish(*status)
        raise
    parent.log_metrics(0, {"device_hours": out["cost"]["device_hours"], "cells": out["cost"]["cells"]})
    parent.log_text(jsonout.dumps(out, indent=1), "benchmark/leaderboard.json")
    parent.log_text(_csv(board["rows"]), "benchmark/leaderboard.csv")
    parent.log_text(json.dumps({s: {str(k): v for k, v in r.items()} for s, r in results.items()}, default=float),
                    "benchmark/cells.json")
    if done:
        parent.log_text(jsonout.dumps(done, indent=1), "benchmark/rounds.json")
    parent.finish(*status)
    return out


def _with_hours(curve: list[dict], hours_per_cell: float | None) -> list[dict]:
    """A budget curve's points also against device-hours: k trials cost k cells (Lucic et al. 2018
    compare at equal computational budget)."""
    return [{**p, "device_hours": p["k"] * hours_per_cell if hours_per_cell is not None else None} for p in curve]


def _csv(rows: list[dict]) -> str:
    import pandas as pd  # only the CSV artifact needs it

    cols = ["spec", "dataset", "metric", "at", "n", "mean", "std", "ci_low", "ci_high", "sample_noise", "dominant",
            "values"]
    table = pd.DataFrame(rows).reindex(columns=cols)
    table["values"] = table["values"].map(lambda v: " ".join(f"{x:.6g}" for x in v))
    return table.to_csv(index=False, float_format="%.6g")


def train_queued(b: BenchmarkSpec) -> None:
    if b.workers == 1:
        work(b, 0)
    else:
        run_workers("_bench-worker", b.to_json(), [], b.workers)


def benchmark(b: BenchmarkSpec) -> dict:
    b.storage = b.storage or default_storage()
    b.name = b.name or "-".join(s.split(":")[0] for s in b.specs)[:80] + (f"-{b.trials}trials" if b.trials else "")
    validate(b)
    size = f"up to {b.seeds} seeds in rounds" if b.until_decided else f"{b.seeds} seeds"
    print(f"benchmark {b.name}: {len(b.specs)} specs x {size}; {power_note(b)}", file=sys.stderr, flush=True)
    study = prepare(b)
    try:
        if b.until_decided:
            rounds(study, b)
        else:
            train_queued(b)
    except (Stopped, signals.Interrupted) as e:
        raise stopped(study.user_attrs["mlflow_parent_run_id"], e.signum, "cells", "suite benchmark",
                      f"--name {b.name}") from None
    return finalize(study, b)
