"""Runs that survive their operators: SIGTERM / SIGINT / SIGUSR1 stop a run after its step with a
checkpoint, KILLED with the reason and the resume command, and the resumed run ends bit-for-bit
where an uninterrupted one does; no process the suite starts outlives it, however it ends.

Children are found by a marker in their environment (inherited by every descendant, kept when an
orphan is re-parented to init), so a leftover is seen wherever it went.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.core import checkpoint, paths
from tests.helpers import ROOT, TINY_DC, run_cli, run_main, sets
from tests.servers import free_port, wait_http

MARK = "SUITE_TEST_MARK"


def marked(mark: str) -> list[int]:
    """Live processes (not zombies) whose environment carries the marker."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if f"{MARK}={mark}".encode() in (d / "environ").read_bytes().split(b"\0"):
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(int(d.name))
        except OSError:
            continue
    return out


def start(args: list[str], home: Path, mark: str, **env) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(home), MARK: mark, **env}
    return subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=ROOT, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_gone(mark: str, timeout: float = 15) -> list[int]:
    t0 = time.time()
    while (left := marked(mark)) and time.time() - t0 < timeout:
        time.sleep(0.2)
    return left


def until(predicate, proc: subprocess.Popen, timeout: float = 180, what: str = ""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (value := predicate()):
            return value
        assert proc.poll() is None, f"ended before {what}: {proc.stderr.read()[-2000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def newest_run(client, experiment: str, exclude=()):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_id not in exclude]
    return runs[0].info.run_id if runs else None


def last_step(client, run_id, key="loss/g") -> int:
    try:
        return max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
    except Exception:  # noqa: BLE001 - the run row may not be visible yet
        return -1


# --------------------------------------------------------------------------- the mechanism (default tier)

SCRIPT = textwrap.dedent("""
    import sys, time
    from suite.core import signals
    tmp = sys.argv[1]
    with signals.owned(), signals.stoppable():  # as under `python -m suite`
        print("ready", flush=True)
        while not signals.requested():
            time.sleep(0.01)
        print("stopping", flush=True)  # a long, polite shutdown that a second signal cuts short
        open(tmp, "w").write("half")
        signals.TEMPORARY.add(tmp)
        time.sleep(60)
    print("finished the shutdown", flush=True)
""")


def test_a_second_signal_cuts_the_shutdown_short_and_removes_half_written_files(tmp_path):
    half = tmp_path / ".last.pt.tmp123"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(half)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)  # the same request twice at once (group + forwarded): not a second one
    assert proc.stdout.readline().strip() == "stopping"
    time.sleep(1.2)
    assert proc.poll() is None  # still shutting down politely
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert time.time() - t0 < 5
    assert proc.returncode == 130 and "finished" not in out
    assert err.strip().startswith("error: second SIGINT") and len(err.strip().splitlines()) == 1
    assert not half.exists()


@pytest.mark.slow  # trains and evaluates; the summary reads the run back
def test_a_run_ends_with_a_summary_a_person_can_act_on(suite_home):
    over = {**TINY_DC, "sample_every": 10, "eval_n": 300}
    proc = run_main("run", "dcgan_digits", "--max-steps", "20", *sets(over), env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert len(run_id) == 32  # stdout: the run id alone
    err = proc.stderr
    assert "FINISHED, 20 steps" in err
    line = next(x for x in err.splitlines() if x.strip().startswith("fid300_lenet_digits_train"))
    assert "lower is better" in line and "best checkpoint (step 20)" in line and "last evaluation (step 20)" in line
    assert ("Mode collapse FLAGGED" in err) or ("No mode collapse" in err)
    assert ("Memorization FLAGGED" in err) or ("No memorization found" in err) or ("Collapsed, not memorized" in err)
    assert f"checkpoints: {paths.run_dir(run_id) / 'checkpoints'}" in err
    samples = next(x for x in err.splitlines() if "samples: " in x).split("samples: ")[1].split()[0]
    assert (Path(samples) / "step_000020.png").is_file()
    assert f"python -m suite report {run_id}" in err and "python -m suite ui" in err
    quiet = run_main("run", "dcgan_digits", "--max-steps", "2", "--no-eval", "--quiet", *sets(TINY_DC),
                    env={"SUITE_HOME": str(suite_home)})
    assert quiet.returncode == 0 and len(quiet.stdout.strip()) == 32
    assert "next:" not in quiet.stderr


@pytest.mark.slow  # a 60-step run
def test_a_dead_metric_writer_is_replaced_and_no_value_is_lost(suite_home, mlflow_client, monkeypatch):
    """The writer process is killed mid-run: the run still ends FINISHED with every step stored."""
    from suite import harness, run_setup
    from suite.core import metric_writer

    killed = []
    real_put = metric_writer.ProcessWriter.put

    def put(self, chunk):
        steps = {m[3] for m in chunk}
        if not killed and max(steps) >= 30:
            self.proc.kill()
            self.proc.wait()
            killed.append(max(steps))
        real_put(self, chunk)

    monkeypatch.setattr(metric_writer.ProcessWriter, "put", put)
    req = run_setup.RunRequest(recipe="dcgan_digits", overrides={**TINY_DC, "checkpoint_every": 50}, max_steps=60,
                             progress=False, evaluate=False)
    run_id = harness.train(req)
    assert killed
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    for key in ("loss/g", "loss/d", "d_real"):
        assert sorted(m.step for m in mlflow_client.get_metric_history(run_id, key)) == list(range(1, 61)), key


def test_a_run_whose_values_cannot_be_stored_is_failed_not_finished(suite_home, mlflow_client, monkeypatch):
    from suite import harness, run_setup
    from suite.core import metric_writer
    from suite.core.errors import TrackingError

    monkeypatch.setattr(metric_writer.ProcessWriter, "_drain_once", lambda self, timeout: "database is locked")
    req = run_setup.RunRequest(recipe="dcgan_digits", overrides=TINY_DC, max_steps=5, progress=False, evaluate=False)
    with pytest.raises(TrackingError, match="database is locked"):
        harness.train(req)
    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("dcgan_digits").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert "database is locked" in run.data.tags["suite.failure_reason"]
    assert "--resume" in run.data.tags["suite.failure_reason"]


def test_the_2d_view_shows_d_and_the_generators_gradient(suite_home, mlflow_client):
    """GAN Lab's view: frames at every sample step and an animation; D's surface is the
    sigmoid of its logit and each arrow is -dL_G/dx (checked by finite differences)."""
    from recipes import registry
    from suite import harness, run_setup

    over = {"g_hidden": "16", "d_hidden": "16", "n_sample": 200, "sample_every": 10}
    run_id = harness.train(run_setup.RunRequest(recipe="gan_ring8", overrides=over, max_steps=30, progress=False,
                                              evaluate=False))
    files = set(tracking_files(mlflow_client, run_id, "landscape"))
    assert {f"landscape/step_{s:06d}.png" for s in (0, 10, 20, 30)} | {"landscape/animation.gif"} <= files
    gif = Path(mlflow_client.download_artifacts(run_id, "landscape/animation.gif", str(suite_home)))
    from PIL import Image

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4

    cfg = registry.resolve("gan_ring8", {**over, "max_steps": 30})
    p = run_setup.prepare("gan_ring8", cfg)
    trainer = run_setup.build_trainer(p)
    state = checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "last.pt")
    trainer.load_state_dict(state["trainer"])
    trainer.D.double()
    x = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.7, 0.9]], dtype=torch.float64)
    surface, pull = trainer.discriminator_view(x, x)
    with torch.no_grad():
        logits = trainer.D(x)
    assert torch.allclose(surface.double(), 1 / (1 + torch.exp(-logits)), atol=1e-6)
    h = 1e-6
    for i in range(len(x)):
        for j in range(2):
            e = torch.zeros_like(x[i])
            e[j] = h
            with torch.no_grad():
                lp, lm = trainer.D((x[i] + e)[None]), trainer.D((x[i] - e)[None])
            loss = lambda t: -torch.log(torch.sigmoid(t)).item()  # noqa: E731 - non-saturating G loss
            assert pull[i, j].item() == pytest.approx(-(loss(lp) - loss(lm)) / (2 * h), rel=1e-4, abs=1e-7)


def tracking_files(client, run_id, path=""):
    out = []
    for f in client.list_artifacts(run_id, path or None):
        out += tracking_files(client, run_id, f.path) if f.is_dir else [f.path]
    return out


# --------------------------------------------------------------------------- polite stops of a run (slow)

RUN = {"checkpoint_every": 25, "sample_every": 1000, "eval_every": 50, "eval_n": 2000, "ngf": 16, "ndf": 16}
RUN_ARGS = ["run", "dcgan_digits", "--max-steps", "100", *sets(RUN)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every stopped-and-resumed one must equal."""
    home = tmp_path_factory.mktemp("reference")
    proc = run_cli(*RUN_ARGS, "--quiet", env={"SUITE_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split()[-1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUITE_HOME", str(home))
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=paths.tracking_uri())
        weights = checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "generator.pt")["generator"]
        metrics = {k: {m.step: m.value for m in client.get_metric_history(run_id, k)}
                   for k in client.get_run(run_id).data.metrics}
    return weights, metrics


def trained(metrics) -> set[str]:
    """The keys a training run determines: MLflow's system/ samples come every 10 s of wall clock."""
    return {k for k in metrics if not k.startswith("system/")}


def _in_final_evaluation(client, run_id):
    return last_step(client, run_id) >= 100  # every loss is stored before the final evaluation starts


def _mid_step(client, run_id):
    return last_step(client, run_id) >= 30


def _at_a_checkpoint(client, run_id):
    return last_step(client, run_id) >= 75  # flushed at step 75 right before its checkpoint is written


@pytest.mark.slow  # three training processes per case
@pytest.mark.parametrize("sig,moment,extra", [
    (signal.SIGTERM, _mid_step, []),
    (signal.SIGINT, _at_a_checkpoint, ["--set", "checkpoint_every=1"]),  # a checkpoint write at every step
    (signal.SIGUSR1, _in_final_evaluation, [])],  # USR1 (a batch scheduler's warning) takes TERM's path
    ids=["term-mid-step", "int-during-checkpoint-writes", "usr1-final-evaluation"])
def test_a_stopped_run_is_killed_resumable_and_ends_bit_exact(suite_home, mlflow_client, reference, sig, moment,
                                                              extra):
    mark = uuid.uuid4().hex
    proc = start(RUN_ARGS + extra, suite_home, mark)
    run_id = until(lambda: newest_run(mlflow_client, "dcgan_digits"), proc, what="the run")
    until(lambda: moment(mlflow_client, run_id), proc, what=moment.__name__)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name}" in lines[0]
    assert f"resume with: python -m suite run --resume {run_id}" in lines[0]
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["suite.resume_command"] == f"python -m suite run --resume {run_id}"
    assert run.data.tags["suite.stop_signal"] == signal.Signals(sig).name
    stopped_at = checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "last.pt")["trainer"]["step"]
    assert stopped_at == last_step(mlflow_client, run_id)  # a checkpoint of the very step it stopped at
    if moment is _in_final_evaluation:
        assert stopped_at == 100  # every step trained; the final evaluation was dropped and is owed
    assert not wait_gone(mark)  # the metric writer ended with it
    assert not list((paths.run_dir(run_id) / "checkpoints").glob(".*tmp*"))

    resumed = run_cli("run", "--resume", run_id, "--quiet", env={"SUITE_HOME": str(suite_home)})
    assert resumed.returncode == 0, resumed.stderr
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FINISHED" and "suite.failure_reason" not in run.data.tags
    assert "stopped by" in run.data.tags["suite.previous_stop"]
    weights_ref, metrics_ref = reference
    weights = checkpoint.load(paths.run_dir(run_id) / "checkpoints" / "generator.pt")["generator"]
    assert all(torch.equal(weights_ref["G"][k], weights["G"][k]) for k in weights_ref["G"])
    assert trained(run.data.metrics) == trained(metrics_ref)  # the final evaluation's metrics are all there
    for key, ref in metrics_ref.items():
        if key not in trained(metrics_ref):
            continue
        hist = mlflow_client.get_metric_history(run_id, key)
        if key.startswith("lr/"):  # logged at each flush, and a resumed run flushes at other steps
            assert {m.value for m in hist} == set(ref.values())
        if key.startswith(("perf/", "lr/")):
            continue
        assert sorted(m.step for m in hist) == sorted(ref), key  # each step exactly once
        assert all(np.isclose(ref[m.step], m.value, rtol=1e-6, atol=1e-9) for m in hist), key


# --------------------------------------------------------------------------- no orphans (slow)


@pytest.mark.slow  # an MLflow server, twice
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["int", "kill"])  # TERM: INT's handler
def test_the_ui_server_and_all_its_workers_end_with_suite_ui(suite_home, sig):
    mark, port = uuid.uuid4().hex, free_port()
    proc = start(["ui", "--port", str(port)], suite_home, mark)
    wait_http(f"http://127.0.0.1:{port}/health", proc)
    assert len(marked(mark)) >= 4  # suite ui, its guard, mlflow, uvicorn and workers
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode in (128 + sig, -sig)
    assert not wait_gone(mark)
    from suite import ui

    assert ui.port_free("127.0.0.1", port)


def _image_folder(root: Path) -> Path:
    folder = root / "lsun" / "bedroom"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(1024):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root


@pytest.mark.slow  # a training process with DataLoader workers, twice
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_runs_dataloader_workers_and_metric_writer_end_with_it(suite_home, mlflow_client, tmp_path, sig):
    root = _image_folder(tmp_path / "data")
    mark = uuid.uuid4().hex
    args = ["run", "wgan_lsun", "--data-root", str(root), "--max-steps", "2000", "--no-eval",
            *sets({"image_size": 16, "ngf": 8, "ndf": 8, "batch_size": 16, "n_extra_layers": 0, "num_workers": 2,
                   "critic_burst": 5,
                   "sample_every": 5000, "checkpoint_every": 5000})]
    proc = start(args, suite_home, mark)
    run_id = until(lambda: newest_run(mlflow_client, "wgan_lsun"), proc, what="the run")
    until(lambda: last_step(mlflow_client, run_id) >= 3, proc, what="training")
    until(lambda: len(marked(mark)) >= 4, proc, what="the run, its metric writer and two DataLoader workers")
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert not wait_gone(mark)
    if sig == signal.SIGTERM:  # the DataLoader workers survived the signal long enough to finish the step
        assert proc.returncode == 143
        assert mlflow_client.get_run(run_id).info.status == "KILLED"


TUNE = ["tune", "gan_ring8", "--trials", "2", "--max-steps", "3000", "--params", "lr_g", "--sampler", "random",
        *sets({"g_hidden": "16", "d_hidden": "16", "eval_n": 500, "n_sample": 100, "eval_every": 1000})]


@pytest.mark.slow  # two tune coordinators with two workers each, then a rerun
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_stopping_a_tune_coordinator_stops_its_workers_and_requeues_their_trials(suite_home, mlflow_client, sig):
    mark = uuid.uuid4().hex
    args = [*TUNE, "--workers", "2", "--study-name", f"orphans-{sig}"]
    proc = start(args, suite_home, mark)
    until(lambda: len([r for r in _children(mlflow_client) if last_step(mlflow_client, r.info.run_id) >= 50]) == 2,
          proc, what="both workers training")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert not wait_gone(mark)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "rerun the same `suite tune gan_ring8` command" in err
        study_run = [r for r in _runs(mlflow_client) if r.data.tags.get("suite.kind") == "study"][0]
        assert study_run.info.status == "KILLED"
    assert all(r.info.status in ("KILLED", "FINISHED") or sig == signal.SIGKILL for r in _children(mlflow_client))
    again = run_cli(*args, "--quiet", env={"SUITE_HOME": str(suite_home)})
    assert again.returncode == 0, again.stderr
    import json

    summary = json.loads(again.stdout)
    assert summary["trials"] == 2 and summary["complete"] + summary["pruned"] == 2 and summary["failed"] == 0
    assert summary["requeued"] >= 1
    assert all(r.info.status in ("KILLED", "FINISHED") for r in _runs(mlflow_client))  # nothing left RUNNING


def _runs(client):
    exp = client.get_experiment_by_name("gan_ring8")
    return client.search_runs([exp.experiment_id]) if exp else []


def _children(client):
    return [r for r in _runs(client) if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow  # a benchmark with two workers, stopped, then finished
def test_a_stopped_benchmark_requeues_its_cells_and_the_rerun_finishes_them(suite_home, mlflow_client):
    mark = uuid.uuid4().hex
    args = ["benchmark", "gan_ring8", "--seeds", "2", "--max-steps", "1500", "--workers", "2", "--name", "stopped",
            *sets({"g_hidden": "16", "d_hidden": "16", "eval_n": 500, "n_sample": 100})]
    proc = start(args, suite_home, mark)

    def training():
        exp = mlflow_client.get_experiment_by_name("benchmarks")
        runs = mlflow_client.search_runs([exp.experiment_id]) if exp else []
        return len([r for r in runs if "mlflow.parentRunId" in r.data.tags
                    and last_step(mlflow_client, r.info.run_id) >= 50]) == 2

    until(training, proc, what="both cells training")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not wait_gone(mark)
    exp = mlflow_client.get_experiment_by_name("benchmarks").experiment_id
    runs = mlflow_client.search_runs([exp])
    cells = {r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags}
    # a cell that reached its last step before the signal stays FINISHED; every other one is KILLED
    assert "KILLED" in cells and cells <= {"KILLED", "FINISHED"}, cells
    assert all(r.info.status == "KILLED" for r in runs if "mlflow.parentRunId" not in r.data.tags)
    again = run_cli(*args, "--json", env={"SUITE_HOME": str(suite_home)})
    assert again.returncode == 0, again.stderr
    import json

    board = json.loads(again.stdout)
    assert not board["missing"]
    assert {r["n"] for r in board["rows"] if r["spec"] == "gan_ring8"} == {2}


@pytest.mark.slow  # a training process killed during its final evaluation, then resumed
def test_a_run_killed_during_its_final_evaluation_resumes_with_all_its_final_metrics(suite_home, mlflow_client,
                                                                                   reference):
    mark = uuid.uuid4().hex
    proc = start(RUN_ARGS, suite_home, mark)
    run_id = until(lambda: newest_run(mlflow_client, "dcgan_digits"), proc, what="the run")
    until(lambda: _in_final_evaluation(mlflow_client, run_id), proc, what="the final evaluation")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert mlflow_client.get_run(run_id).info.status == "RUNNING"  # nobody could mark it
    resumed = run_cli("run", "--resume", run_id, "--quiet", env={"SUITE_HOME": str(suite_home)})
    assert resumed.returncode == 0, resumed.stderr
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FINISHED"
    _, metrics_ref = reference
    assert trained(run.data.metrics) == trained(metrics_ref)  # KID, precision/recall, memorization: all of them
    for key in trained(metrics_ref):
        if not key.startswith(("perf/", "lr/")):
            assert sorted(m.step for m in mlflow_client.get_metric_history(run_id, key)) == sorted(metrics_ref[key])


@pytest.mark.slow  # three training processes on one run
def test_two_resumes_of_one_run_at_once_one_is_refused(suite_home, mlflow_client):
    args = ["run", "dcgan_digits", "--max-steps", "300", "--no-eval", *sets({**TINY_DC, "checkpoint_every": 20})]
    mark = uuid.uuid4().hex
    proc = start(args, suite_home, mark)
    run_id = until(lambda: newest_run(mlflow_client, "dcgan_digits"), proc, what="the run")
    until(lambda: last_step(mlflow_client, run_id) >= 50, proc, what="training")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    both = [start(["run", "--resume", run_id, "--quiet"], suite_home, mark) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes[0] == 0 and codes[1] != 0, outs
    refused = next(err for p, (_, err) in zip(both, outs) if p.returncode != 0)
    assert refused.strip().startswith("error: ") and "one run, one writer" in refused and len(refused.splitlines()) == 1
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    for key in ("loss/g", "loss/d"):
        assert sorted(m.step for m in mlflow_client.get_metric_history(run_id, key)) == list(range(1, 301)), key


@pytest.mark.slow  # mounts a small tmpfs (root) and trains until it is full
def test_a_full_disk_fails_the_run_in_one_line_and_it_resumes_once_space_is_freed(suite_home, mlflow_client):
    """The run folder (checkpoints) on a 2 MiB tmpfs that fills up while the run trains. One line
    that says so, the run FAILED with the reason, no temporary file left, and a resume finishes
    once the disk has room again."""
    runs = suite_home / "runs"
    runs.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(runs)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({mounted.stderr.decode().strip()[:80]}): needs root")
    try:
        proc = start(["run", "dcgan_digits", "--max-steps", "400", "--no-eval",
                      *sets({**TINY_DC, "checkpoint_every": 1, "sample_every": 1000})], suite_home, uuid.uuid4().hex)
        # the file system itself says training began (MLflow lags the run by seconds: it once finished first)
        until(lambda: list(runs.glob("*/checkpoints/last.pt")), proc, what="the first checkpoint")
        filler = runs / "filler"
        with open(filler, "wb", buffering=0) as f:  # something else fills the disk while the run trains
            deadline = time.monotonic() + 120  # the run's stderr is read only after: a bound, not a wait on a full pipe
            while proc.poll() is None and time.monotonic() < deadline:  # takes what a replaced checkpoint frees
                try:
                    f.write(b"\0" * 4096)
                except OSError:
                    time.sleep(0.001)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        proc.stderr = err
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert lines[-1].startswith("error: the disk is full") and "Traceback" not in proc.stderr
        run_id = lines[-1].split("--resume ")[1].split()[0]
        run = mlflow_client.get_run(run_id)
        assert run.info.status == "FAILED" and "the disk is full" in run.data.tags["suite.failure_reason"]
        assert not list(runs.rglob(".*tmp*"))  # no half-written checkpoint
        filler.unlink()  # space freed
        resumed = run_cli("run", "--resume", run_id, "--quiet", "--no-eval", env={"SUITE_HOME": str(suite_home)})
        assert resumed.returncode == 0, resumed.stderr
        assert mlflow_client.get_run(run_id).info.status == "FINISHED"
        steps = sorted(m.step for m in mlflow_client.get_metric_history(run_id, "loss/g"))
        assert steps == list(range(1, 401))
    finally:
        subprocess.run(["umount", "-l", str(runs)], capture_output=True)
