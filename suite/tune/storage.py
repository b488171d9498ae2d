"""Where studies live, and every use of Optuna's internals: storages (RDB, journal), the
atomic claim of a queued trial, heartbeats and stale trials. An Optuna upgrade has this one
file to check.
"""

from __future__ import annotations

import os
import platform
import secrets
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

from suite import plugins
from suite.core import paths, signals, tracking
from suite.core.errors import ConfigError, Stopped
from suite.core.tracking import Tracker

# A worker beats every HEARTBEAT_S seconds; after GRACE_S without a beat its trial is stale.
HEARTBEAT_S = int(os.environ.get("SUITE_TUNE_HEARTBEAT", "5"))
GRACE_S = int(os.environ.get("SUITE_TUNE_GRACE", "30"))
SCHEMA_RACE = ("already exists", "UNIQUE constraint failed", "database is locked", "duplicate key value")
SCHEMA_RACE_TRIES = 5


def default_storage() -> str:
    uri = paths.sqlite_uri(paths.home() / "optuna.db")
    paths.home().mkdir(parents=True, exist_ok=True)
    return uri


def open_storage(url: str):
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat args
    if url.startswith("journal:///"):
        # Journal files are what Optuna recommends for many processes on one file system; they
        # have no heartbeat, so a killed worker's trial is failed by the next resume instead.
        return JournalStorage(JournalFileBackend(url[len("journal://"):]))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        for attempt in range(SCHEMA_RACE_TRIES):
            try:
                return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
            except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors of many kinds
                text = str(e)
                # Coordinators starting together on a new database race to create its tables: the
                # losers see the winner's half-made schema, and the next try finds it complete.
                if attempt + 1 < SCHEMA_RACE_TRIES and any(m in text for m in SCHEMA_RACE):
                    time.sleep(0.5 + attempt)
                    continue
                why = redact(url, text.splitlines()[0][:200] if text else type(e).__name__)
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


SETUP_ATTR = "setup_by"  # {"host", "pid", "at"}: the coordinator setting a new study up
ABSENT_SETUP_S = 5.0  # a study with no setup mark after this long was abandoned right after its creation


def mark_setup(study) -> None:
    """The creating coordinator says who sets the study up (first thing after creating it)."""
    study.set_user_attr(SETUP_ATTR, {"host": platform.node(), "pid": os.getpid(), "at": time.time()})


def _setup_abandoned(study, waited: float) -> bool:
    mark = study.user_attrs.get(SETUP_ATTR)
    if not mark:
        return waited > ABSENT_SETUP_S
    if mark.get("host") == platform.node():
        try:
            os.kill(int(mark["pid"]), 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
    return time.time() - float(mark.get("at", 0)) > GRACE_S  # setting up takes seconds, not this long


def wait_for_parent(study, rename: str, setup, timeout: float = 120) -> str:
    """A joining coordinator waits for the study's owner to queue its trials and create the MLflow
    parent run (the owner sets `mlflow_parent_run_id` last). An owner that died during the setup
    (killed, host lost) left a half-created study: this coordinator takes the setup over and
    finishes it, so the study name stays usable."""
    t0 = time.time()
    while not (parent := study.user_attrs.get("mlflow_parent_run_id")):
        if _setup_abandoned(study, time.time() - t0):
            mark_setup(study)
            time.sleep(0.5)  # two repairers at once: the last mark wins, the other waits
            if study.user_attrs.get(SETUP_ATTR, {}).get("pid") == os.getpid():
                print(f"note: '{study.study_name}' was left half set up by a coordinator that died; finishing its setup",
                      file=sys.stderr, flush=True)
                return setup()
        if time.time() - t0 > timeout:
            raise ConfigError(f"'{study.study_name}' exists but its coordinator never created the MLflow parent run; "
                              f"use another {rename}")
        time.sleep(1)
    return parent


def joiner_seed() -> int:
    """A sampler seed offset for a coordinator joining a study another one created: its own draws,
    not a repeat of the owner's (which use seed + worker)."""
    return 1000 + secrets.randbelow(2**30)


def run_workers(command: str, spec_json: str, args: list[str], workers: int) -> None:
    """`python -m suite COMMAND i ARGS...` for i < workers, waited for. The spec travels in the
    environment (readable by its owner only), never in argv, where `ps` shows a storage password.
    Each worker leads its own process group and gets SIGTERM if this process dies; a stop signal
    here is passed on to each once (each then ends its trial with a checkpoint) and, once all have
    ended, raises Interrupted."""
    env = {**os.environ, WORKER_SPEC: spec_json}
    if loaded := plugins.loaded_specs():  # workers register the same families, metrics and extractors
        env[plugins.ENV] = loaded
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
        # A worker killed by a signal (OOM) leaves a stale trial that others retry; one that exited
        # with an error line (an objective no evaluation computes) ends the study with it.
        if failed := [f"worker {i} exited {p.returncode}" for i, p in enumerate(procs) if p.returncode > 0]:
            raise ConfigError(f"{'; '.join(failed)}: see its error line above")
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


BEAT_ATTR = "suite_heartbeat"  # journal storages have no heartbeat of their own: a trial system attribute


class Heartbeat:
    """Records a trial's heartbeat every HEARTBEAT_S seconds while it runs: Optuna's own for RDB
    storages, a system attribute of the trial for journal storages (which have none)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.native = hasattr(storage, "get_heartbeat_interval") and storage.get_heartbeat_interval() is not None
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.is_set():
            try:
                if self.native:
                    self.storage.record_heartbeat(self.trial_id)
                else:
                    self.storage.set_trial_system_attr(self.trial_id, BEAT_ATTR, time.time())
            except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                pass
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def fail_stale(study) -> None:
    """Trials whose worker stopped beating are failed and queued again (RDB: Optuna's stale-trial
    check and retry callback; journal: the same, from the trials' own heartbeat attribute)."""
    storage = study._storage  # Study exposes no public handle; the journal case needs the storage
    if hasattr(storage, "get_heartbeat_interval") and storage.get_heartbeat_interval() is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        start = t.datetime_start.timestamp() if t.datetime_start else now  # journal: naive local time
        beat = float(t.system_attrs.get(BEAT_ATTR, start))
        if now - beat > GRACE_S:
            try:
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another coordinator failed it first
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback(max_retry=3)(study, storage.get_trial(t._trial_id))


def heartbeat(study, trial) -> Heartbeat:
    """A heartbeat for one claimed trial (Study and Trial expose no public storage handle)."""
    return Heartbeat(study._storage, trial._trial_id)


def drain_queue(study, run_one, deadline: float | None = None, what: str = "trials") -> None:
    """Claim and run queued trials (`run_one(trial)`) until none is queued or running elsewhere,
    time is up, or a stop signal asks this worker to end: what `suite tune` and `suite benchmark`
    workers do."""
    while deadline is None or time.time() < deadline:
        if signum := signals.requested():
            raise Stopped(f"stopped by {signals.name(signum)} between {what}", signum)
        fail_stale(study)
        close_killed_runs(study)
        trial = claim(study)
        if trial is not None:
            run_one(trial)
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(HEARTBEAT_S)  # another worker's trial: wait for it to finish or go stale


def requeue(study, trial, params: dict, keep: tuple[str, ...], why: str) -> None:
    """A trial stopped by a signal: failed as `interrupted` (not counted) and queued again with its
    parameters and the user attributes named in `keep`, so the next worker trains it from the start."""
    trial.set_user_attr("interrupted", why[:500])
    study.tell(trial, state=TrialState.FAIL)
    attrs = {k: v for k, v in trial.user_attrs.items() if k in keep}
    study.enqueue_trial(params, user_attrs={**attrs, "requeued_from": trial.number})


def stopped(parent_id: str, signum: int, what: str, command: str, which: str) -> Stopped:
    """A coordinator's end after a stop signal: its parent run KILLED, saying how to continue."""
    why = (f"stopped by {signals.name(signum)}: interrupted {what} are queued again; rerun the same "
           f"`{command}` command ({which}) to continue")
    Tracker.attach(parent_id).finish("KILLED", why)
    return Stopped(why, signum)


def close_killed_runs(study) -> None:
    """A trial whose worker died (failed as stale) leaves its MLflow run RUNNING: end it as
    KILLED, saying so, before the trial trains again in a new run."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id and tracking.get_run(run_id).info.status == "RUNNING":
            Tracker(run_id).finish("KILLED", "its worker stopped sending heartbeats; the trial was queued again")
