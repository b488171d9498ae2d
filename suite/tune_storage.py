"""Where studies live, and every use of Optuna's internals: storages (RDB, journal), the
atomic claim of a queued trial, heartbeats and stale trials. An Optuna upgrade has this one
file to check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime, timezone

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb.models import TrialModel  # private: the conditional UPDATE of `claim`
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy import update
from sqlalchemy.engine import make_url

from suite import paths, signals, tracking
from suite.errors import ConfigError
from suite.tracking import Tracker

# A worker beats every HEARTBEAT_S seconds; after GRACE_S without a beat its trial is stale.
HEARTBEAT_S = int(os.environ.get("SUITE_TUNE_HEARTBEAT", "5"))
GRACE_S = int(os.environ.get("SUITE_TUNE_GRACE", "30"))


def default_storage() -> str:
    paths.home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{paths.home() / 'optuna.db'}"


def open_storage(url: str):
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat args
    if url.startswith("journal:///"):
        # Journal files are what Optuna recommends for many processes on one file system; they
        # have no heartbeat, so a killed worker's trial is failed by the next resume instead.
        return JournalStorage(JournalFileBackend(url[len("journal://"):]))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors of many kinds
        why = redact(url, str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        raise ConfigError(f"cannot open Optuna storage {safe_url(url)}: {why}") from None
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def safe_url(url: str) -> str:
    if url.startswith(("journal:", "sqlite:")):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


WORKER_SPEC = "SUITE_WORKER_SPEC"  # the environment variable that hands a worker its spec


def worker_spec() -> str:
    if WORKER_SPEC not in os.environ:
        raise ConfigError(f"internal command: started by `suite tune` / `suite benchmark` with {WORKER_SPEC} set")
    return os.environ[WORKER_SPEC]


def redact(url: str, text: str) -> str:
    """`text` with the URL's password masked (an error message that quotes a connection string)."""
    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: nothing it would have put in text
        return text
    return text.replace(str(password), "***") if password else text


def wait_for_parent(study, rename: str, timeout: float = 120) -> str:
    """A joining coordinator waits for the study's owner to queue its trials and create the
    MLflow parent run (the owner sets `mlflow_parent_run_id` last)."""
    t0 = time.time()
    while not (parent := study.user_attrs.get("mlflow_parent_run_id")):
        if time.time() - t0 > timeout:
            raise ConfigError(f"'{study.study_name}' exists but its coordinator never created the MLflow parent run; "
                              f"use another {rename}")
        time.sleep(1)
    return parent


def run_workers(command: str, spec_json: str, args: list[str], workers: int) -> None:
    """`python -m suite COMMAND i ARGS...` for i < workers, waited for. The spec travels in the
    environment (readable by its owner only), never in argv, where `ps` shows a storage password.
    Each worker leads its own process group and gets SIGTERM if this process dies; a stop signal
    here is passed on to each once (each then ends its trial with a checkpoint) and, once all have
    ended, raises Interrupted."""
    env = {**os.environ, WORKER_SPEC: spec_json}
    procs = [subprocess.Popen([sys.executable, "-m", "suite", command, str(i), *args], cwd=os.getcwd(), env=env,
                              **signals.child_options(own_group=True)) for i in range(workers)]

    def forward(signum):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    try:
        with signals.stoppable(on_signal=forward):
            for p in procs:
                p.wait()
            signals.check()
    finally:
        for p in procs:  # only if this process is leaving by an error of its own
            if p.poll() is None:
                signals.stop_group(p)


def claim(study):
    """Atomically take one queued trial (a second claimant is refused), or None."""
    storage = study._storage  # Study exposes no public handle; claiming needs the storage
    rdb = getattr(storage, "_backend", storage)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            won = (_compare_and_set_running(rdb, t._trial_id) if hasattr(rdb, "engine")
                   else storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if won:
            return optuna.Trial(study, t._trial_id)
    return None


def _compare_and_set_running(rdb, trial_id: int) -> bool:
    """WAITING -> RUNNING in one conditional UPDATE.

    Optuna's set_trial_state_values reads with SELECT ... FOR UPDATE, which SQLite ignores: two
    processes can both read WAITING and both "win" (seen in CI: one trial trained twice). A
    single UPDATE ... WHERE state = 'WAITING' is atomic on SQLite, PostgreSQL and MySQL alike,
    and the row count says who won.
    """
    table = TrialModel.__table__
    stmt = (update(table).where(table.c.trial_id == trial_id, table.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING,
                    datetime_start=datetime.now(timezone.utc).replace(tzinfo=None)))  # Optuna stores naive UTC
    with rdb.engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


class Heartbeat:
    """Records a trial's heartbeat every HEARTBEAT_S seconds while it runs (RDB storages)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = None
        if hasattr(storage, "get_heartbeat_interval") and storage.get_heartbeat_interval() is not None:
            self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                pass
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread:
            self.thread.join()


def fail_stale(study) -> None:
    """Trials whose worker stopped beating are failed; the retry callback queues them again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def heartbeat(study, trial) -> Heartbeat:
    """A heartbeat for one claimed trial (Study and Trial expose no public storage handle)."""
    return Heartbeat(study._storage, trial._trial_id)


def close_killed_runs(study) -> None:
    """A trial whose worker died (failed as stale) leaves its MLflow run RUNNING: end it as
    KILLED, saying so, before the trial trains again in a new run."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id and tracking.get_run(run_id).info.status == "RUNNING":
            Tracker(run_id).finish("KILLED", "its worker stopped sending heartbeats; the trial was queued again")
