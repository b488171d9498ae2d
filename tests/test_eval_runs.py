"""Evaluation inside training runs and on finished runs, logged to MLflow."""

from __future__ import annotations

import json

import pytest

from evaluation.metrics import metric_name
from suite import harness, run_setup
from suite.core import paths
from tests.helpers import TINY_DC, run_main, sets


def test_training_evaluates_every_n_steps_and_keeps_best_and_last(suite_home, mlflow_client):
    req = run_setup.RunRequest(recipe="dcgan_digits", max_steps=12, progress=False,
                             overrides={**TINY_DC, "eval_every": 4, "eval_n": 600})
    run_id = harness.train(req)
    name = metric_name("fid", 600, "lenet", "digits", "train")
    hist = mlflow_client.get_metric_history(run_id, name)
    assert sorted(m.step for m in hist) == [4, 8, 12]
    best = min(hist, key=lambda m: m.value)
    run = mlflow_client.get_run(run_id)
    assert run.data.tags["suite.best_step"] == str(best.step)
    assert run.data.tags["suite.best_metric"] == name
    ck = paths.run_dir(run_id) / "checkpoints"
    assert (ck / "best.pt").is_file() and (ck / "last.pt").is_file()
    files = {f.path for f in mlflow_client.list_artifacts(run_id, "eval")}
    assert {"eval/nn_grid.png", "eval/modes.png", "eval/result_final.json"} <= files
    # mode hopping over time: the class histogram is logged at every evaluation
    assert len(mlflow_client.get_metric_history(run_id, "class_share/3")) == 3

    proc = run_main("evaluate", run_id, "--checkpoint", "best", "--n", "500", "--json",
                   env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["step"] == best.step and out["checkpoint"] == "best"
    fid500 = metric_name("fid", 500, "lenet", "digits", "train")
    assert out["metrics"][fid500] > 0
    assert [m.step for m in mlflow_client.get_metric_history(run_id, fid500)] == [best.step]


@pytest.mark.slow  # a minute: trains CycleGAN, then the Fashion-MNIST classifier judges it
def test_cyclegan_fashion_is_judged_by_known_ground_truth(suite_home, mlflow_client):
    req = run_setup.RunRequest(recipe="cyclegan_fashion", max_steps=4, progress=False,
                             overrides={"ngf": 4, "ndf": 4, "n_blocks": 1, "train_subset": 20, "n_sample": 2,
                                        "eval_n": 200})
    run_id = harness.train(req)
    metrics = mlflow_client.get_run(run_id).data.metrics
    for key in ("label_acc200_lenet_atob", "label_acc200_lenet_btoa", "l1_to_truth200_atob", "cycle_l1200_a",
                "fid200_lenet_fashion_mnist_train_btoa"):
        assert key in metrics, key
    assert 0 <= metrics["label_acc200_lenet_btoa"] <= 1
    assert "eval/translations_atob.png" in {f.path for f in mlflow_client.list_artifacts(run_id, "eval")}


def test_cli_run_evaluates_at_the_end_by_default(suite_home, mlflow_client):
    proc = run_main("run", "gan_ring8", "--max-steps", "30", *sets({"eval_n": 2000, "g_hidden": "32,32",
                                                                   "d_hidden": "32", "n_sample": 200}),
                   env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr
    run = mlflow_client.get_run(proc.stdout.split()[-1])
    primary = metric_name("mode_quality", 2000, "points", "ring8")
    assert run.info.status == "FINISHED" and run.data.tags["suite.best_metric"] == primary
    for key in (primary, metric_name("modes_covered", 2000, "points", "ring8"),
                metric_name("fid", 2000, "points", "ring8", "train")):
        assert key in run.data.metrics, key


def test_evaluating_during_training_does_not_change_training(suite_home):
    import torch

    from suite.core import checkpoint

    def weights(evaluate):
        req = run_setup.RunRequest(recipe="dcgan_digits", max_steps=8, progress=False, evaluate=evaluate,
                                 overrides={**TINY_DC, "eval_every": 3, "eval_n": 300})
        run_id = harness.train(req)
        return checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "generator.pt")["generator"]["G"]

    a, b = weights(True), weights(False)
    assert all(torch.equal(a[k], b[k]) for k in a)
