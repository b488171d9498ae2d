"""--set precision / compile / channels_last: a bf16 run on the CPU trains and is evaluated, fp16
goes through one GradScaler per optimizer (an overflowing step skipped, counted, and the scaler
resumed from the checkpoint), and what this machine cannot do is refused in one line."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from suite import run_setup
from tests.helpers import ROOT, TINY_DC, assert_one_line_error, run_main, sets


def test_a_bf16_run_trains_and_is_evaluated_on_the_cpu(suite_home, mlflow_client):
    proc = run_main("run", "dcgan_digits", "--max-steps", "6", *sets({**TINY_DC, "precision": "bf16", "eval_n": 500,
                                                                     "channels_last": True}),
                    env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})  # MLflow's own knob (default here 10 s)
    assert proc.returncode == 0, proc.stderr
    run = mlflow_client.get_run(proc.stdout.split()[-1])
    assert run.info.status == "FINISHED" and run.data.params["precision"] == "bf16"
    losses = [m.value for m in mlflow_client.get_metric_history(run.info.run_id, "loss/d")]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert any(k.startswith("fid") for k in run.data.metrics)  # evaluated in fp32 after bf16 training
    assert any(k.startswith("system/") for k in run.data.metrics)  # MLflow's own system metrics


@pytest.mark.parametrize("value,needle", [("fp16", "use bf16 on the CPU"), ("fp8", "invalid precision='fp8'")])
def test_what_this_machine_cannot_do_is_one_line(suite_home, value, needle):
    assert_one_line_error(run_main("run", "dcgan_digits", "--max-steps", "1", "--set", f"precision={value}"), needle)


def _trainer(precision: str):
    cfg = run_setup.resolve_config("dcgan_digits", {**{k: str(v) for k, v in TINY_DC.items()}, "precision": precision})
    p = run_setup.prepare("dcgan_digits", dataclasses_replace(cfg, precision="fp32"))  # fp16 is refused on the CPU
    trainer = run_setup.build_trainer(p)
    trainer.cfg = cfg  # ... but its GradScaler path runs here all the same (torch.amp works on the CPU)
    return trainer


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_fp16_steps_go_through_a_grad_scaler_that_skips_overflow_and_resumes(suite_home):
    t = _trainer("fp16")
    opt = t.opt_d
    before = [p.detach().clone() for p in t.D.parameters()]
    opt.zero_grad()
    t.backward(t.D(torch.zeros(2, 1, 16, 16)).sum() * float("inf"), opt)  # gradients overflow
    t.update(opt)
    assert t.skipped == 1 and all(torch.equal(a, b) for a, b in zip(before, t.D.parameters()))
    opt.zero_grad()
    t.backward(t.D(torch.randn(2, 1, 16, 16)).mean(), opt)
    t.update(opt)
    assert t.skipped == 1 and not all(torch.equal(a, b) for a, b in zip(before, t.D.parameters()))
    state = t.state_dict()
    assert state["skipped"] == 1 and state["scalers"]["d"]["scale"] == 2.0**16 / 2  # halved by the overflow
    again = _trainer("fp16")
    again.load_state_dict(state)
    assert again.skipped == 1 and again._scaler(again.opt_d).get_scale() == 2.0**15


@pytest.mark.slow  # torch.compile builds C++ kernels (~1 min on 2 cores)
def test_compile_trains_and_a_missing_toolchain_is_one_line(suite_home):
    ok = run_main("run", "gan_ring8", "--max-steps", "3", "--no-eval", "--set", "compile=true")
    assert ok.returncode == 0, ok.stderr
    env = {**os.environ, "CXX": "/no/such/c++", "PYTHONPATH": str(ROOT), "SUITE_HOME": str(suite_home)}
    proc = subprocess.run([sys.executable, "-m", "suite", "run", "gan_ring8", "--max-steps", "1", "--set",
                           "compile=true"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert_one_line_error(proc, "compile=true: torch.compile cannot build here", "compile=false")
