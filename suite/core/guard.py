"""Runs one command as the leader of its process group and takes the whole group down with it:
when told to stop (SIGTERM, SIGINT, SIGHUP) or when its own parent dies. For servers that start
children of their own (the MLflow UI: uvicorn and its workers, a job runner) and would outlive
the suite otherwise.

    python -m suite.core.guard COMMAND [ARGS...]    (started by suite.ui with signals.child_options)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_S = 5.0  # for the command's own clean shutdown before the group is killed


def main(argv: list[str]) -> int:
    parent = os.getppid()
    stop = []
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda signum, frame: stop.append(signum))
    proc = subprocess.Popen(argv)  # in this process's group: os.setsid() made it ours
    while proc.poll() is None and not stop and os.getppid() == parent:
        time.sleep(0.2)
    if proc.poll() is not None and not stop and os.getppid() == parent:
        return proc.returncode
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(0, signal.SIGKILL)  # whatever is left of the group, this process last
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
