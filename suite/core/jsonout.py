"""JSON that is valid whatever the values: what the CLI prints and the artifacts the suite writes.

    python -m suite evaluate --samples s.npy --dataset digits --json
"""

from __future__ import annotations

import json
import math


def dumps(obj, indent: int | None = None) -> str:
    """A non-finite number becomes null, and `non_finite` says which ones and what they were (a
    metric that could not be computed from these samples, an infinite min_detectable)."""
    bad: dict[str, str] = {}

    def clean(v, where=""):
        if isinstance(v, dict):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / torch scalars
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            bad[where] = str(v)
            return None
        return v

    out = clean(obj)
    if bad and isinstance(out, dict):
        out["non_finite"] = {k: f"{v}: not computable from these samples" for k, v in bad.items()}
    return json.dumps(out, indent=indent, allow_nan=False, default=str)
