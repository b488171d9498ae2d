"""`suite benchmark`: cells through the study queue, a leaderboard with intervals, paired verdicts
that say when the seeds cannot decide, resume, several workers, and its report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from evaluation import leaderboard, seeds, sequential
from reports import benchmark as bench_report
from suite import benchmark
from tests.helpers import ROOT, assert_one_line_error, run_main
from tests.servers import render

RING = ["gan_ring8", "gan_ring8:lr_g=1e-3,lr_d=1e-3"]
SMALL = ["--max-steps", "20", "--set", "eval_n=500", "--set", "eval_every=10"]  # seconds per cell: a check of the plumbing


def child_runs(client, parent_id):
    exp = client.get_experiment_by_name(benchmark.EXPERIMENT)
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


@pytest.mark.parametrize("args,needles", [
    (["nope_recipe"], ["spec 'nope_recipe'", "unknown recipe"]),
    (["gan_ring8:no_such_key=1"], ["spec 'gan_ring8:no_such_key=1'", "no_such_key"]),
    (["gan_ring8:lr_g"], ["key=value"]),
    (["gan_ring8", "--seeds", "1"], ["--seeds 1", "at least 2"]),
    (["gan_ring8", "--metric", "bogus"], ["--metric 'bogus'"]),
    (["gan_ring8", "gan_fashion", "--baseline", "gan_ring8"], ["cannot compare gan_fashion (fashion_mnist)",
                                                              "same dataset"]),
    (["gan_ring8", "--baseline", "dcgan_digits"], ["--baseline 'dcgan_digits' is not one of the specs"]),
    (["gan_ring8", "gan_ring8"], ["named twice"]),
    (["gan_ring8", "--test", "wilcoxon"], ["--test"]),
    (["gan_ring8", "--until-decided"], ["--until-decided needs --max-seeds"]),
    (["gan_ring8", "--until-decided", "--seeds", "5"], ["--seeds fixes the seeds in advance"]),
    (["gan_ring8", "--until-decided", "--max-seeds", "2"], ["--max-seeds 2", "between --min-seeds (3)"]),
    (["gan_ring8", "--until-decided", "--max-seeds", "500"], ["--max-seeds 500", "horizon"]),
    (["gan_ring8", "--until-decided", "--max-seeds", "9", "--min-seeds", "2"], ["--min-seeds 2", "at least 3"]),
    (["gan_ring8", "--until-decided", "--max-seeds", "9", "--batch", "0"], ["--batch 0"]),
    (["gan_ring8", "--until-decided", "--max-seeds", "9", "--test", "permutation"], ["--test permutation"]),
    (["gan_ring8", "--until-decided", "--max-seeds", "9", "--trials", "4"], ["--trials"]),
    (["gan_ring8", "--max-seeds", "9"], ["--max-seeds belongs to --until-decided"]),
    (["gan_ring8", "--margin", "-1"], ["--margin -1", "positive"]),
    (["gan_ring8", "--margin", "inf"], ["--margin inf", "positive"]),
    (["gan_ring8", "--margin", "five"], ["--margin expects M or METRIC=M"]),
    (["gan_ring8", "--margin", "bogus=2"], ["'bogus' is not an evaluation metric"]),
])
def test_bad_input_is_one_line_and_trains_nothing(suite_home, args, needles):
    proc = run_main("benchmark", *args)
    assert_one_line_error(proc, *needles)
    assert not (suite_home / "mlruns").exists() and not (suite_home / "optuna.db").exists()


def test_too_few_seeds_for_any_verdict_is_said_before_training():
    four = ["gan_ring8", "gan_ring8:lr_g=1e-3", "gan_ring8:lr_d=1e-3", "gan_ring8:lr_g=1e-3,lr_d=1e-3"]
    note = benchmark.power_note(benchmark.BenchmarkSpec(four, seeds=3, test="permutation"))
    assert "with 3 seeds and 6 pairs" in note and "can declare no difference" in note and "at least 8" in note
    ok = benchmark.power_note(benchmark.BenchmarkSpec(four, seeds=8, test="permutation"))
    assert "with 8 seeds a difference is detected with 80 % power" in ok
    t = benchmark.power_note(benchmark.BenchmarkSpec(four, seeds=2))
    assert "use at least 3" in t
    assert "no two specs share a dataset" in benchmark.power_note(benchmark.BenchmarkSpec(["gan_ring8", "gan_fashion"]))


@pytest.mark.slow  # ~40 s of training: the plumbing of every section below, end to end
def test_benchmark_leaderboard_comparisons_and_resume(suite_home, mlflow_client):
    args = ["benchmark", *RING, "--seeds", "2", *SMALL, "--name", "t", "--json"]
    first = run_main(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "with 2 seeds" in first.stderr.splitlines()[0] and "use at least 3" in first.stderr.splitlines()[0]
    out = json.loads(first.stdout)  # valid JSON: no NaN, no Infinity
    assert out["benchmark"] == "t" and out["interval"] == seeds.INTERVAL and out["test"] == "paired t-test"
    primary = out["primaries"]["gan_ring8"]
    assert primary.startswith("mode_quality500_points_ring8")
    rows = {(r["spec"], r["metric"], r["at"]): r for r in out["rows"]}
    for spec in RING:
        for at in ("best", "last"):
            r = rows[(spec, primary, at)]
            assert set(r) >= {"spec", "dataset", "metric", "at", "n", "mean", "std", "ci_low", "ci_high", "values"}
            assert r["n"] == 2 and len(r["values"]) == 2 and r["dataset"] == "ring8"
            assert r["mean"] == pytest.approx(sum(r["values"]) / 2)
            if r["std"] > 0:
                assert r["ci_low"] < r["mean"] < r["ci_high"]
    fid = next(r for (s, m, a), r in rows.items() if m.startswith("fid500") and a == "best")
    assert "sample_noise" in fid and fid["dominant"] in ("seeds", "samples")  # the runs' bootstrap intervals
    (comp,) = out["comparisons"]
    assert comp["a"] == RING[0] and comp["b"] == RING[1] and comp["metric"] == primary
    assert comp["verdict"] == "too few seeds" and "needs 3" in comp["note"]  # not a verdict that could not go either way
    assert set(comp) >= {"a", "b", "metric", "n", "diff", "ci_low", "ci_high", "p_value", "verdict", "min_detectable"}
    parent = out["parent_run_id"]
    runs = child_runs(mlflow_client, parent)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted((r.data.tags["suite.spec"], r.data.tags["suite.seed"]) for r in runs) == sorted(
        (s, str(i)) for s in RING for i in range(2))
    artifacts = {f.path for f in mlflow_client.list_artifacts(parent, "benchmark")}
    assert {"benchmark/leaderboard.json", "benchmark/leaderboard.csv", "benchmark/cells.json"} <= artifacts

    again = run_main(*args)  # the same command: every cell reused, nothing trained
    assert again.returncode == 0, again.stderr[-2000:]
    assert "cell " not in again.stderr
    assert len(child_runs(mlflow_client, parent)) == 4
    assert json.loads(again.stdout)["rows"] == out["rows"]

    more = run_main("benchmark", *RING, "--seeds", "3", *SMALL, "--name", "t", "--metric", "fid")  # one more seed
    assert more.returncode == 0, more.stderr[-2000:]
    assert more.stderr.count("cell ") == 2  # only seed 2 of each spec trained
    assert "vs gan_ring8:lr_g=1e-3,lr_d=1e-3 on mode_quality500" in more.stdout
    assert "on fid500_points_ring8_train" in more.stdout
    assert "too few seeds" not in more.stdout and ("is better" in more.stdout or "no detectable" in more.stdout)

    # known only once cells exist: after the power note, one error line, the cells kept
    missing = run_main("benchmark", *RING, "--seeds", "3", *SMALL, "--name", "t", "--metric", "label_acc")
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and len(errors) == 1
    assert "metric 'label_acc' is missing from cells" in errors[0] and missing.stderr.splitlines()[-1] == errors[0]
    assert len(child_runs(mlflow_client, parent)) == 6

    report = run_main("report", "--benchmark", "t", "-o", str(suite_home / "bench.html"))
    assert report.returncode == 0, report.stderr[-2000:]
    page = (suite_home / "bench.html").read_text()
    for needle in ("Benchmark t", "What these seeds can decide", "Leaderboard: ring8", "forest plot",
                   "Paired comparisons", "median of 3 seeds", seeds.INTERVAL, "over training"):
        assert needle in page, needle
    assert page.count("<img") >= 4  # forest plot, bands, one median-seed grid per spec
    dom, _ = render(suite_home / "bench.html", suite_home)  # headless Chromium: every figure decodes
    assert int(re.search(r'data-images-loaded="(\d+)"', dom).group(1)) == page.count("<img")
    assert "too few seeds" not in dom and "Paired comparisons" in dom
    unknown = run_main("report", "--benchmark", "nope", "-o", str(suite_home / "x.html"))
    assert_one_line_error(unknown, "no benchmark named 'nope'")


@pytest.mark.slow  # ~60 s of training: rounds, their record, costs, a larger --max-seeds continuing
def test_sequential_benchmark_rounds_costs_and_a_larger_budget_continuing(suite_home, mlflow_client):
    seq = ["--until-decided", "--min-seeds", "3", "--batch", "1"]
    first = run_main("benchmark", *RING, *seq, "--max-seeds", "4", *SMALL, "--name", "sq", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    plan = first.stderr.splitlines()[0]
    assert "sequential: rounds of 1 seed from 3 to 4 (looks at 3, 4)" in plan and "family-wise error 5%" in plan
    assert "round 1 (3 seeds)" in first.stderr
    out = json.loads(first.stdout)
    old = {"benchmark", "test", "interval", "power", "rows", "comparisons", "missing", "parent_run_id", "primaries"}
    assert set(out) >= old | {"design", "rounds", "cost"}  # the old schema kept, the new fields added
    assert out["design"] == {"kind": "sequential", "looks": [3, 4], "alpha": 0.05, "margins": {}}
    assert out["test"] == sequential.METHOD
    (comp,) = out["comparisons"]
    assert set(comp) >= {"a", "b", "metric", "n", "diff", "ci_low", "ci_high", "p_value", "p_holm", "verdict",
                         "min_detectable", "decided_at", "design", "p_sequential"}
    assert [r["seeds"] for r in out["rounds"]] == ([3] if comp["decided_at"] == 3 else [3, 4])
    runs = child_runs(mlflow_client, out["parent_run_id"])
    assert out["cost"]["cells"] == len(runs) == 2 * out["rounds"][-1]["seeds"]
    for r in runs:
        assert float(r.data.tags["suite.cell.wall_s"]) > 0 and r.data.tags["suite.cell.device"] == "cpu"
        assert r.data.tags["suite.cell.steps"] == "20"
    assert out["cost"]["device_hours"] == pytest.approx(
        sum(float(r.data.tags["suite.cell.wall_s"]) for r in runs) / 3600, rel=1e-3)
    assert "cost: " in bench_report.as_text(out) and "round 1: 3 seeds for 2 specs" in bench_report.as_text(out)

    more = run_main("benchmark", *RING, *seq, "--max-seeds", "5", *SMALL, "--name", "sq", "--json")  # a larger budget
    assert more.returncode == 0, more.stderr[-3000:]
    still_open = comp["decided_at"] is None
    assert more.stderr.count("cell ") == (2 if still_open else 0)  # only the new look's seeds, only if undecided
    again = run_main("benchmark", *RING, *seq, "--max-seeds", "5", *SMALL, "--name", "sq")
    assert again.returncode == 0 and "cell " not in again.stderr

    other = run_main("benchmark", *RING, "--until-decided", "--batch", "2", "--max-seeds", "5", *SMALL, "--name", "sq")
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]  # after the plan line
    assert other.returncode == 2 and len(errors) == 1 and "exists with batch = 1, not 2" in errors[0], other.stderr
    report = run_main("report", "--benchmark", "sq", "-o", str(suite_home / "sq.html"))
    assert report.returncode == 0, report.stderr[-2000:]
    page = (suite_home / "sq.html").read_text()
    for needle in ("Rounds", "Cost", "device-hours", "repeated 95 % CI", sequential.METHOD):
        assert needle in page, needle


def trials_of(storage, name):
    return optuna.load_study(study_name=f"benchmark-{name}", storage=storage).get_trials(deepcopy=False)


@pytest.mark.slow
def test_benchmark_killed_half_way_resumes_training_only_the_missing_cells(suite_home, mlflow_client):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(suite_home), "SUITE_TUNE_HEARTBEAT": "1",
           "SUITE_TUNE_GRACE": "3"}
    args = [sys.executable, "-m", "suite", "benchmark", *RING, "--seeds", "2", *SMALL, "--name", "k"]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the first cell done, the second started: kill the coordinator
        if line.startswith("cell "):
            time.sleep(2)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    storage = f"sqlite:///{suite_home / 'optuna.db'}"
    cell = lambda t: (t.user_attrs["spec"], t.user_attrs["seed"])  # noqa: E731
    done_before = {cell(t): t.user_attrs["mlflow_run_id"] for t in trials_of(storage, "k")
                   if t.state == TrialState.COMPLETE}
    assert len(done_before) == 1
    time.sleep(4)  # past the grace period: the killed cell is stale
    again = subprocess.run(args + ["--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("cell ") == 3  # the three cells not finished, not the one that was
    trials = trials_of(storage, "k")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(cell(t) for t in complete) == sorted((s, i) for s in RING for i in range(2))
    assert {cell(t): t.user_attrs["mlflow_run_id"] for t in complete if cell(t) in done_before} == done_before
    parent = json.loads(again.stdout)["parent_run_id"]
    runs = child_runs(mlflow_client, parent)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 4
    killed = [r for r in runs if r.info.status != "FINISHED"]
    assert all(r.info.status == "KILLED" and "heartbeats" in r.data.tags["suite.failure_reason"] for r in killed)


@pytest.mark.slow
def test_two_workers_train_each_cell_exactly_once(suite_home, mlflow_client):
    from tests.helpers import run_cli

    proc = run_cli("benchmark", *RING, "--seeds", "3", *SMALL, "--name", "w", "--workers", "2", "--json",
                   env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(mlflow_client, json.loads(proc.stdout)["parent_run_id"])
    cells = sorted((r.data.tags["suite.spec"], r.data.tags["suite.seed"]) for r in runs)
    assert cells == sorted((s, str(i)) for s in RING for i in range(3))  # 6 runs, one per cell


@pytest.mark.slow
def test_two_hosts_share_a_postgres_benchmark(tmp_path):
    """K hosts join one benchmark with the same command and a PostgreSQL storage."""
    from mlflow.tracking import MlflowClient

    from tests.servers import mlflow_server, postgres

    with postgres(tmp_path) as storage, mlflow_server(tmp_path) as tracking:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": tracking,
               "SUITE_HOME": str(tmp_path / "host"), "SUITE_TUNE_HEARTBEAT": "1", "SUITE_TUNE_GRACE": "10"}
        args = [sys.executable, "-m", "suite", "benchmark", *RING, "--seeds", "3", *SMALL, "--name", "lab",
                "--storage", storage, "--json"]
        hosts = [subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        time.sleep(3)
        hosts.append(subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        outs = []
        for p in hosts:
            out, err = p.communicate(timeout=900)
            assert p.returncode == 0, err[-3000:]
            outs.append(json.loads(out))  # stdout is the JSON alone, even with a tracking server
        trials = [t for t in trials_of(storage, "lab") if t.state == TrialState.COMPLETE]
        assert sorted((t.user_attrs["spec"], t.user_attrs["seed"]) for t in trials) == sorted(
            (s, i) for s in RING for i in range(3))
        client = MlflowClient(tracking)
        assert outs[0]["parent_run_id"] == outs[1]["parent_run_id"]
        assert len(child_runs(client, outs[0]["parent_run_id"])) == 6


BOOM = """
from dataclasses import dataclass

from recipes import register_family, register_recipe
from recipes import gan


@dataclass
class Config(gan.Config):
    family: str = "boom"


class Boom(gan.GANTrainer):
    def train_step(self, next_batch):
        if self.cfg.seed == 1:
            raise RuntimeError("boom at seed 1")
        return super().train_step(next_batch)


register_family("boom", Config, Boom)
register_recipe("boom_ring8", "boom", "ring8", "a family that breaks on seed 1", {"output_activation": "none"}, True)
"""


def test_a_benchmark_with_failed_cells_prints_its_board_and_exits_non_zero(tmp_path, suite_home, mlflow_client,
                                                                          registries):
    plugin = tmp_path / "boom.py"
    plugin.write_text(BOOM)
    proc = run_main("benchmark", "boom_ring8", "--seeds", "2", "--max-steps", "2", "--set", "eval_n=200",
                    "--plugin", str(plugin), "--json")
    assert proc.returncode == 1, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "1 cell(s) have no result (boom_ring8 seed 1)" in errors[0], proc.stderr
    assert "RuntimeError: boom at seed 1" in errors[0] and "the same command trains them again" in errors[0]
    out = json.loads(proc.stdout)  # the board of the cells that did train is still printed
    assert out["missing"] == ["boom_ring8 seed 1"] and [r["n"] for r in out["rows"]][0] == 1
    assert out["failures"] == {"boom_ring8 seed 1": "RuntimeError: boom at seed 1"}
    assert mlflow_client.get_run(out["parent_run_id"]).info.status == "FAILED"


def test_random_search_draws_the_same_learning_rates_for_every_spec_at_one_trial():
    b = benchmark.BenchmarkSpec(RING, trials=4)
    cells = benchmark.cells(b)
    by_trial = {}
    for c in cells:
        by_trial.setdefault(c["seed"], []).append(c["search"])
    assert all(len({json.dumps(x) for x in draws}) == 1 for draws in by_trial.values())  # paired by trial
    assert len({json.dumps(d[0]) for d in by_trial.values()}) == 4  # different trials, different rates
    from suite.tune.space import LR_RANGE

    assert all(LR_RANGE[0] <= v <= LR_RANGE[1] for d in by_trial.values() for v in d[0].values())
    assert "search" not in benchmark.cells(benchmark.BenchmarkSpec(RING, seeds=2))[0]


@pytest.mark.slow  # creates an MLflow store and a study (~4 s)
def test_a_benchmark_resumed_with_another_protocol_is_refused(suite_home):
    first = benchmark.BenchmarkSpec(RING, seeds=2, max_steps=20, name="p",
                                    storage=f"sqlite:///{suite_home / 'q.db'}")
    suite_home.mkdir(parents=True, exist_ok=True)
    benchmark.validate(first)
    benchmark.prepare(first)  # queues the cells and makes the parent run; nothing trains
    other = run_main("benchmark", *RING, "--seeds", "2", "--max-steps", "30", "--name", "p",
                     "--storage", first.storage)
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert other.returncode != 0 and len(errors) == 1 and "Traceback" not in other.stderr
    assert "exists with max_steps = 20, not 30" in errors[0]


@pytest.mark.slow
def test_random_search_benchmark_has_budget_curves(suite_home, mlflow_client):
    specs = ["gan_ring8", "gan_ring8:batch_size=64"]  # the searched rates are not fixed by either spec
    proc = run_main("benchmark", *specs, "--trials", "3", *SMALL, "--name", "rs", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert sorted(out["budget"]) == sorted(specs)
    for curve in out["budget"].values():
        assert [c["k"] for c in curve] == [1, 2, 3]
    runs = child_runs(mlflow_client, out["parent_run_id"])
    rates = {(r.data.tags["suite.spec"], r.data.tags["suite.seed"]): r.data.params["lr_g"] for r in runs}
    assert rates[(specs[0], "1")] == rates[(specs[1], "1")] != rates[(specs[0], "2")]  # paired by trial
    report = run_main("report", "--benchmark", "rs", "-o", str(suite_home / "rs.html"))
    assert report.returncode == 0 and "Budget curves" in (suite_home / "rs.html").read_text()


def test_leaderboard_is_sorted_by_the_primary_metric_in_its_direction():
    specs = ["gan_ring8", "gan_ring8:lr_g=1e-3", "gan_ring8:lr_d=1e-3"]
    b = benchmark.BenchmarkSpec(specs, seeds=2)
    metric = "mode_quality500_points_ring8"  # higher is better

    def cell(v):
        return {"primary": metric, "best": {metric: v}, "last": {metric: v}, "noise": {}, "curves": {}}

    results = {specs[0]: {0: cell(0.2), 1: cell(0.3)}, specs[1]: {0: cell(0.8), 1: cell(0.9)},
               specs[2]: {0: cell(0.5), 1: cell(0.4)}}
    rows = leaderboard.leaderboard(b.specs, benchmark.datasets(b), results)["rows"]
    assert [r["spec"] for r in rows if r["at"] == "best"] == [specs[1], specs[2], specs[0]]
