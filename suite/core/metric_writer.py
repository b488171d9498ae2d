"""The background metric writers of `suite.core.tracking`: a thread for a tracking server, and
a helper process for a local SQLite store, which reads metric batches (JSON lines) from stdin and
logs them to one MLflow run, so the training process never does MLflow's per-value ORM work.

    python -m suite.core.metric_writer RUN_ID    (started by ProcessWriter; the store: MLFLOW_TRACKING_URI / SUITE_HOME)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time

from suite.core import paths, signals
from suite.core.errors import TrackingError

MAX_BATCH = 1000  # MLflow's log_batch limit


def quiet_mlflow() -> None:
    # MLflow sets its logger up on import; its INFO lines (DB migrations) are noise here.
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(run_id: str) -> int:
    from mlflow.tracking import MlflowClient  # (the same)

    quiet_mlflow()
    client = MlflowClient(tracking_uri=paths.tracking_uri())
    say("ready")  # the trainer sends batches only from now on (it stores them itself before)
    error = None
    pending: list = []

    def write():
        nonlocal error, pending
        if pending and error is None:
            try:
                store(client, run_id, pending)
            except Exception as e:  # noqa: BLE001 - reported at the next drain
                error = e
        pending = []

    for line in sys.stdin:
        line = line.strip()
        if line == "drain":
            write()
            say("ok" if error is None else str(error).splitlines()[0][:200] or type(error).__name__)
            error = None
        elif line:
            pending.extend(json.loads(line))
            # Write when nothing more is waiting in the pipe: several flushes then share one
            # log_batch (MLflow's per-call cost falls with batch size).
            if len(pending) >= MAX_BATCH or not select.select([sys.stdin], [], [], 0)[0]:
                write()
    write()
    return 0


def say(line: str) -> None:
    """A reply to the trainer. A trainer that was killed reads no more: what it sent is still
    stored (its end of stdin closes next), without a traceback on the run's stderr."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor one at exit


def writer_timeout() -> float:
    """How long a drain waits for the writer (seconds): SUITE_WRITER_TIMEOUT_S, default 120."""
    return float(os.environ.get("SUITE_WRITER_TIMEOUT_S") or 120)


def _write_failed(why: str) -> TrackingError:
    return TrackingError(f"logging metrics to {paths.shown_uri()} failed: {why}")


def store(client, run_id: str, rows: list) -> None:
    """(key, value, timestamp, step) rows into the run, MAX_BATCH per log_batch."""
    from mlflow.entities import Metric  # heavy: mlflow takes ~1 s to import; loaded already where this runs

    for i in range(0, len(rows), MAX_BATCH):
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in rows[i : i + MAX_BATCH]])


class ThreadWriter(threading.Thread):
    """Sends metric batches from a background thread so a training step never waits on the
    store. Written instead of MLflow's async logging (log_batch(synchronous=False)) because
    ending a run that used it blocks about a second while MLflow's queue thread winds down."""

    def __init__(self, c, run_id: str):
        super().__init__(daemon=True, name=f"suite-metrics-{run_id[:8]}")
        self.client, self.run_id = c, run_id
        self.queue: queue.Queue = queue.Queue()
        self.error: Exception | None = None
        self.start()

    def put(self, chunk: list[tuple]) -> None:
        self.queue.put(chunk)

    def run(self) -> None:
        from mlflow.entities import Metric  # heavy: mlflow takes ~1 s to import; only commands that log pay it

        while True:
            chunk = self.queue.get()
            try:
                if chunk is None:
                    return
                if self.error is None:
                    self.client.log_batch(self.run_id, metrics=[Metric(*m) for m in chunk])
            except Exception as e:  # noqa: BLE001 - surfaced by drain()
                self.error = e
            finally:
                self.queue.task_done()

    def drain(self) -> None:
        timeout = writer_timeout()
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:  # queue.join() with a bound
            while self.queue.unfinished_tasks:
                if (left := deadline - time.monotonic()) <= 0:
                    raise _write_failed(f"the tracking server took no metrics for {timeout:.0f} s")
                self.queue.all_tasks_done.wait(left)
        if self.error is not None:
            error, self.error = self.error, None
            raise _write_failed(str(error).splitlines()[0][:200])

    def stop(self) -> None:
        self.queue.put(None)
        self.join(timeout=30)


class ProcessWriter:
    """The same, in a helper process (`main` above): the training process only writes JSON lines
    into a pipe. A plain subprocess rather than multiprocessing, so scripts that call the harness
    need no `if __name__ == "__main__"` guard. The pipe is non-blocking, so a step never waits on
    a writer that is slow or frozen (what the pipe cannot take now is kept and sent later), and a
    drain waits at most `writer_timeout()`. What was sent since the last acknowledged drain is
    kept, so a writer that dies or freezes is replaced once and nothing is lost.

    The helper starts with the run and takes ~2.5 s to import MLflow (longer on a loaded machine).
    Until the run's first writer says "ready", batches are stored from a thread of this process
    (`early`), so values show up during those seconds and a short run never waits for the
    import; a replacement writer is waited for, so one that never answers fails the drain."""

    def __init__(self, run_id: str, client):
        self.run_id, self.client = run_id, client
        self.unacked: list[bytes] = []
        self.closed = False
        self.first = True  # the run's first writer
        self.early: ThreadWriter | None = None  # stores what comes before the first writer is ready
        self._start()

    def _start(self) -> None:
        # The store's URI reaches it through the environment it inherits: argv would show a password.
        self.proc = subprocess.Popen([sys.executable, "-m", "suite.core.metric_writer", self.run_id],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     # Ctrl-C reaches the whole process group: the trainer decides when we end (EOF)
                                     **signals.child_options(immune=True))
        os.set_blocking(self.proc.stdin.fileno(), False)
        self.pending = b""  # written, but not yet taken by the pipe
        self.ready, self.started = False, time.monotonic()

    def _is_ready(self, wait: float = 0.0) -> bool:
        """Has the helper said "ready" (within `wait` seconds)? Then it gets every batch not yet
        acknowledged."""
        if not self.ready and select.select([self.proc.stdout], [], [], wait)[0]:
            if self.proc.stdout.readline().strip() == b"ready":
                self.ready = True
                self.pending = b"".join(self.unacked)
                self._send()
        return self.ready

    def wait_ready(self, timeout: float) -> bool:
        """Block until the helper says "ready" (False: it did not within `timeout`)."""
        deadline = time.monotonic() + timeout
        while not self._is_ready(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                return False
        return True

    def _send(self, deadline: float | None = None) -> bool:
        """Put pending bytes into the pipe: what it takes now, or (with a deadline) all of them
        by then. False when the writer's end is gone or the deadline passed."""
        fd = self.proc.stdin.fileno()
        while self.pending:
            try:
                self.pending = self.pending[os.write(fd, self.pending):]
            except BlockingIOError:
                left = None if deadline is None else deadline - time.monotonic()
                if left is None or left <= 0 or not select.select([], [fd], [], left)[1]:
                    return left is None
            except OSError:  # BrokenPipeError: it died; drain() replaces it and sends again
                return False
        return True

    def _early_phase(self) -> bool:
        """The first writer is still importing MLflow, within the bound a drain would wait."""
        return (self.first and not self._is_ready() and self.proc.poll() is None
                and time.monotonic() - self.started < writer_timeout())

    def put(self, chunk: list[tuple]) -> None:
        if self._early_phase():
            if self.early is None:
                self.early = ThreadWriter(self.client, self.run_id)
            self.early.put(chunk)
            return
        line = (json.dumps(chunk) + "\n").encode()
        self.unacked.append(line)
        if self._is_ready():
            self.pending += line
            self._send()

    def _drain_once(self, timeout: float) -> str | None:
        """The writer's reply to `drain`; None if it gave none within the timeout."""
        deadline = time.monotonic() + timeout
        if not self._is_ready():
            if not self.unacked and self._early_phase():  # all of it went to `early` (drained by the caller)
                return "ok"
            if not self._is_ready(max(0.0, deadline - time.monotonic())):
                return None if self.proc.poll() is None else f"the metric writer process exited ({self.proc.wait()})"
        self.pending += b"drain\n"
        if not self._send(deadline):
            return None if self.proc.poll() is None else f"the metric writer process exited ({self.proc.wait()})"
        if not select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return None
        return self.proc.stdout.readline().decode().strip() or f"the metric writer process exited ({self.proc.wait()})"

    def drain(self) -> None:
        if self.early is not None:
            self.early.drain()
        timeout = writer_timeout()
        reply = self._drain_once(timeout)
        if reply is None or (reply != "ok" and self.proc.poll() is not None):  # frozen (killed here) or dead
            self.proc.kill()
            self.proc.wait()
            self.first = False  # a new writer gets everything not yet acknowledged once ready (a batch
            self._start()  # stored twice by a writer that died mid-drain is the rare price)
            reply = self._drain_once(timeout)
            if reply is None:
                self.proc.kill()
                reply = (f"the metric writer gave no answer for {timeout:.0f} s, twice (a store stuck on a lock "
                         "or an unreachable file system?)")
        if reply != "ok":
            raise _write_failed(reply)
        self.unacked.clear()

    def stop(self) -> None:
        if not self.closed:
            self.closed = True
            if self.early is not None:
                self.early.stop()
            if not self.unacked:  # everything stored and acknowledged: no need to wait ~1 s for its exit
                self.proc.kill()
                self.proc.wait()
                return
            if not self.ready:  # it gets what it has not yet been sent (stored once it is ready)
                self.pending = b"".join(self.unacked)
                self._send(time.monotonic() + 5)
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
