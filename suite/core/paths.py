"""Where the suite keeps things. One folder (`SUITE_HOME`, default ./suite_runs) holds the local
MLflow store, local checkpoint copies and caches, so `python -m suite ui` finds every run."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from suite.core.errors import ConfigError, SuiteError


def home() -> Path:
    path = Path(os.environ.get("SUITE_HOME", "suite_runs")).resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"SUITE_HOME={path} is a file, not a folder: point SUITE_HOME at a folder")
    return path


def sqlite_uri(path: Path) -> str:
    """An SQLite URL for `path`. '#', '%' and '?' cannot be carried: SQLAlchemy would cut or decode
    the path there while MLflow creates folders from it undecoded, so the store would land elsewhere."""
    if bad := sorted({c for c in str(path) if c in "#%?"}):
        raise ConfigError(f"the store path {path} holds {' and '.join(repr(c) for c in bad)}, which an SQLite URL "
                          "cannot carry: set SUITE_HOME (or --storage) to a folder without them")
    return f"sqlite:///{path}"


def sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):])


def cache_dir(*parts: str) -> Path:
    """Caches (classifiers, reference statistics): $SUITE_CACHE, default SUITE_HOME/cache."""
    root = Path(os.environ["SUITE_CACHE"]).resolve() if os.environ.get("SUITE_CACHE") else home() / "cache"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_id: str) -> Path:
    return home() / "runs" / run_id


def data_roots(data_root: str | os.PathLike | None) -> list[Path]:
    """Folders searched for local datasets: --data-root, then $SUITE_DATA_ROOT, then ~/data."""
    roots = [data_root, os.environ.get("SUITE_DATA_ROOT"), Path.home() / "data"]
    return [Path(r).expanduser() for r in roots if r]


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else an SQLite store under SUITE_HOME."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    uri = sqlite_uri(home() / "mlflow.db")  # refused before anything is created
    home().mkdir(parents=True, exist_ok=True)
    return uri


def shown_uri(uri: str | None = None) -> str:
    """A store's URI as it may be shown or saved: any password in it masked."""
    uri = tracking_uri() if uri is None else uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def artifact_root() -> str:
    return (home() / "artifacts").as_uri()


@contextmanager
def exclusive(lock: Path, timeout: float, what: str):
    """One process at a time (on this host) does `what` — create a store, build a cache — the
    others wait for it, at most `timeout` seconds, then say so in one line."""
    import fcntl  # POSIX only, like the rest of the process handling

    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SuiteError(f"another process has been {what} for {timeout:.0f} s; is it stuck? "
                                     f"(its lock: {lock})") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
