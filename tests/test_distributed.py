"""Several processes, one run (`--nproc N`, torchrun): two gloo processes on the CPU train the
model one process trains (the same seed, to reduction order), evaluate what one process evaluates,
stop together after the same step, resume bit-exact with the same N, and a rank that dies fails
the run without leaving anything running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from suite import harness, run_setup, stored
from suite.core import checkpoint, paths, tracking
from tests.helpers import ROOT, TINY_DC, assert_one_line_error, run_cli, run_main, sets
from tests.test_signals import MARK, last_step, marked, newest_run, wait_gone

NO_EVAL = [*sets(TINY_DC), "--no-eval", "--quiet"]
# the paper's bursts of 100 critic iterations, shortened so that 20 steps stay seconds: still a
# burst (10) for the first 5 steps, then n_critic=5, clipping at every critic step
WGAN_BURST = {"critic_burst": 10, "burst_first": 5}


def state_of(run_id: str) -> dict:
    return checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "last.pt")


def tensors(x, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every floating tensor of a trainer state (weights, buffers, optimizer moments), by path."""
    if torch.is_tensor(x):
        return {prefix: x.double()} if x.is_floating_point() else {}
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, (list, tuple)) else ()
    return {k: v for key, value in items for k, v in tensors(value, f"{prefix}.{key}").items()}


def worst_relative(a: dict, b: dict) -> float:
    """max over tensors of |a - b| / |a| (Frobenius norms)."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)) for k in a)


def cli(*args: str, **env) -> subprocess.CompletedProcess:
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # four trainings of several processes each start
def test_two_processes_train_the_model_one_process_trains(suite_home):
    one = cli("run", "dcgan_digits", "--max-steps", "20", *NO_EVAL).stdout.strip()
    two = cli("run", "dcgan_digits", "--max-steps", "20", "--nproc", "2", *NO_EVAL).stdout.strip()
    a, b = state_of(one), state_of(two)
    assert b["nproc"] == 2 and a["trainer"]["step"] == b["trainer"]["step"] == 20
    assert a["rng"]["torch"].equal(b["rng"]["torch"])  # every rank drew the global latents and batches
    assert a["stream"] == b["stream"]
    assert worst_relative(tensors(a["trainer"]), tensors(b["trainer"])) <= 1e-5
    # WGAN through torchrun typed by hand: clipping and critic bursts, RMSprop
    over = [*NO_EVAL, *sets(WGAN_BURST)]
    # RMSprop's first steps are sign steps (g / sqrt(0.01 g^2)), so a gradient at rounding level
    # that changes sign with the reduction order moves its weight 10 lr the other way: measured
    # here, one process with 1 and with 2 intra-op threads ends 8.9e-4 apart, and 2 processes
    # within 3.5e-7 of the latter. "One process" is each of its reduction orders.
    ones = [cli("run", "wgan_digits", "--max-steps", "20", *over, OMP_NUM_THREADS=t).stdout.strip() for t in ("1", "2")]
    torchrun = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "-m", "suite", "run", "wgan_digits", "--max-steps", "20", *over],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]
    two = torchrun.stdout.strip()
    assert len(two) == 32  # rank 0 alone prints the run id
    b = state_of(two)
    assert min(worst_relative(tensors(state_of(one)["trainer"]), tensors(b["trainer"])) for one in ones) <= 1e-5
    for w in tensors(b["trainer"]["modules"]["D"]).values():  # the critic clipped on every rank
        assert w.abs().max() <= 0.01 + 1e-12 or w.dim() == 1


@pytest.mark.slow
def test_the_evaluation_of_two_processes_equals_one_process_evaluating_the_checkpoint(suite_home, mlflow_client):
    # 1,200 samples: chunks of 500, 500, 200, so both ranks generate and the gather order matters
    run_id = cli("run", "dcgan_digits", "--max-steps", "10", "--nproc", "2", *sets({**TINY_DC, "eval_n": 1200}),
                 "--quiet").stdout.strip()
    logged = {k: v for k, v in mlflow_client.get_run(run_id).data.metrics.items() if "1200" in k}
    assert "fid1200_lenet_digits_train" in logged and len(logged) > 5
    # one process judging the same checkpoint as the run's evaluation does, with the ranks' one
    # thread each (cores / nproc: BLAS sums in another order with another count)
    saved = stored.training_config(tracking.Tracker.attach(run_id))
    p = run_setup.prepare(saved["recipe"], stored.rebuild_config(saved))
    trainer = run_setup.build_trainer(p)
    trainer.load_state_dict(state_of(run_id)["trainer"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = harness.judge(trainer, run_setup.default_evaluator(p), final=True).metrics
    finally:
        torch.set_num_threads(threads)
    # float32 features (eps 6e-8): one process re-evaluating its own run differs by 1.6e-7 (MiFID)
    for name, value in logged.items():
        assert alone[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


GATHER = """
import torch
from suite import run_setup
from suite.core import ranks
group = ranks.join("cpu")
cfg = run_setup.resolve_config("dcgan_digits", {"image_size": 16, "ngf": 8, "ndf": 8, "batch_size": 32, "n_sample": 16})
trainer = run_setup.build_trainer(run_setup.prepare("dcgan_digits", cfg))
with trainer.spread():
    spread = trainer.generate(1200, torch.Generator().manual_seed(7), batch=200)  # chunks 0..5: 3 per rank
alone = trainer.generate(1200, torch.Generator().manual_seed(7), batch=200)  # this rank, every chunk
if group.lead:
    assert spread.shape == alone.shape == (1200, 1, 16, 16), spread.shape
    assert torch.equal(spread, alone), (spread - alone).abs().max()
    print("gathered", spread.shape[0], "equal", flush=True)
else:
    assert spread is None
ranks.leave()
"""


@pytest.mark.slow
def test_samples_generated_over_two_processes_are_gathered_in_the_one_process_order(suite_home, tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(GATHER)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0 and "gathered 1200 equal" in proc.stdout, proc.stderr[-3000:]


def start(args: list[str], mark: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), MARK: mark}
    return subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def running_run(client, proc: subprocess.Popen, experiment: str, at_step: int, exclude=()) -> str:
    t0 = time.time()
    while time.time() - t0 < 240:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        if (run_id := newest_run(client, experiment, exclude)) and last_step(client, run_id) >= at_step:
            return run_id
        time.sleep(0.1)
    raise AssertionError("the run did not reach its step")


def rank_pids(mark: str, rank: int) -> list[int]:
    out = []
    for pid in marked(mark):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and any(e.startswith(b"TORCHELASTIC_RUN_ID=") for e in env):
            out.append(pid)
    # the rank itself, not what it started (its metric writer inherits the environment)
    return [pid for pid in out if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) not in out]


@pytest.mark.slow
def test_a_stop_to_the_launcher_stops_every_rank_after_the_same_step_and_resumes_bit_exact(suite_home, mlflow_client):
    args = ["run", "dcgan_digits", "--max-steps", "160", "--nproc", "2", *NO_EVAL, *sets({"checkpoint_every": 1000})]
    whole = cli(*args).stdout.strip()
    mark = f"dist-stop-{os.getpid()}"
    proc = start(args, mark)
    run_id = running_run(mlflow_client, proc, "dcgan_digits", 30, exclude=[whole])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0], err[-3000:]
    assert f"python -m suite run --resume {run_id} --nproc 2" in lines[0]
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["suite.resume_command"].endswith("--nproc 2")
    stopped = state_of(run_id)["trainer"]["step"]
    assert 30 <= stopped < 160 and last_step(mlflow_client, run_id) == stopped  # every value up to its checkpoint
    assert wait_gone(mark) == []
    cli("run", "--resume", run_id, "--nproc", "2", "--quiet")
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    a, b = state_of(whole), state_of(run_id)
    assert all(a["trainer"]["modules"][m][k].equal(v) for m in a["trainer"]["modules"]
               for k, v in b["trainer"]["modules"][m].items())
    assert worst_relative(tensors(a["trainer"]), tensors(b["trainer"])) == 0.0
    # another N continues the run (the same global batches and latents) and says it is not bit-exact
    longer = run_cli("run", "--resume", run_id, "--max-steps", "165", "--quiet")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "trained by 2 process(es) and continues with 1" in longer.stderr
    assert mlflow_client.get_run(run_id).data.tags["suite.nproc_changed"] == "2->1 at step 160"


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_run_and_nothing_is_left_running(suite_home, mlflow_client):
    mark, seen = f"dist-kill-{os.getpid()}", []
    for rank in (1, 0):
        proc = start(["run", "dcgan_digits", "--max-steps", "5000", "--nproc", "2", *NO_EVAL,
                      *sets({"checkpoint_every": 20})], mark)
        run_id = running_run(mlflow_client, proc, "dcgan_digits", 25, exclude=seen)
        seen.append(run_id)
        victims = rank_pids(mark, rank)
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 1, err[-3000:]
        lines = [x for x in err.splitlines() if x.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
        run = mlflow_client.get_run(run_id)
        assert run.info.status == "FAILED"
        reason = run.data.tags["suite.failure_reason"]
        assert f"python -m suite run --resume {run_id} --nproc 2" in reason
        assert ("rank 0 of its 2 processes was killed by SIGKILL" in reason) if rank == 0 else ("gone" in reason)
        assert wait_gone(mark) == []  # the other rank, the agent, DataLoader workers, the metric writer
    resumed = run_cli("run", "--resume", run_id, "--nproc", "2", "--max-steps", "60", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_any_process_starts(suite_home):
    proc = run_main("run", "cyclegan_fashion", "--nproc", "2")
    assert_one_line_error(proc, "batch_size=1 does not split over 2 processes")
    assert proc.returncode == 2
    assert not (suite_home / "mlflow.db").exists() or not list((suite_home / "runs").glob("*"))
    assert_one_line_error(run_main("run", "dcgan_digits", "--nproc", "0"), "--nproc")
