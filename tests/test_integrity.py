"""Integrity II: what the suite writes and later trusts is verified, every wait has a bound, a
stop outside a step ends the process at once, a library call leaves its host's signals alone,
images are read faithfully or refused, and a set of samples has no order.

    python -m pytest tests/test_integrity.py            # the default-tier cases
    python -m pytest tests/test_integrity.py -m slow    # the multi-process ones
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from evaluation import fid, samples
from evaluation.evaluate import Context, Options
from suite import data, harness, run_setup
from suite.core import checkpoint, paths
from suite.core.errors import CheckpointError, DataError
from tests.helpers import ROOT, TINY_DC, assert_one_line_error, run_main, sets

RING = {"g_hidden": (16, 16), "d_hidden": (16,), "n_sample": 64, "sample_every": 5, "checkpoint_every": 5}


def tiny_run(max_steps: int = 5, **over) -> str:
    req = run_setup.RunRequest(recipe="dcgan_digits", overrides={**TINY_DC, "sample_every": 5, "checkpoint_every": 5,
                                                                  **over},
                               max_steps=max_steps, progress=False, evaluate=False)
    return harness.train(req)


# --------------------------------------------------------------------------- content verified on load


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_a_checkpoint_damaged_in_place_is_refused_in_one_line(where, suite_home, mlflow_client):
    run_id = tiny_run(5)
    last = paths.run_dir(run_id) / "checkpoints" / "last.pt"
    raw = bytearray(last.read_bytes())
    i = int(len(raw) * where)
    raw[i : i + 4] = bytes(b ^ 0x5A for b in raw[i : i + 4])  # same length, other bytes: bit rot
    last.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged|corrupt"):
        checkpoint.load(last)
    out = run_main("run", "--resume", run_id, "--max-steps", "8", "--no-eval")
    assert_one_line_error(out, str(last))
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"  # the refused resume changed nothing


def test_a_damaged_cache_is_rebuilt_with_a_note(tmp_path, capsys):
    path = checkpoint.save({"d": torch.arange(50.0)}, tmp_path / "cache.pt")
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert checkpoint.load_cache(path, ("d",)) is None
    assert "rebuilding it" in capsys.readouterr().err and not path.exists()


# --------------------------------------------------------------------------- bad input before anything runs


@pytest.mark.parametrize("args,needle", [
    (["run", "gan_ring8", "--set", "epochs=inf"], "invalid epochs=inf"),
    (["run", "gan_ring8", "--set", "epochs=1e12"], "set max_steps or fewer epochs"),
    (["run", "gan_ring8", "--max-steps", "2000000000"], "at most 1,000,000,000"),
    (["run", "gan_ring8", "--set", "batch_size=1"], "invalid batch_size=1: family gan normalises over the batch"),
    (["run", "gan_fashion", "--set", "n_sample=1"], "invalid n_sample=1"),
    (["benchmark", "gan_ring8", "gan_ring8:", "--seeds", "3"], "same config under two labels"),
    (["benchmark", "gan_ring8", "gan_ring8:lr_g=2e-4", "--seeds", "3"], "same config under two labels"),
    (["benchmark", "gan_ring8:lr_g=1e-3,lr_g=1e-4", "gan_ring8", "--seeds", "3"], "sets lr_g twice"),
    (["benchmark", "gan_ring8", "gan_ring8:lr_g=1e-3", "--trials", "0"], "--trials 0"),
])
def test_impossible_requests_are_one_line_and_create_no_run(args, needle, suite_home):
    start = time.monotonic()
    assert_one_line_error(run_main(*args), needle)
    assert time.monotonic() - start < 30  # no spinning before the refusal
    assert not (suite_home / "mlflow.db").exists() or "benchmark" in args


def test_the_step_count_of_a_burst_schedule_is_its_closed_form():
    """WGAN's critic bursts in closed form (total steps are a search over it, never a count)."""
    from recipes import wgan

    for first, every, burst, critic in [(25, 500, 100, 5), (0, 7, 3, 2), (10, 0, 50, 5), (3, 1, 4, 1)]:
        cfg = wgan.Config(burst_first=first, burst_every=every, critic_burst=burst, n_critic=critic)
        for steps in (0, 1, 2, 24, 25, 26, 499, 500, 501, 1234):
            assert wgan.WGANTrainer.batches_through(cfg, steps) == sum(wgan.critic_iters(cfg, i) for i in range(steps))


# --------------------------------------------------------------------------- signals: the host's, and setup


def test_a_library_call_leaves_the_hosts_handlers_as_it_found_them(suite_home):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    tiny_run(2)
    assert {s: signal.getsignal(s) for s in before} == before


HOST = textwrap.dedent("""
    import sys, time
    from suite import cli
    code = cli.main(["run", "gan_ring8", "--max-steps", "100000", "--no-eval", "--quiet", *sys.argv[1:]])
    print("the host went on after its SIGTERM", flush=True)
    time.sleep(120)
""")


@pytest.mark.slow  # two interpreters and a training run
def test_sigterm_to_a_host_that_calls_the_cli_ends_the_host(suite_home, mlflow_client, tmp_path):
    """The suite stops its run politely and then hands the signal back: the host (here a script;
    a `timeout`-ed pytest alike) ends as SIGTERM means, instead of running on."""
    proc = subprocess.Popen([sys.executable, "-c", HOST, *sets(RING)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((suite_home / "runs").glob("*/checkpoints/last.pt")):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, err[-2000:])
    assert "went on" not in out
    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("gan_ring8").experiment_id])[0]
    assert run.info.status == "KILLED" and run.data.tags["suite.stop_signal"] == "SIGTERM"


SLOW_SETUP = textwrap.dedent('''
    import time
    from dataclasses import dataclass
    from recipes import BaseConfig, Trainer, register_family, register_recipe

    @dataclass
    class Config(BaseConfig):
        lr_g: float = 1e-4

    class Slow(Trainer):
        kind, data_kinds = "points", ("points",)

        def train_step(self, next_batch):
            return {}
        def noise(self, n, generator=None):
            return None
        @classmethod
        def batches_through(cls, cfg, steps):  # a schedule that takes forever to count
            time.sleep(0.5)
            return steps

    register_family("slowsetup", Config, Slow)
    register_recipe("slowsetup_ring8", "slowsetup", "ring8", "a family whose setup spins")
''')


@pytest.mark.slow  # an interpreter start and a signal
def test_a_stop_signal_during_setup_ends_the_process_at_once(suite_home, tmp_path):
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_SETUP)
    proc = subprocess.Popen([sys.executable, "-m", "suite", "run", "slowsetup_ring8", "--plugin", str(plugin)],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(suite_home)})
    time.sleep(12)  # imports done, counting the steps
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 5, "SIGTERM waited for the setup"
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert not (suite_home / "runs").exists()  # nothing half-made: the run never existed


# --------------------------------------------------------------------------- a run deleted while it trains


def test_a_run_deleted_while_it_trains_ends_in_one_line_and_stays_deleted(suite_home, mlflow_client):
    from suite.core.errors import TrackingError

    def delete_now(tracker):
        mlflow_client.delete_run(tracker.run_id)

    req = run_setup.RunRequest(recipe="dcgan_digits", overrides={**TINY_DC, "sample_every": 3, "checkpoint_every": 3},
                               max_steps=6, progress=False, evaluate=False, on_start=delete_now)
    with pytest.raises(TrackingError, match="was deleted in MLflow while it trained") as e:
        harness.train(req)
    assert "mlflow runs restore" in str(e.value) and "--resume" in str(e.value)
    run = mlflow_client.get_run(mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("dcgan_digits").experiment_id], run_view_type=3)[0].info.run_id)
    assert run.info.lifecycle_stage == "deleted" and run.info.status == "KILLED"


# --------------------------------------------------------------------------- images read faithfully


def test_image_modes_are_read_faithfully_or_refused(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    deep = (gray.astype(np.uint16) * 257 + rng.integers(0, 257, gray.shape)).astype(np.uint16)  # 16-bit, >= 256
    cases = {}
    for name, write in {
        "png16": lambda p, a, d: Image.fromarray(d).save(p),  # uint16: mode I;16
        "palette": lambda p, a, d: Image.fromarray(a).convert("P").save(p),
        "la_opaque": lambda p, a, d: Image.merge("LA", [Image.fromarray(a), Image.new("L", a.shape[::-1], 255)]).save(p),
        "gif": lambda p, a, d: Image.fromarray(a).save(p.with_suffix(".gif")),
        "rgb_gray": lambda p, a, d: Image.fromarray(a).convert("RGB").save(p),
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        for i, (a, d) in enumerate(zip(gray, deep)):
            write(folder / f"{i:03d}.png", a, d)
        cases[name] = samples.load_samples(folder)
    assert cases["png16"].shape == (30, 1, 8, 8)
    expected16 = torch.from_numpy(deep.astype(np.float64) / 65535 * 2 - 1).float().unsqueeze(1)
    assert torch.allclose(cases["png16"], expected16, atol=1e-6)  # every 16-bit level kept, none clipped to 255
    assert len(torch.unique(cases["png16"])) > 256
    for name in ("palette", "la_opaque", "gif", "rgb_gray"):
        x = cases[name]
        assert x.shape == (30, 1, 8, 8), name  # grayscale in any container is one channel
        assert torch.equal(x.add(1).mul(127.5).round().byte()[:, 0], torch.from_numpy(gray)), name
    refused = {
        "transparent": (lambda p: Image.merge("LA", [Image.fromarray(gray[0]), Image.fromarray(
            np.where(gray[1] > 128, 255, 0).astype(np.uint8))]).save(p), "transparent pixels"),
        "float": (lambda p: Image.fromarray(gray[0].astype(np.float32) / 255).save(p.with_suffix(".tif")),
                  "32-bit float pixels"),
        "animated": (lambda p: Image.fromarray(gray[0]).save(p.with_suffix(".gif"), save_all=True,
                                                             append_images=[Image.fromarray(gray[1])]), "animation"),
    }
    for name, (write, needle) in refused.items():
        folder = tmp_path / f"bad_{name}"
        folder.mkdir()
        write(folder / "000.png")
        with pytest.raises(DataError, match=needle):
            samples.load_samples(folder)
    cmyk = tmp_path / "cmyk"
    cmyk.mkdir()
    Image.fromarray(np.stack([gray[0]] * 3, -1)).convert("RGB").convert("CMYK").save(cmyk / "0.jpg", quality=100)
    assert samples.load_samples(cmyk).shape[1] in (1, 3)


# --------------------------------------------------------------------------- a set has no order


def test_every_metric_is_the_same_for_any_order_of_the_samples(suite_home):
    x = data.load("digits").train.x[:400]
    ctx = Context("digits", Options(extractor="pixels"))
    a = ctx.evaluate(x, full=True).metrics
    b = ctx.evaluate(x[torch.randperm(len(x), generator=torch.Generator().manual_seed(7))], full=True).metrics
    assert a.keys() == b.keys() and a == b  # bit-identical: IS splits, KID subsets, FID-inf, intervals


def test_fid_infinity_follows_chong_and_forsyth_and_names_its_variant():
    counts = fid.fidinf_counts(50_000)
    assert len(counts) == 15 and counts[0] == 5000 and counts[-1] == 50_000
    assert fid.fidinf_counts(10_000)[0] == 5000
    assert fid.fidinf_counts(2000)[0] == 200 and not fid.fidinf_original(2000)
    from evaluation.metrics import METRICS, Protocol

    p = Protocol(2000, "lenet", "fashion_mnist", "image", 60000)
    assert METRICS["fidinf_rel"].logged_name(p) == "fidinf_rel2k_lenet_fashion_mnist_train"


# --------------------------------------------------------------------------- first use of a store, frozen writers


@pytest.mark.slow  # four interpreters started together
@pytest.mark.parametrize("store", ["suite_home", "tracking_uri"])
def test_two_runs_started_at_once_on_a_new_store_both_finish(store, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(tmp_path / "home")}
    if store == "tracking_uri":
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    args = [sys.executable, "-m", "suite", "run", "gan_ring8", "--max-steps", "3", "--no-eval", "--quiet", *sets(RING)]
    procs = [subprocess.Popen(args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outs]
    assert len({out.split()[-1] for out, _ in outs}) == 2


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def _writer_of(pid: int) -> int | None:
    for child in _children(pid):
        try:
            if "suite.core.metric_writer" in open(f"/proc/{child}/cmdline").read():
                return child
        except OSError:
            continue
    return None


@pytest.mark.slow  # a training run whose metric writers are frozen with SIGSTOP
def test_a_frozen_metric_writer_is_replaced_then_a_second_one_fails_the_run_in_bounded_time(suite_home, mlflow_client):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(suite_home), "SUITE_WRITER_TIMEOUT_S": "3"}
    over = {**RING, "sample_every": 20, "checkpoint_every": 20}
    proc = subprocess.Popen([sys.executable, "-m", "suite", "run", "gan_ring8", "--max-steps", "400", "--no-eval",
                             "--quiet", *sets(over)], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    frozen = []
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and len(frozen) < 2:
        writer = _writer_of(proc.pid)
        if writer and writer not in frozen:
            os.kill(writer, signal.SIGSTOP)  # as a store stuck on a lock or a dead network file system
            frozen.append(writer)
        time.sleep(0.2)
    try:
        _, err = proc.communicate(timeout=120)  # bounded: a few drains of 3 s, not forever
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert len(frozen) == 2, err[-2000:]
    assert_one_line_error(subprocess.CompletedProcess([], proc.returncode, "", err), "gave no answer for 3 s, twice")
    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("gan_ring8").experiment_id])[0]
    assert run.info.status == "FAILED" and "--resume" in run.data.tags["suite.failure_reason"]
