"""Optuna studies: exact trial counts across workers, pruning, failures, crashes, resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from suite.tune.storage import open_storage
from tests.helpers import ROOT, run_cli, run_main, sets

# Tiny 2D-mixture GAN: a trial is a few seconds of training plus evaluations.
RING = {"g_hidden": "32,32", "d_hidden": "32", "eval_n": 2000, "n_sample": 200}


def tune_args(storage, name, trials, *extra, steps=120, over=RING):
    return ["tune", "gan_ring8", "--trials", str(trials), "--storage", storage, "--study-name", name,
            "--max-steps", str(steps), *sets(over), *extra]


def env_for(home):
    return {"SUITE_HOME": str(home), "SUITE_TUNE_HEARTBEAT": "1", "SUITE_TUNE_GRACE": "4"}


def trials_of(storage, name):
    # open_storage: journal:/// URLs are the suite's spelling
    return optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials(deepcopy=False)


def child_runs(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")


@pytest.mark.slow  # two worker processes, then two reruns
def test_two_workers_run_exactly_n_trials_each_a_child_run_and_a_rerun_resumes(suite_home, tmp_path, mlflow_client):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_cli(*tune_args(storage, "ring", 5, "--workers", "2"), env=env_for(suite_home))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    trials = trials_of(storage, "ring")
    assert len(trials) == 5 and summary["trials"] == 5
    assert sorted(t.user_attrs["slot"] for t in trials) == [0, 1, 2, 3, 4]  # none lost, none twice
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    default = next(t for t in trials if t.user_attrs["slot"] == 0)
    assert default.params == {"lr_g": 2e-4, "lr_d": 2e-4}  # the paper's values come first
    study = optuna.load_study(study_name="ring", storage=storage)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    children = child_runs(mlflow_client, parent_id)
    assert len(children) == 5
    assert {r.data.tags["suite.trial_number"] for r in children} == {str(t.number) for t in trials}
    for r in children:
        t = next(t for t in trials if str(t.number) == r.data.tags["suite.trial_number"])
        assert r.data.tags["suite.trial_state"] == t.state.name.lower()
        assert float(r.data.params["lr_g"]) == pytest.approx(t.params["lr_g"])
        hist = mlflow_client.get_metric_history(r.info.run_id, "objective")
        assert [m.value for m in hist] == pytest.approx(list(t.intermediate_values.values()))
    parent = mlflow_client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["suite.study"] == "ring" and parent.data.tags["suite.sampler"] == "tpe"
    assert parent.data.tags["suite.objective"] == summary["metric"]
    assert float(parent.data.tags["suite.best_value"]) == pytest.approx(study.best_value, rel=1e-5)
    assert parent.data.metrics["default_value"] == pytest.approx(default.value)
    files = {f.path for f in mlflow_client.list_artifacts(parent_id, "study")}
    assert {"study/trials.csv", "study/summary.json", "study/optimization_history.png",
            "study/parallel_coordinate.png"} <= files

    # rerunning resumes: the same budget trains nothing more, a larger one only the missing trials
    first = {t.number: (t.params, t.value) for t in trials}
    again = run_cli(*tune_args(storage, "ring", 5, "--workers", "2"), env=env_for(suite_home))
    assert again.returncode == 0 and {t.number: (t.params, t.value) for t in trials_of(storage, "ring")} == first
    more = run_cli(*tune_args(storage, "ring", 6), env=env_for(suite_home))
    assert more.returncode == 0, more.stderr
    after = trials_of(storage, "ring")
    assert len(after) == 6 and {t.number: (t.params, t.value) for t in after if t.number in first} == first
    assert len(child_runs(mlflow_client, parent_id)) == 6  # under the same parent run


@pytest.mark.slow  # eight trials
def test_planted_hopeless_region_gets_pruned(suite_home, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # lr_g below ~1e-7 cannot move the generator in 120 steps: those trials stay far off. The
    # objective is FID here: at 120 steps every trial may still cover no mode (mode_quality 0, a tie)
    proc = run_cli(*tune_args(storage, "plant", 8, "--params", "lr_g:1e-10:1e-3", "--sampler", "random",
                              "--seed", "3", "--metric", "fid2k_points_ring8_train"), env=env_for(suite_home))
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(storage, "plant")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    hopeless = [t for t in trials if t.params["lr_g"] < 1e-7 and t.user_attrs["slot"] > 1]
    assert hopeless, "the seed should land trials in the hopeless region"
    assert pruned and all(t in pruned for t in hopeless)
    assert all("pruned by the median pruner" in t.user_attrs["reason"] for t in pruned)


def test_failed_trials_are_recorded_with_the_reason_and_the_study_goes_on(suite_home, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_main(*tune_args(storage, "fail", 3, "--params", "lr_d:1e30:1e31", "--pruner", "none", steps=20),
                   env=env_for(suite_home))
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(storage, "fail")
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)
    assert all("non-finite loss" in t.user_attrs["reason"] for t in trials)
    assert json.loads(proc.stdout)["failed"] == 3


@pytest.mark.slow  # kills a worker process, waits out its heartbeat
def test_a_worker_killed_mid_trial_is_retried_and_the_study_stays_consistent(suite_home, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_for(suite_home)}
    args = tune_args(storage, "kill", 3, "--pruner", "none", steps=400)
    victim = subprocess.Popen([sys.executable, "-m", "suite", *args], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            running = [t for t in trials_of(storage, "kill") if t.state == TrialState.RUNNING]
        except Exception:  # noqa: BLE001 - study not created yet
            running = []
        if running:
            break
        time.sleep(0.2)
    assert running, victim.communicate()[1][-2000:]
    time.sleep(2)  # mid-trial, a heartbeat or two recorded
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = running[0].number
    proc = run_cli(*args, env=env_for(suite_home))
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(storage, "kill")
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL  # marked stale, not left RUNNING
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == by_number[killed].params
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    summary = json.loads(proc.stdout)
    assert summary["trials"] == 3 and summary["complete"] == 3 and summary["failed"] == 0  # each trial once
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{suite_home / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gan_ring8").experiment_id])
    killed_run = by_number[killed].user_attrs["mlflow_run_id"]
    assert {r.info.run_id: r.info.status for r in runs}[killed_run] == "KILLED"  # not RUNNING forever
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_two_hosts_share_a_postgres_study_and_an_mlflow_server(tmp_path, monkeypatch):
    """The lab set-up: Optuna RDB storage on PostgreSQL, an MLflow tracking server, and two
    `suite tune` coordinators (standing in for two GPU hosts) with two workers each."""
    from mlflow.tracking import MlflowClient

    from tests.servers import mlflow_server, postgres

    with postgres(tmp_path) as storage, mlflow_server(tmp_path) as tracking:
        env = {"MLFLOW_TRACKING_URI": tracking, "SUITE_HOME": str(tmp_path / "host"), "SUITE_TUNE_HEARTBEAT": "1",
               "SUITE_TUNE_GRACE": "10"}
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        args = tune_args(storage, "lab", 8, "--workers", "2", steps=100)
        host_a = subprocess.Popen([sys.executable, "-m", "suite", *args], env=full, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        host_b = subprocess.Popen([sys.executable, "-m", "suite", *args], env=full, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in (host_a, host_b):
            out, err = p.communicate(timeout=1500)
            assert p.returncode == 0, err[-3000:]
        trials = trials_of(storage, "lab")
        assert len(trials) == 8 and sorted(t.user_attrs["slot"] for t in trials) == list(range(8))
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        drawn = [(t.params["lr_g"], t.params["lr_d"]) for t in trials if not t.user_attrs.get("paper_default")]
        assert len(drawn) == 7 and len(set(drawn)) == 7  # no coordinator repeats the other's draws
        study = optuna.load_study(study_name="lab", storage=storage)
        client = MlflowClient(tracking)
        parent_id = study.user_attrs["mlflow_parent_run_id"]
        assert len(child_runs(client, parent_id)) == 8
        parents = client.search_runs([client.get_run(parent_id).info.experiment_id], "tags.`suite.kind` = 'study'")
        assert [r.info.run_id for r in parents] == [parent_id]  # one parent, though two hosts joined
        assert "study/trials.csv" in {f.path for f in client.list_artifacts(parent_id, "study")}


CLAIMER = """
import json, sys, optuna
from suite.tune.storage import claim, open_storage
study = optuna.load_study(study_name="race", storage=open_storage(sys.argv[1]))
sys.stdin.readline()  # start together
got = []
while (t := claim(study)) is not None:
    got.append(t._trial_id)
print(json.dumps(got))
"""


def test_claiming_is_atomic_under_a_process_race(tmp_path):
    # SQLite ignores SELECT ... FOR UPDATE; a claim that relies on it lets two processes take
    # the same queued trial. Six processes race over 60 queued trials: each is taken exactly once.
    storage = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=storage)
    for i in range(60):
        study.enqueue_trial({}, user_attrs={"slot": i})
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, storage], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(3)  # all imported and waiting
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    claimed = [i for p in procs for i in json.loads(p.communicate(timeout=120)[0])]
    assert sorted(claimed) == sorted(t._trial_id for t in study.get_trials(deepcopy=False))
    assert all(t.state == TrialState.RUNNING and t.datetime_start is not None for t in study.get_trials())


@pytest.mark.slow  # kills a coordinator on a journal storage, then reruns it
def test_a_journal_study_recovers_a_killed_coordinators_trial(suite_home, tmp_path):
    """Journal storages have no heartbeat of their own: a killed worker's trial used to stay
    RUNNING and the rerun waited for it forever."""
    storage = f"journal:///{tmp_path / 'study.log'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_for(suite_home)}
    args = tune_args(storage, "journal", 2, "--pruner", "none", steps=600)
    victim = subprocess.Popen([sys.executable, "-m", "suite", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    running = []
    while not running and time.time() - t0 < 120:
        try:
            running = [t for t in trials_of(storage, "journal") if t.state == TrialState.RUNNING]
        except Exception:  # noqa: BLE001 - study not created yet
            pass
        time.sleep(0.2)
    assert running, victim.communicate()[1][-2000:]
    time.sleep(2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    proc = run_cli(*args, env=env_for(suite_home), timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"] == 2 and summary["complete"] == 2 and summary["failed"] == 0
    trials = trials_of(storage, "journal")
    assert {t.number: t.state for t in trials}[running[0].number] == TrialState.FAIL
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow  # a study left half set up, then a rerun
def test_a_study_left_half_set_up_by_a_dead_coordinator_is_repaired_by_the_next_run(suite_home, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # what a coordinator killed during its setup leaves: the study, created with its direction, and no more
    study = optuna.create_study(study_name="half", storage=storage, direction="maximize")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import platform

    study.set_user_attr("setup_by", {"host": platform.node(), "pid": int(dead.stdout), "at": time.time()})
    proc = run_cli(*tune_args(storage, "half", 2, "--pruner", "none", steps=40), env=env_for(suite_home))
    assert proc.returncode == 0, proc.stderr
    assert "left half set up" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"] == 2 and summary["complete"] == 2
    assert optuna.load_study(study_name="half", storage=storage).user_attrs.get("mlflow_parent_run_id")


@pytest.mark.slow  # trains until the first evaluation
def test_an_objective_no_evaluation_computes_ends_the_study_in_one_line(suite_home, tmp_path):
    """A well-formed metric name of another protocol (here KID, measured only at the end): the
    first evaluation says so, the study stops with exit 2 and its parent run FAILED."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_main(*tune_args(storage, "nokid", 3, "--metric", "kid2k_points_ring8_train", steps=40),
                    env=env_for(suite_home))
    assert proc.returncode == 2
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "is not computed at the evaluations of gan_ring8" in lines[0] and "available:" in lines[0]
    trials = trials_of(storage, "nokid")
    assert sum(t.state == TrialState.FAIL for t in trials) == 1  # the first trial only; none trained after it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{suite_home / 'mlflow.db'}")
    parent = [r for r in client.search_runs([client.get_experiment_by_name("gan_ring8").experiment_id])
              if r.data.tags.get("suite.kind") == "study"][0]
    assert parent.info.status == "FAILED"


@pytest.mark.parametrize("threads, cores, workers, expected", [
    (8, 8, 2, 4),   # each of 2 workers gets half the cores
    (8, 8, 16, 1),  # never below one thread
    (2, 8, 2, 2),   # a lower OMP_NUM_THREADS (torch's count) is kept, not raised to cores / K
    (8, 8, 1, 8),   # one worker: left as it is
])
def test_workers_on_one_machine_share_its_cores(monkeypatch, threads, cores, expected, workers):
    import torch

    from suite import run_setup

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    try:
        torch.set_num_threads(threads)
        run_setup.share_cores(workers)
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
