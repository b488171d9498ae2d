"""What reports read from a run: its artifacts as images or JSON, and frames as table rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from reports.document import Image
from suite.core import tracking


def png(array: np.ndarray, caption: str, alt: str = "") -> Image:
    return Image.from_array(array, caption, alt)


def artifact_png(run_id: str, path: str, tmp: Path, caption: str) -> Image | None:
    local = tracking.download_artifact(run_id, path, tmp)
    return Image(local.read_bytes(), caption, path) if local else None


def json_artifact(run_id: str, path: str, tmp: Path) -> dict | None:
    local = tracking.download_artifact(run_id, path, tmp)
    return json.loads(local.read_text()) if local else None


def rows(frame) -> list[list]:
    """A pandas frame's values as table rows, NaN shown as empty."""
    return [[None if (isinstance(v, float) and math.isnan(v)) else v for v in row] for row in frame.values.tolist()]
