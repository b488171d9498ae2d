"""The only module that talks to MLflow.

One experiment per recipe; params = the flattened config; tags `suite.*`; metrics buffered and
sent in batches by a background writer (a helper process for a local SQLite store, a thread for
a tracking server) so logging never dominates a training step.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import suite
from suite.core import paths
from suite.core.errors import TrackingError
from suite.core.metric_writer import ProcessWriter, ThreadWriter, quiet_mlflow, writer_timeout

MAX_BUFFER = 1000  # MLflow's log_batch limit on metrics per call
LEASE_TAG = "suite.writer"  # "HOST PID:START EXPIRES": who trains the run, until when
LEASE_S = 120.0  # a writer on another host that stops renewing is taken for dead after this
LEASE_SETTLE_S = 0.5
# Artifact download bars would break the one-line-error contract and clutter logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# With a tracking server MLflow writes "View run ... at: URL" to stdout when a run ends, which
# breaks `--json` output and the run id alone on the last line of `suite run`.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


SYSTEM_METRICS_S = 10.0  # sampling interval of MLflow's system metrics
SYSTEM_STOP_S = 2.0  # the longest a run's end waits for their last write (a stop must stay prompt)
STORE_INIT_S = 120.0  # how long a process waits for another one that is creating the store
_ready: set[str] = set()  # stores this process has opened (their schema exists and is current)


def client():
    from mlflow.tracking import MlflowClient  # heavy: mlflow takes ~1 s to import; only commands that log pay it

    quiet_mlflow()
    uri = paths.tracking_uri()
    check_reachable(uri)
    if not uri.startswith("sqlite:///") or uri in _ready:
        return MlflowClient(tracking_uri=uri)
    db = paths.sqlite_path(uri)  # two first uses at once race in MLflow's schema creation:
    with paths.exclusive(db.with_name(db.name + ".init-lock"), STORE_INIT_S, f"setting up the tracking store {db}"):
        c = MlflowClient(tracking_uri=uri)
        c.search_experiments(max_results=1)  # creates or migrates the schema, one process at a time
    _ready.add(uri)
    return c


def check_reachable(uri: str) -> None:
    """Fail in one line, fast, instead of MLflow's minutes of retries."""
    if uri.startswith(("http://", "https://")):
        import requests  # only for a tracking server

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except Exception as e:  # noqa: BLE001 - any failure means unreachable
            raise TrackingError(f"tracking server {paths.shown_uri(uri)} is unreachable ({type(e).__name__})") from None
    elif uri.startswith("sqlite:///"):
        db = paths.sqlite_path(uri)
        folder = db.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"cannot create the tracking store folder {folder}: {e.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking store folder {folder} is not writable")
        check_sqlite(db)


_checked: set[Path] = set()  # store files found whole in this process (client() runs per read)


def check_sqlite(db: Path) -> None:
    """A store file that is not a whole SQLite database is refused before MLflow touches it."""
    if db in _checked or not db.is_file() or db.stat().st_size == 0:
        return  # checked already, or MLflow creates it
    import sqlite3  # only local stores need it

    try:
        with open(db, "rb") as f:
            if f.read(16) != b"SQLite format 3\0":
                raise sqlite3.DatabaseError("file is not a database")
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise TrackingError(f"the tracking store {db} is not a readable SQLite database ({e}): truncated or "
                            "corrupt; restore it from a backup or set SUITE_HOME to another folder") from None
    _checked.add(db)


def store_error(e: BaseException) -> str | None:
    """The one line for a store that breaks mid-command (a corrupt page found by a query)."""
    text = str(e)
    for needle in ("database disk image is malformed", "file is not a database", "unable to open database file"):
        if needle in text:
            return f"the tracking store {paths.shown_uri()} is unreadable ({needle}): restore it or set SUITE_HOME elsewhere"
    return None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags() -> dict[str, str]:
    import mlflow  # heavy: mlflow takes ~1 s to import; only commands that log pay it
    import torch  # heavy: the foundation does not need torch otherwise
    import torchvision  # heavy: importing torchvision costs ~1 s

    return {
        "suite.git_commit": git_commit(),
        "suite.version": suite.__version__,
        "suite.torch_version": torch.__version__,
        "suite.torchvision_version": torchvision.__version__,
        "suite.mlflow_version": mlflow.__version__,
        "suite.python_version": platform.python_version(),
        "suite.host": platform.node(),
    }


def experiment_id(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    # A local store keeps artifacts under SUITE_HOME; a server decides for itself.
    location = None if paths.tracking_uri().startswith("http") else f"{paths.artifact_root()}/{name}"
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another process created it first
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# --------------------------------------------------------------------------- reading (reports)


def get_run(run_id: str):
    c = client()
    try:
        return c.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises several types for a missing run
        raise TrackingError(f"no run with id '{run_id}' in {paths.shown_uri()}") from None


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client().get_metric_history(run_id, key))


def list_artifacts(run_id: str, path: str = "") -> list[str]:
    out = []
    for f in client().list_artifacts(run_id, path or None):
        out += list_artifacts(run_id, f.path) if f.is_dir else [f.path]
    return out


def download_artifact(run_id: str, path: str, dst: Path) -> Path | None:
    try:
        return Path(client().download_artifacts(run_id, path, str(dst)))
    except Exception:  # noqa: BLE001 - absent artifact
        return None


def experiment_runs(name: str, filter_string: str = ""):
    """Runs of one experiment (as MLflow Run objects), newest first."""
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is None:
        raise TrackingError(f"no experiment named '{name}' in {paths.shown_uri()}")
    return c.search_runs([exp.experiment_id], filter_string, max_results=5000)


def runs_frame(experiment_ids: list[str], filter_string: str = ""):
    """Runs as a pandas DataFrame with mlflow.search_runs' columns (run_id, experiment_id, status,
    start_time, end_time, artifact_uri, params.*, metrics.*, tags.*). Built from the client:
    mlflow.search_runs needs mlflow.set_tracking_uri, which also rewrites the host process's
    MLFLOW_TRACKING_URI — a library call must leave its host's environment alone."""
    import pandas as pd  # only the tables need it

    rows = []
    for run in client().search_runs(experiment_ids, filter_string, max_results=5000) if experiment_ids else []:
        info = run.info
        rows.append({"run_id": info.run_id, "experiment_id": info.experiment_id, "status": info.status,
                     "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True),
                     "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else None,
                     "artifact_uri": info.artifact_uri,
                     **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
                     **{f"params.{k}": v for k, v in run.data.params.items()},
                     **{f"tags.{k}": v for k, v in run.data.tags.items()}})
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "experiment_id", "status", "start_time", "end_time",
                                                          "artifact_uri"])


def find_runs(filter_string: str):
    """Runs in any experiment matching a filter (e.g. a study's parent run by tag)."""
    c = client()
    ids = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(ids, filter_string, max_results=5000) if ids else []


class Tracker:
    """One MLflow run: buffered metrics, images, artifacts, and its final status."""

    def __init__(self, run_id: str, c=None):
        self.client = c or client()
        self.run_id = run_id
        self._buffer: list = []
        self._writer: ThreadWriter | ProcessWriter | None = None
        self._system = None  # MLflow's SystemMetricsMonitor while this process trains the run
        self._lock = None  # the open lock file while this process trains the run
        self._lease_token: str | None = None  # "HOST PID:START" while it holds the lease
        self._renewed = 0.0
        self.resume_hint: str | None = None  # the command that resumes this run, named in a failure's reason

    # -- creation
    @classmethod
    def create(cls, experiment: str, run_name: str, params: dict, tags: dict, config: dict,
               parent_run_id: str | None = None) -> Tracker:
        from mlflow.entities import Param  # heavy: mlflow takes ~1 s to import; only commands that log pay it

        c = client()
        exp_id = experiment_id(c, experiment)
        # str: the REST store (a tracking server) refuses any other type, where sqlite would convert
        all_tags = {k: str(v) for k, v in {**environment_tags(), **tags}.items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = c.create_run(exp_id, run_name=run_name, tags=all_tags)
        self = cls(run.info.run_id, c)
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            c.log_batch(self.run_id, params=items[i : i + 100])
        self.log_text(json.dumps(config, indent=2), "config.json")
        return self

    @classmethod
    def attach(cls, run_id: str) -> Tracker:
        c = client()
        try:
            c.get_run(run_id)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing run
            raise TrackingError(f"no run with id '{run_id}' in {paths.shown_uri()}") from None
        return cls(run_id, c)

    # -- one run, one writer
    def acquire(self) -> None:
        """Take the run for this process: a lock file on this host (released by the kernel however
        the process ends) and a lease in the run's tags, renewed while it trains, for writers on
        other hosts sharing a tracking server. A run held by a live writer is refused in one line."""
        import fcntl  # POSIX only, like the rest of the process handling

        path = paths.run_dir(self.run_id) / ".writer.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(path, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise TrackingError(f"run {self.run_id} is being trained by another process on this host; "
                                "one run, one writer: wait for it to end (or stop it) before resuming") from None
        if paths.tracking_uri().startswith("sqlite:"):
            return  # a local file store: every writer is on this host, and the lock says it all
        held = self.client.get_run(self.run_id).data.tags.get(LEASE_TAG, "")
        host, _, rest = held.partition(" ")
        until = float(rest.split()[-1]) if rest else 0.0
        if host and host != platform.node() and until > time.time():
            self.release()
            raise TrackingError(f"run {self.run_id} is being trained on host {host} (its lease runs {until - time.time():.0f} s "
                                "more); one run, one writer: resume it once that writer has ended")
        self._lease_token = f"{platform.node()} {os.getpid()}:{time.time():.3f}"
        self.renew(force=True)
        time.sleep(LEASE_SETTLE_S)  # two hosts that wrote at once: the last write holds it
        if not self.client.get_run(self.run_id).data.tags.get(LEASE_TAG, "").startswith(self._lease_token):
            self.release()
            raise TrackingError(f"run {self.run_id} was taken by another writer at the same moment; one run, one writer")

    def renew(self, force: bool = False) -> None:
        """Extend the lease (at most every LEASE_S / 4 seconds: one tag write)."""
        now = time.time()
        if self._lease_token and (force or now - self._renewed > LEASE_S / 4):
            self.client.set_tag(self.run_id, LEASE_TAG, f"{self._lease_token} {now + LEASE_S:.0f}")
            self._renewed = now

    def release(self) -> None:
        if self._lease_token:
            try:
                self.client.set_tag(self.run_id, LEASE_TAG, f"{self._lease_token} 0")
            except Exception:  # noqa: BLE001 - the lease then simply expires
                pass
            self._lease_token = None
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def mark_running(self) -> None:
        """Resumed: RUNNING again; how it stopped last time is kept as `suite.previous_stop`."""
        tags = self.client.get_run(self.run_id).data.tags
        if reason := tags.get("suite.failure_reason"):
            self.client.set_tag(self.run_id, "suite.previous_stop", reason[:5000])
        for key in ("suite.failure_reason", "suite.stop_signal", "suite.resume_command"):
            if key in tags:
                self.client.delete_tag(self.run_id, key)
        self.client.update_run(self.run_id, status="RUNNING")

    # -- reading back
    def run(self):
        return self.client.get_run(self.run_id)

    def config(self) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(self.run_id, "config.json", tmp)
            except Exception:  # noqa: BLE001
                raise TrackingError(f"run {self.run_id} has no config.json: not a suite run") from None
            try:
                return json.loads(Path(path).read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise TrackingError(f"run {self.run_id}'s config.json is not valid JSON ({str(e)[:80]}): "
                                    "it was changed after the run wrote it") from None

    def last_step(self, key: str) -> int:
        """Highest step logged for `key` (-1 if none): a resumed run does not log these again."""
        history = self.client.get_metric_history(self.run_id, key)
        return max((m.step for m in history), default=-1)

    def download(self, artifact_path: str, dst: Path) -> Path | None:
        try:
            return Path(self.client.download_artifacts(self.run_id, artifact_path, str(dst)))
        except Exception:  # noqa: BLE001 - absent artifact
            return None

    # -- writing
    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_metrics(self, step: int, values: dict[str, float], timestamp: int | None = None) -> None:
        ts = timestamp or int(time.time() * 1000)
        self._buffer.extend((k, float(v), ts, step) for k, v in values.items())
        if len(self._buffer) >= MAX_BUFFER:
            self.flush()

    def log_rows(self, keys: list[str], steps: list[int], rows: list[list[float]]) -> None:
        """One row of values per step (a flush of the training loop's buffer), with one timestamp."""
        ts = int(time.time() * 1000)
        self._buffer.extend((k, v, ts, step) for step, row in zip(steps, rows) for k, v in zip(keys, row))
        if len(self._buffer) >= MAX_BUFFER:
            self.flush()

    def watch_system(self) -> None:
        """MLflow's own system metrics (CPU, memory, disk, network; GPU where pynvml finds one)
        under system/ every SYSTEM_METRICS_S, continuing their steps on resume."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # heavy: training runs only

        if self._system is None:
            self._system = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_S, resume_logging=True,
                                                tracking_uri=paths.tracking_uri())
            self._system.start()

    def _stop_system(self) -> None:
        """MLflow's finish() joins its thread without a bound: a store that hangs must not hang the run."""
        if self._system is not None:
            stopping = threading.Thread(target=self._system.finish, daemon=True)
            stopping.start()
            stopping.join(SYSTEM_STOP_S)
            self._system = None

    def start_writer(self, wait: bool = False) -> None:
        """Start the background metric writer now (a training run does, so it is warm by the
        first flush): a separate process for a local SQLite store, whose per-value ORM work
        would otherwise hold this process's GIL, a thread for a tracking server. `wait`: until the
        helper process has MLflow loaded (what `suite bench` times is the writer, not its import)."""
        if self._writer is None:
            mode = os.environ.get("SUITE_METRIC_WRITER") or (
                "thread" if paths.tracking_uri().startswith(("http://", "https://")) else "process")
            self._writer = ProcessWriter(self.run_id, self.client) if mode == "process" else ThreadWriter(self.client, self.run_id)
        if wait and isinstance(self._writer, ProcessWriter) and not self._writer.wait_ready(writer_timeout()):
            raise TrackingError("the metric writer process did not start within "
                                f"{writer_timeout():.0f} s (SUITE_WRITER_TIMEOUT_S)")

    def flush(self, wait: bool = False) -> None:
        """Hand buffered metrics to the background writer; `wait` until they are stored."""
        if self._buffer and self._writer is None:
            self._writer = ThreadWriter(self.client, self.run_id)
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_BUFFER], self._buffer[MAX_BUFFER:]
            self._writer.put(chunk)
        if wait and self._writer is not None:
            self._writer.drain()

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        self.client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """End the run. A run whose values were not all stored is never FINISHED: it ends FAILED
        with the reason (resumable from its checkpoint) and the error is raised."""
        error, asked = None, status
        self._stop_system()
        try:
            self.flush(wait=True)
        except TrackingError as e:
            error = e
            status = "FAILED" if status == "FINISHED" else status
            reason = f"{reason + '; ' if reason else ''}{e}" + (f"; resume with: {self.resume_hint}" if self.resume_hint else "")
        finally:
            if self._writer is not None:
                self._writer.stop()
        try:
            if reason:
                self.client.set_tag(self.run_id, "suite.failure_reason", reason[:5000])
            self.client.set_terminated(self.run_id, status=status)
        except Exception:
            if not self.deleted():
                raise
            raise self._end_deleted() from None
        finally:
            self.release()
        if error is not None and asked == "FINISHED":
            raise error

    def deleted(self) -> bool:
        """Was the run deleted (the MLflow UI's Delete, `MlflowClient.delete_run`) meanwhile?"""
        try:
            return self.client.get_run(self.run_id).info.lifecycle_stage == "deleted"
        except Exception:  # noqa: BLE001 - gone altogether (garbage-collected)
            return True

    def _end_deleted(self) -> TrackingError:
        """A run deleted while it trained keeps the user's deletion, with a terminal status and the
        reason (restored for a moment to write them: MLflow refuses writes to deleted runs)."""
        why = "deleted in MLflow while it trained"
        try:
            self.client.restore_run(self.run_id)
            self.client.set_tag(self.run_id, "suite.failure_reason", why)
            self.client.set_terminated(self.run_id, status="KILLED")
            self.client.delete_run(self.run_id)
        except Exception:  # noqa: BLE001 - purged for good: nothing left to mark
            pass
        resume = f" and resume with: {self.resume_hint}" if self.resume_hint else ""
        return TrackingError(f"run {self.run_id} was {why}; it stays deleted (marked KILLED). To continue it, restore "
                             f"it (MLflow UI, or `mlflow runs restore --run-id {self.run_id}`){resume}")


class Follower:
    """What a rank other than 0 holds of its run (suite/core/ranks.py): the run id, and no store.
    Rank 0 alone writes to MLflow, so every write here is dropped and nothing is locked."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.resume_hint: str | None = None

    def last_step(self, key: str) -> int:
        return -1

    def _nothing(self, *args, **kwargs) -> None:
        return None

    acquire = renew = release = mark_running = watch_system = start_writer = flush = _nothing
    set_tags = log_metrics = log_rows = log_image = log_text = log_artifact = finish = _nothing
