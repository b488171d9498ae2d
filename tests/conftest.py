"""Shared fixtures: an isolated SUITE_HOME (local SQLite MLflow store) per test."""

from __future__ import annotations

from pathlib import Path

import pytest


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

    from suite import paths

    return MlflowClient(tracking_uri=paths.tracking_uri())

