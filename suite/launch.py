"""`suite run RECIPE --nproc N`: N processes on this machine through torch.distributed's own
elastic agent (what torchrun runs), itself a child process, so that the suite's process keeps its
signal handlers and can close a run whose rank 0 died.

    python -m suite run dcgan_fashion --nproc 2      # starts: python -m suite.launch 2 run dcgan_fashion
    torchrun --nproc-per-node 2 -m suite run dcgan_fashion   # the same, without the suite in front

A stop signal to this process goes to the agent, which passes it to every rank (they stop after
the same step: suite/core/ranks.py); a rank that dies makes the agent end the others.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from suite.core import ranks, signals
from suite.core.errors import RankLost
from suite.core.tracking import Tracker, get_run

SHUTDOWN_S = 120  # the agent's wait for ranks stopping politely (checkpoint, MLflow) before SIGKILL
STOP_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"  # torchrun's defaults and Slurm's warning


def run_processes(nproc: int, argv: list[str]) -> int:
    """Run `python -m suite ARGV` as `nproc` ranks; the exit code is rank 0's. A run rank 0 left
    open (it was killed) is marked FAILED with the resume command, and said in one line."""
    with tempfile.TemporaryDirectory(prefix="suite-nproc-") as tmp:
        id_file = Path(tmp) / "run_id"
        env = {**os.environ, "SUITE_RUN_ID_FILE": str(id_file), "SUITE_LAUNCH_LOGS": str(Path(tmp) / "logs")}
        proc = subprocess.Popen([sys.executable, "-m", "suite.launch", str(nproc), *argv], env=env,
                                **signals.child_options(own_group=True))
        with signals.stoppable(on_signal=proc.send_signal):
            code = proc.wait()
        run_id = id_file.read_text().strip() if id_file.exists() else None
    if run_id is not None and (line := _close_abandoned(run_id, nproc, code)) is not None:
        print(f"error: {line}", file=sys.stderr, flush=True)
        return 1
    return code


def _close_abandoned(run_id: str, nproc: int, code: int) -> str | None:
    """The run still RUNNING after every rank ended (rank 0 was killed): FAILED, with why."""
    if get_run(run_id).info.status != "RUNNING":
        return None
    how = f"killed by {signals.name(code - 128)}" if code > 128 else f"ended with exit code {code}"
    why = (f"rank 0 of its {nproc} processes was {how} before it closed the run; resume with: "
           f"python -m suite run --resume {run_id} --nproc {nproc}")
    Tracker.attach(run_id).finish("FAILED", why)
    return f"run {run_id}: {why}"


def main(argv: list[str]) -> int:
    """The agent: `python -m suite.launch N ARGV...` (started by run_processes)."""
    nproc, rest = int(argv[0]), argv[1:]
    logging.disable(logging.CRITICAL)  # the agent's own lines: the ranks say what went wrong, in the suite's words
    cores = ranks.usable_cores() // nproc
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores)))  # as torchrun: no oversubscribed cores
    logs = os.environ.get("SUITE_LAUNCH_LOGS") or tempfile.mkdtemp(prefix="suite-launch-")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"suite-{uuid.uuid4().hex[:12]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          logs_specs=DefaultLogsSpecs(log_dir=logs), signals_to_handle=STOP_SIGNALS,
                          shutdown_timeout=SHUTDOWN_S)
    try:
        elastic_launch(config, sys.executable)("-m", "suite", *rest)
    except ChildFailedError as e:
        codes = {rank: f.exitcode if f.exitcode > 0 else 128 - f.exitcode for rank, f in e.failures.items()}
        lead = codes.get(0, codes[min(codes)])
        stops = {signals.exit_code(getattr(signal, name)) for name in STOP_SIGNALS.split(",")}
        if lead in stops and any(code not in stops for rank, code in codes.items() if rank != 0):
            return RankLost.exit_code  # rank 0 was ended by the agent because another rank died first
        return lead
    except SignalException as e:
        return 128 + e.sigval
    return 0


if __name__ == "__main__":  # guarded: the agent's spawned helpers re-import this module
    raise SystemExit(main(sys.argv[1:]))
