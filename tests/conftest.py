"""Shared fixtures: an isolated SUITE_HOME (local SQLite MLflow store) per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """Domain classifiers and reference statistics are cached once per test session, shared by
    its xdist workers (or in $SUITE_TEST_CACHE, to keep them between local runs)."""
    path = os.environ.get("SUITE_TEST_CACHE")
    if not path and os.environ.get("PYTEST_XDIST_WORKER"):  # one cache for all workers of this session: its
        path = str(tmp_path_factory.getbasetemp().parent / "suite_cache")  # writes are atomic, training is locked
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
