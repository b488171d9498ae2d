"""A stored training run read back: its config.json (refused in one line if it is not a
training run's) and its checkpoints, local copy first.

    python -m suite evaluate RUN_ID --checkpoint best
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from recipes import registry
from recipes.config import BaseConfig
from suite import plugins
from suite.core import checkpoint, paths
from suite.core.errors import CheckpointError, ConfigError
from suite.core.tracking import Tracker


def training_config(tracker: Tracker, allow_changed_plugin: bool = True) -> dict:
    """A training run's saved config.json; anything else (a study's or benchmark's parent, a
    classifier run, a hand-edited file) is refused in one line, and so is a run of a plugin family
    whose plugin is not loaded (or, unless allowed, whose source changed since the run started)."""
    saved = tracker.config()
    plugins.check_unchanged(tracker.run().data.tags, allow_changed_plugin)
    ok = isinstance(saved, dict) and isinstance(saved.get("config"), dict) and saved.get("family") in registry.FAMILIES \
        and isinstance(saved.get("recipe"), str)
    if not ok:
        tags = tracker.run().data.tags
        kind = tags.get("suite.kind") or ("classifier" if "suite.classifier" in tags else "")
        raise ConfigError(f"run {tracker.run_id} is not a training run of the suite"
                          f"{f' (it is a {kind} run)' if kind else ''}: only training runs can be resumed or evaluated")
    return saved


def rebuild_config(saved: dict, values: dict | None = None) -> BaseConfig:
    try:
        return registry.config_from_dict(saved["family"], values if values is not None else saved["config"])
    except (TypeError, ValueError) as e:  # a config.json edited by hand
        raise ConfigError(f"the run's config.json does not hold a valid {saved['family']} config: {e}") from None


def stored_checkpoint(tracker: Tracker, which: str, missing: str) -> dict:
    """checkpoints/<which>.pt of a run: the local copy, else the run's artifact."""
    local = paths.run_dir(tracker.run_id) / "checkpoints" / f"{which}.pt"
    if local.is_file():
        return checkpoint.load(local)
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download(f"checkpoints/{which}.pt", Path(tmp))
        if path is None:
            raise CheckpointError(f"run {tracker.run_id} has no {missing}")
        return checkpoint.load(path)
