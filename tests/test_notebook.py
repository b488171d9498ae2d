"""The Python API inside a real Jupyter kernel (ipykernel driven by jupyter_client): a run shows
a notebook progress bar, an interrupt stops it politely (checkpoint, KILLED, resumable) and
gives control back without killing the kernel, the kernel's own SIGINT handler is restored, and
a second call in the same kernel works.

    python -m pytest tests/test_notebook.py
"""

from __future__ import annotations

import os
import queue
import time

import pytest

from tests.helpers import ROOT

jupyter_client = pytest.importorskip("jupyter_client", reason="the notebook test needs the test extra (jupyter_client)")

SMALL = "dict(n_sample=64, sample_every=50, checkpoint_every=100000, g_hidden=(32, 32), d_hidden=(32,))"


def execute(client, code: str, timeout: float = 240, on_output=None) -> dict:
    """Run one cell; its reply and everything it printed or displayed."""
    msg_id = client.execute(code)
    out = {"stream": "", "displays": [], "updates": [], "error": None}
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"cell did not finish in {timeout} s: {code[:80]}\n{out['stream'][-2000:]}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out["stream"] += content["text"]
        elif kind in ("display_data", "update_display_data", "comm_open"):
            out["displays"].append(content)
        elif kind == "comm_msg":  # a widget's new state (the bar's value: steps done)
            out["updates"].append(content.get("data", {}).get("state", {}))
        elif kind == "error":
            out["error"] = content["ename"]
        elif kind == "status" and content["execution_state"] == "idle":
            return out
        if on_output is not None:
            on_output(out)


@pytest.mark.slow  # a kernel start and a training run: ~35 s
@pytest.mark.timeout(600)
def test_a_run_in_a_kernel_is_interrupted_politely_and_the_kernel_lives_on(tmp_path):
    env = {**os.environ, "SUITE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env=env, extra_arguments=["--HistoryManager.enabled=False"])
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        setup = execute(client, "import signal\nfrom suite import api\nkernel_handler = signal.getsignal(signal.SIGINT)\n"
                                "print('ready')")
        assert setup["error"] is None and "ready" in setup["stream"], setup

        sent = []

        def interrupt_once_training(out):
            # The bar has counted steps (not only shown up: on a loaded machine the first step
            # can take seconds), so the checkpoint the interrupt writes is past step 0.
            steps = [u["value"] for u in out["updates"] if isinstance(u.get("value"), (int, float))]  # not the text's
            if not sent and steps and max(steps) >= 5:
                km.interrupt_kernel()
                sent.append(time.monotonic())

        long = execute(client, f"r = api.run('gan_ring8', max_steps=200000, evaluate=False, **{SMALL})",
                       on_output=interrupt_once_training)
        assert sent, "no progress widget was displayed"
        assert long["error"] == "KeyboardInterrupt", long
        assert any("application/vnd.jupyter.widget-view+json" in d.get("data", {}) or d.get("target_name")
                   for d in long["displays"])  # a notebook bar, not text lines

        check = execute(client, "import mlflow\nfrom suite.core import tracking\n"
                                "run = tracking.find_runs(\"tags.`suite.recipe` = 'gan_ring8'\")[0]\n"
                                "print(run.info.status, run.data.tags['suite.stop_signal'], "
                                "signal.getsignal(signal.SIGINT) is kernel_handler, "
                                "int(run.data.tags.get('suite.resume_command', '').count('--resume')))\n"
                                "run_id = run.info.run_id")
        assert check["error"] is None, check
        assert check["stream"].split() == ["KILLED", "SIGINT", "True", "1"]

        again = execute(client, "from suite.core import checkpoint, paths\n"
                                "step = checkpoint.load(paths.run_dir(run_id) / 'checkpoints' / 'last.pt')['trainer']['step']\n"
                                "r2 = api.run(resume=run_id, max_steps=step + 20)\n"
                                "print(r2.status, step > 0)")
        assert again["error"] is None, again
        assert again["stream"].split()[-2:] == ["FINISHED", "True"]
        assert km.is_alive()
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
