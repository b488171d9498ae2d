"""Real servers for tests: an MLflow tracking server and a PostgreSQL cluster on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import requests

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


@contextmanager
def mlflow_server(tmp: Path):
    """`mlflow server` with an SQLite backend, serving artifacts over HTTP."""
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
         "--artifacts-destination", str(tmp / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres(tmp: Path):
    """A throwaway PostgreSQL cluster (Debian's packages) on 127.0.0.1; yields an SQLAlchemy URL."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    data = tmp / "pgdata"
    as_user = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the package's postgres user,
        # in a folder that user can reach (pytest's tmp folders are private to root)
        data = Path(tempfile.mkdtemp(prefix="suite-pg-"))
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    else:
        data.mkdir()
    port = free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {data}", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "optuna"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("headless Chromium is not installed (apt-get install chromium)")


def render(page: Path, tmp: Path, width: int = 1280, height: int = 6000) -> tuple[str, Path]:
    """Load a page in headless Chromium: (DOM after load and scripts, full screenshot PNG)."""
    shot = tmp / f"{page.stem}.png"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
        dom = subprocess.run([*base, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        subprocess.run([*base, f"--screenshot={shot}", f"--window-size={width},{height}", page.resolve().as_uri()],
                       capture_output=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return dom, shot
