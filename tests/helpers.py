"""Test helpers: the CLI in this process or in a subprocess, one-line error checks, tiny size
overrides."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Small networks so CPU tests take seconds; they change only size knobs.
TINY_DC = {"image_size": 16, "ngf": 8, "ndf": 8, "batch_size": 32, "n_sample": 16}


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """`python -m suite ...` in a subprocess with the current environment (plus `env`)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "suite", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd or ROOT)


def run_main(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """`suite.cli.main(argv)` in this process, with `env` set and `cwd` entered for the call:
    what a subprocess would show (exit code, stdout, stderr) without a second interpreter
    start. An escaping exception is reported as the traceback a user would have seen."""
    from suite import cli

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        if cwd is not None:
            mp.chdir(cwd)
        try:
            code = cli.main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - what the user would see, for the assertions
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(["suite", *args], code, out.getvalue(), err.getvalue())


def sets(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        out += ["--set", f"{k}={v}"]
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Bad input: non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
