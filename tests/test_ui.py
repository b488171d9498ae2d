"""Comparing runs in the MLflow UI: the real server, read back over its REST API; `suite ui`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from tests.helpers import ROOT, TINY_DC, run_cli, sets
from tests.servers import free_port, mlflow_server, wait_http


@pytest.mark.slow  # starts an MLflow server
def test_a_suite_run_reads_back_over_the_tracking_servers_rest_api(tmp_path):
    with mlflow_server(tmp_path) as url:
        proc = run_cli("run", "dcgan_digits", "--max-steps", "12", *sets({**TINY_DC, "sample_every": 6}),
                       "--no-eval", env={"MLFLOW_TRACKING_URI": url, "SUITE_HOME": str(tmp_path / "home")})
        assert proc.returncode == 0, proc.stderr
        run_id = proc.stdout.strip()
        assert len(run_id) == 32 and "\n" not in run_id  # the run id alone: no MLflow "View run" lines on stdout
        api = f"{url}/api/2.0/mlflow"
        run = requests.get(f"{api}/runs/get", params={"run_id": run_id}, timeout=10).json()["run"]
        assert run["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["recipe"] == "dcgan_digits" and params["lr_g"] == "0.0002" and params["ngf"] == "8"
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["suite.family"] == "dcgan"
        hist = requests.get(f"{api}/metrics/get-history", params={"run_id": run_id, "metric_key": "loss/d"},
                            timeout=10).json()["metrics"]
        assert sorted(int(m["step"]) for m in hist) == list(range(1, 13))
        listing = requests.get(f"{api}/artifacts/list", params={"run_id": run_id, "path": "samples"},
                               timeout=10).json()["files"]
        names = {f["path"] for f in listing}
        assert {"samples/step_000000.png", "samples/step_000006.png", "samples/step_000012.png"} <= names
        png = requests.get(f"{url}/get-artifact", params={"run_uuid": run_id, "path": "samples/step_000012.png"},
                           timeout=10)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 200


@pytest.mark.slow  # starts an MLflow server
def test_suite_ui_serves_the_local_store_on_loopback(suite_home):
    assert run_cli("run", "dcgan_digits", "--max-steps", "2", "--no-eval", *sets(TINY_DC)).returncode == 0
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "suite", "ui", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        exps = requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                            params={"max_results": 10}, timeout=10).json()["experiments"]
        assert "dcgan_digits" in {e["name"] for e in exps}
        # bound to loopback only: no other local address answers
        outside = [a for a in _local_addresses() if not a.startswith("127.")]
        for addr in outside[:1]:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((addr, port)) != 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in out


def _local_addresses() -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
        return out.split()
    except (OSError, subprocess.SubprocessError):
        return []


