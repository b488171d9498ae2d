"""The global random state: saved with every checkpoint, and kept out of reach of work that must
not change training (evaluation, sampling a grid, building a classifier).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Whatever runs inside leaves the global RNG (CPU and CUDA) as it found it, so a run is the
    same with or without evaluation and resumes bit-for-bit."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
