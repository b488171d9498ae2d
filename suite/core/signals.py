"""Polite stops and no orphans.

SIGTERM (schedulers, containers, `timeout`), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's warning
before preemption) ask the running command to stop: a training run finishes its step, writes a
checkpoint, flushes its values, marks its run KILLED and exits 128 + the signal (130 / 143).
A second signal exits at once (checkpoint writes are atomic; their temporary files are removed).

Whose process it is decides what happens after: under `owned()` (`python -m suite`, its workers)
the command ends with its own exit code; called as a library (a notebook, pytest, a script) the
suite restores the host's handlers when its call ends and hands the stop back to them — the
host's default ends the host as it would have, Python's SIGINT handler raises KeyboardInterrupt —
and never calls os._exit.

Children the suite starts die with it however it ends: `child_options()` makes the kernel send
them SIGTERM when their parent dies (Linux PR_SET_PDEATHSIG), even after a SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
# One request delivered twice (to the process group and forwarded by a parent) is not a second
# request: a repeat inside this window is ignored.
REPEAT_S = 1.0
TEMPORARY: set[str] = set()  # files half-written right now (removed by a hard exit)

_state = {"signum": None, "at": 0.0, "raise": 0, "hooks": [], "owner": False, "previous": {}}


class Interrupted(BaseException):
    """Raised inside `interruptible()` when a stop signal arrives (work that is simply redone).
    A BaseException so that no `except Exception` of the interrupted code swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    return 128 + signum


def requested() -> int | None:
    """The stop signal received, if any."""
    return _state["signum"]


def _hard_exit(signum: int) -> None:
    for path in list(TEMPORARY):
        try:
            os.unlink(path)
        except OSError:
            pass
    print(f"error: second {name(signum)}: exiting at once (resume from the last checkpoint)", file=sys.stderr,
          flush=True)
    if _state["owner"]:
        os._exit(exit_code(signum))
    previous = _state["previous"]
    for s, h in previous.items():  # the host's handlers back, and the host's answer to this signal
        signal.signal(s, h)
    _state["signum"] = None  # handed back: the outer stoppable() must not hand it back again
    _redeliver(signum, previous.get(signum))


def _redeliver(signum: int, previous) -> None:
    """A stop the suite handled, handed back to the host process's own handler."""
    if previous == signal.SIG_IGN:
        return
    if previous in (signal.SIG_DFL, None):
        os.kill(os.getpid(), signum)  # the default action: the host ends as the sender meant
        return
    previous(signum, None)  # e.g. Python's SIGINT handler: KeyboardInterrupt in the host


@contextmanager
def owned():
    """The suite owns this process (its CLI, its worker processes): a stop ends the command with
    the command's own exit code, and a second signal exits at once."""
    before = _state["owner"]
    _state["owner"] = True
    try:
        yield
    finally:
        _state["owner"] = before


def _handler(signum, frame) -> None:
    now = time.monotonic()
    if _state["signum"] is not None:
        if now - _state["at"] < REPEAT_S:
            return
        _hard_exit(signum)
    _state["signum"], _state["at"] = signum, now
    for hook in list(_state["hooks"]):
        hook(signum)
    if _state["raise"]:
        raise Interrupted(signum)


@contextmanager
def stoppable(on_signal=None):
    """Stop signals are recorded (see `requested`) instead of killing the process; `on_signal`
    (e.g. forward to workers) runs when the first one arrives. Only the main thread can own
    signal handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    outer = _state["signum"] is not None or any(h is _handler for h in previous.values())
    if not outer:
        _state["previous"] = previous
    if on_signal is not None:
        _state["hooks"].append(on_signal)
    for s in STOP_SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        if on_signal is not None:
            _state["hooks"].remove(on_signal)
        for s, h in previous.items():
            signal.signal(s, h)
        if not outer:
            signum = _state["signum"]
            _state["signum"], _state["at"], _state["previous"] = None, 0.0, {}
            if signum is not None and not _state["owner"]:
                _redeliver(signum, previous[signum])


@contextmanager
def interruptible():
    """Work that can be dropped and redone (an evaluation): a stop signal raises Interrupted
    here at once instead of waiting for the work to end."""
    if _state["signum"] is not None:
        raise Interrupted(_state["signum"])
    _state["raise"] += 1
    try:
        yield
    finally:
        _state["raise"] -= 1


def check() -> None:
    """Raise Interrupted if a stop was requested (between pieces of interruptible work)."""
    if _state["signum"] is not None:
        raise Interrupted(_state["signum"])


# --------------------------------------------------------------------------- children

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int, parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's own handlers must do
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """This process gets `sig` when its parent dies (a process someone else's launcher started)."""
    if sys.platform.startswith("linux"):
        _die_with_parent(sig, os.getppid())


def child_options(sig: int = signal.SIGTERM, own_group: bool = False, immune: bool = False) -> dict:
    """Popen keyword arguments for a child that gets `sig` when this process dies, however it
    dies. `own_group`: the child leads a process group (a terminal's Ctrl-C reaches only us, and
    we pass it on once; `stop_group` can end the child's descendants too). `immune`: the child
    ignores SIGINT/SIGTERM from its first instruction (a helper whose parent ends it; a Ctrl-C to
    the group while it still imports would otherwise kill it with a traceback)."""
    parent = os.getpid()

    def setup() -> None:
        if immune:
            ignore_stops()  # SIG_IGN survives exec, and Python keeps an ignored SIGINT ignored
        if sys.platform.startswith("linux"):
            _die_with_parent(sig, parent)

    opts = {"preexec_fn": setup} if os.name == "posix" else {}
    if own_group:
        opts["start_new_session"] = True
    return opts


def ignore_stops() -> None:
    """For helper processes whose parent decides when they end (the metric writer, DataLoader
    workers): a signal to the whole process group must not kill them mid-write."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def stop_group(proc, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Send `sig` to a child's process group (it and all it started), SIGKILL it after `grace`."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(pgid, s)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
