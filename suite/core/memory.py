"""The C allocator's settings for processes the suite owns (`python -m suite ...`).

glibc hands every block over 32 MB to mmap and returns it on free, so each large tensor of a
step or an evaluation (distance matrices, feature batches) is fresh memory, zeroed page by page
by the kernel: measured on a Fashion-MNIST run's final evaluation, 3.7M page faults and ~11-25 s
of system time for 20 s of training. Kept in the heap instead, freed blocks are reused.
Only for a process the suite owns: a host that imports the suite keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # <malloc.h>


def keep_freed_memory() -> bool:
    """Large blocks from the heap, and freed memory kept for reuse (glibc only; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, their own policy stays
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(M_TOP_PAD, 64 << 20))
