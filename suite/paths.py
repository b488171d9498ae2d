"""Where the suite keeps things. One folder (`SUITE_HOME`, default ./suite_runs) holds the local
MLflow store, local checkpoint copies and caches, so `python -m suite ui` finds every run."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def home() -> Path:
    return Path(os.environ.get("SUITE_HOME", "suite_runs")).resolve()


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
    home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home() / 'mlflow.db'}"


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
