"""Checkpoints and caches: written atomically (temp file, fsync, rename), read with
weights_only=True, and verified on load: the file holds its payload's SHA-256, so bytes changed in
place (bit rot, a bad copy) are found before any weight is trusted.

    python -m suite run --resume RUN_ID    # a damaged checkpoints/last.pt is refused in one line
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import torch

from suite.core import signals
from suite.core.errors import CheckpointError


FORMAT = "suite-verified-v1"  # {"format", "sha256", "payload": torch.save bytes of the object}


def save(obj: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    payload = io.BytesIO()
    torch.save(obj, payload)
    payload = payload.getvalue()
    signals.TEMPORARY.add(str(tmp))  # a hard exit mid-write removes it
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        signals.TEMPORARY.discard(str(tmp))
    return path


def load(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    obj = _torch_load(path, path, map_location)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        payload = obj.get("payload")
        if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != obj.get("sha256"):
            raise CheckpointError(f"checkpoint {path} is damaged: its content does not match the SHA-256 it was "
                                  "written with (changed on disk or in a copy); use another copy (the run's MLflow "
                                  "artifact, checkpoints/best.pt) or start the run again")
        obj = _torch_load(io.BytesIO(payload), path, map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a suite checkpoint")
    return obj


def _torch_load(source, path: Path, map_location):
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        if refused_pickle(e):
            raise CheckpointError(f"checkpoint {path} holds Python objects besides tensors; refused "
                                  "(checkpoints load with weights_only=True)") from None
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_first_line(e)})") from None


def refused_pickle(e: Exception) -> bool:
    """torch.load(weights_only=True) met objects it will not build (a pickle that could run code)."""
    return isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0].split(". ")[0][:160] if str(e).strip() else type(e).__name__


def load_cache(path: Path, keys: tuple[str, ...] = ()) -> dict | None:
    """A cache file (classifier, reference statistics), or None when it is absent or unusable:
    a corrupt or foreign cache file is removed, said in one note, and rebuilt by the caller."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = load(path)
        if all(k in obj for k in keys):
            return obj
        why = f"lacks {', '.join(k for k in keys if k not in obj)}"
    except CheckpointError as e:
        why = str(e).replace(f"checkpoint {path} ", "").split(" (")[0]
    print(f"note: cache file {path} is unusable ({why}); rebuilding it", file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)
    return None
