"""Shared fixtures: an isolated SUITE_HOME (local SQLite MLflow store) per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    # The tiers run one test process per core (xdist), and many tests start training processes
    # of their own: one intra-op thread each, so they share the cores instead of oversubscribing
    # them (measured: three stop tests 209 s -> 125 s wall on 2 cores). The processes the tests
    # start inherit it; an explicit setting wins. Not for `suite bench`: it times the threads a
    # user's run gets.
    if not config.getoption("benchmark_only", False):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if "torch" in sys.modules:  # read at torch's import: too late for this process otherwise
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from suite.core import memory

    memory.keep_freed_memory()  # test processes evaluate as `python -m suite` does (its allocator settings)


@pytest.fixture(scope="session", autouse=True)
def shared_cache(request, tmp_path_factory):
    """Domain classifiers and reference statistics, cached in pytest's cache folder: shared by the
    xdist workers (writes are atomic, training is locked) and by the default and slow tiers, so
    each is built once per checkout. Every entry is keyed by its data and settings, so a changed
    setting never reuses a stale one. $SUITE_TEST_CACHE puts it elsewhere."""
    path = os.environ.get("SUITE_TEST_CACHE")
    if not path and getattr(request.config, "cache", None) is not None:
        path = str(request.config.cache.mkdir("suite_cache"))
    path = path or str(tmp_path_factory.mktemp("suite_cache"))
    old = os.environ.get("SUITE_CACHE")
    os.environ["SUITE_CACHE"] = path
    yield Path(path)
    if old is None:
        os.environ.pop("SUITE_CACHE", None)
    else:
        os.environ["SUITE_CACHE"] = old


@pytest.fixture
def suite_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "suite_home"
    monkeypatch.setenv("SUITE_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path))  # keep ~/data out of dataset lookups
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SUITE_DATA_ROOT", raising=False)
    return home


@pytest.fixture
def mlflow_client(suite_home):
    from mlflow.tracking import MlflowClient

    from suite.core import paths

    return MlflowClient(tracking_uri=paths.tracking_uri())



@pytest.fixture
def registries():
    """What a test's plugins register is gone after it: every registry as it was."""
    from evaluation import features
    from evaluation import metrics as metric_table
    from recipes import registry
    from suite import data, plugins

    tables = [registry.FAMILIES, registry.RECIPES, metric_table.METRICS, features.EXTRACTORS, data.DATASETS,
              plugins.LOADED, plugins.MODULES]
    saved = [dict(t) for t in tables]
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)
