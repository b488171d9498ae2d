"""The harness logs real MLflow runs, is reproducible, resumes exactly and stops on NaN."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from recipes import dcgan, registry
from suite import harness, run_setup
from suite.core import checkpoint, paths
from suite.core.errors import TrainingDiverged
from tests.helpers import ROOT, TINY_DC, run_cli, run_main, sets


def train(recipe, steps, **over):
    req = run_setup.RunRequest(recipe=recipe, overrides=over, max_steps=steps, progress=False, evaluate=False)
    return harness.train(req)


def artifacts(client, run_id, path=""):
    out = []
    for f in client.list_artifacts(run_id, path):
        out += artifacts(client, run_id, f.path) if f.is_dir else [f.path]
    return out


def generator_weights(run_id):
    return checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "generator.pt")["generator"]


def test_a_run_logs_params_tags_metrics_images_and_checkpoints(suite_home, mlflow_client):
    run_id = train("dcgan_digits", 30, sample_every=10, checkpoint_every=15, **TINY_DC)
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert mlflow_client.get_experiment(run.info.experiment_id).name == "dcgan_digits"
    cfg = registry.resolve("dcgan_digits", {**TINY_DC, "max_steps": 30, "sample_every": 10, "checkpoint_every": 15})
    for k, v in vars(cfg).items():
        assert run.data.params[k] == (",".join(map(str, v)) if isinstance(v, tuple) else str(v)), k
    tags = run.data.tags
    assert tags["suite.recipe"] == "dcgan_digits" and tags["suite.family"] == "dcgan"
    assert tags["suite.dataset"] == "digits" and tags["suite.seed"] == "0" and tags["suite.device"] == "cpu"
    assert len(tags["suite.git_commit"]) in (7, 40) or tags["suite.git_commit"] == "unknown"
    assert tags["suite.torch_version"] == torch.__version__
    for key in ("loss/d", "loss/g", "d_real", "d_fake", "d_fake_gstep"):
        steps = [m.step for m in mlflow_client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, 31)), key
    lr = mlflow_client.get_metric_history(run_id, "lr/g")  # at every flush and every change
    assert lr and max(m.step for m in lr) == 30 and all(m.value == 2e-4 for m in lr)
    assert mlflow_client.get_metric_history(run_id, "perf/images_per_s")[0].value > 0
    files = set(artifacts(mlflow_client, run_id))
    assert {"samples/step_000000.png", "samples/step_000010.png", "samples/step_000030.png", "config.json",
            "checkpoints/last.pt", "checkpoints/generator.pt"} <= files
    ck = checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "last.pt")
    assert ck["trainer"]["step"] == 30 and ck["recipe"] == "dcgan_digits"


def test_wgan_and_cyclegan_runs_log_their_family_terms(suite_home, mlflow_client):
    w = train("wgan_digits", 3, critic_burst=3, **TINY_DC)
    for key in ("wasserstein_estimate", "critic_steps", "loss/d", "loss/g"):
        assert len(mlflow_client.get_metric_history(w, key)) == 3, key
    assert mlflow_client.get_metric_history(w, "critic_steps")[0].value == 3
    c = train("cyclegan_fashion", 3, ngf=4, ndf=4, n_blocks=1, train_subset=20, n_sample=2)
    for key in ("loss/cycle_a", "loss/cycle_b", "loss/idt_a", "loss/idt_b", "loss/g_adv_a", "loss/d_a", "loss/d_b"):
        assert len(mlflow_client.get_metric_history(c, key)) == 3, key
    assert "samples/step_000003.png" in artifacts(mlflow_client, c, "samples")


def test_seeded_cpu_runs_are_bit_for_bit_reproducible(suite_home):
    a = generator_weights(train("dcgan_digits", 12, **TINY_DC))
    b = generator_weights(train("dcgan_digits", 12, **TINY_DC))
    c = generator_weights(train("dcgan_digits", 12, seed=1, **TINY_DC))
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    assert not all(torch.equal(a["G"][k], c["G"][k]) for k in a["G"] if a["G"][k].is_floating_point())


class Diverging(dcgan.DCGANTrainer):
    """A DCGAN whose discriminator overflows at step 8 (a stand-in for a real blow-up)."""

    def train_step(self, next_batch):
        if self.step == 7:
            with torch.no_grad():
                next(self.D.parameters()).fill_(float("nan"))
        return super().train_step(next_batch)


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(suite_home, mlflow_client, monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "dcgan", registry.Family("dcgan", dcgan.Config, Diverging))
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 8"):
        train("dcgan_digits", 20, checkpoint_every=5, **TINY_DC)
    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("dcgan_digits").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert "non-finite loss at step 8" in run.data.tags["suite.failure_reason"]
    last = checkpoint.load(paths.run_dir(run.info.run_id) / "checkpoints" / "last.pt")
    assert last["trainer"]["step"] == 5
    assert all(torch.isfinite(v).all() for m in last["trainer"]["modules"].values() for v in m.values()
               if v.is_floating_point())
    steps = [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "loss/g")]
    assert sorted(steps) == list(range(1, 9))  # the NaN step itself is logged, nothing after it


def _wait_for_step(client, run_id, at_least, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the run ended before it could be killed"
        try:
            hist = client.get_metric_history(run_id, "loss/g")
        except Exception:  # noqa: BLE001 - run row not visible yet
            hist = []
        if hist and max(m.step for m in hist) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("run did not reach the step in time")


@pytest.mark.slow  # kills a training process
def test_sigkill_then_resume_continues_the_same_run_exactly(suite_home, mlflow_client):
    over = {"checkpoint_every": 40, "sample_every": 1000, "ngf": 16, "ndf": 16}
    args = ["run", "dcgan_digits", "--max-steps", "160", "--no-eval", *sets(over)]  # resume of training: no evaluation
    env = {"SUITE_HOME": str(suite_home)}
    ref = run_cli(*args, env=env)
    assert ref.returncode == 0, ref.stderr
    ref_id = ref.stdout.split()[-1]

    import os

    proc = subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exp = mlflow_client.get_experiment_by_name("dcgan_digits").experiment_id
    run_id = None
    t0 = time.time()
    while run_id is None and time.time() - t0 < 60:
        runs = [r for r in mlflow_client.search_runs([exp]) if r.info.run_id != ref_id]
        run_id = runs[0].info.run_id if runs else None
        time.sleep(0.05)
    _wait_for_step(mlflow_client, run_id, 90, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert mlflow_client.get_run(run_id).info.status == "RUNNING"  # killed: nobody could mark it

    resumed = run_cli("run", "--resume", run_id, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split()[-1] == run_id
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    for key in ("loss/g", "loss/d", "d_real"):
        hist = mlflow_client.get_metric_history(run_id, key)
        assert sorted(m.step for m in hist) == list(range(1, 161)), key  # every step exactly once
        ref_hist = {m.step: m.value for m in mlflow_client.get_metric_history(ref_id, key)}
        assert all(ref_hist[m.step] == m.value for m in hist), key
    a, b = generator_weights(ref_id), generator_weights(run_id)
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])


def test_progress_prints_plain_lines_when_not_a_tty(suite_home):
    proc = run_main("run", "dcgan_digits", "--max-steps", "5", "--no-eval", *sets(TINY_DC),
                    env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0
    assert "dcgan_digits: 5 steps in" in proc.stderr and "steps/s" in proc.stderr
    assert "\r" not in proc.stderr  # no bar redraws in logs
