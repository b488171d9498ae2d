"""`python -m suite ui`: the MLflow UI on the suite's tracking store, bound to 127.0.0.1 unless
told otherwise. With MLFLOW_TRACKING_URI pointing at a server, that server already is the UI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from suite.core import paths, signals, tracking
from suite.core.errors import ConfigError


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(host: str = "127.0.0.1", port: int = 5000) -> int:
    uri = paths.tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"runs are on the tracking server {uri}: open it in a browser", flush=True)
        return 0
    if not 0 < port < 65536:
        raise ConfigError(f"invalid --port {port}")
    if not port_free(host, port):
        raise ConfigError(f"port {port} on {host} is in use: pass --port N")
    tracking.client()  # the store created (or migrated) under its lock, not by the server racing a run
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow, "ui", "--host", host, "--port", str(port)]  # the store by environment: argv would show a password
    print(f"MLflow UI on http://{host}:{port} (store {paths.shown_uri(uri)}); Ctrl-C stops it", flush=True)
    # The guard leads the server's process group and ends all of it with us, however we end.
    proc = subprocess.Popen([sys.executable, "-m", "suite.core.guard", *cmd], env={**os.environ, "MLFLOW_BACKEND_STORE_URI": uri},
                            **signals.child_options(own_group=True))
    with signals.stoppable(on_signal=lambda signum: proc.send_signal(signal.SIGTERM)):
        code = proc.wait()
        signum = signals.requested()
    if signum:
        print(f"MLflow UI stopped ({signals.name(signum)})", file=sys.stderr, flush=True)
        return signals.exit_code(signum)
    return code
