"""User-facing errors. The CLI catches `SuiteError` once and prints one line (exit 2)."""

import errno
import re


class SuiteError(Exception):
    """Base class: the message is the single line the user sees."""

    exit_code = 2


class ConfigError(SuiteError):
    """Unknown recipe, unknown or mistyped `--set` key, invalid hyperparameter."""


class PluginError(ConfigError):
    """A plugin that cannot be loaded or breaks the contract of what it registers."""


class DatasetNotFound(SuiteError):
    """A dataset is not present locally (and no download was asked for)."""


class DataError(SuiteError):
    """Malformed input data: wrong shape, NaN, empty, unreadable image folder."""


class CheckpointError(SuiteError):
    """Missing, truncated or corrupt checkpoint."""


class TrackingError(SuiteError):
    """Tracking store unreachable, unknown run id, run of another recipe."""


class TrainingDiverged(SuiteError):
    """A loss became NaN/inf; the run is marked FAILED, the last good checkpoint is kept."""

    exit_code = 1


class StopRun(SuiteError):
    """A run stopped on purpose before its end (an Optuna trial pruned): marked KILLED."""

    exit_code = 1


class Stopped(SuiteError):
    """A stop signal (SIGTERM, SIGINT, SIGUSR1) ended a run after a checkpoint: marked KILLED,
    resumable. Exits 128 + the signal number, as a shell reports a process the signal ended."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class RankLost(SuiteError):
    """One of several processes of a run died or stopped answering (torch.distributed): the run is
    FAILED with this reason, resumable from its last checkpoint."""

    exit_code = 1


class CellsMissing(SuiteError):
    """A benchmark ended with cells that failed: its board covers the others (parent run FAILED);
    the same command trains only the missing cells again."""

    exit_code = 1


class DiskFull(SuiteError):
    """No space left where a checkpoint, artifact or the store is written: the run is FAILED with
    this reason, half-written files removed, resumable once space is freed."""


def disk_full(e: BaseException) -> bool:
    """Is this the file system running out of space (however the library wrapping the write says it)?"""
    seen = set()
    while e is not None and id(e) not in seen:  # torch.save reports a failed write as a RuntimeError on top of it
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if any(s in text for s in ("no space left on device", "database or disk is full", "disk quota exceeded")):
            return True
        e = e.__cause__ or e.__context__
    return False


class OutOfMemory(SuiteError):
    """An allocation the configuration asks for cannot be made (image_size, n_sample, batch_size)."""


def out_of_memory(e: BaseException) -> str | None:
    """How much memory a failed allocation asked for, in words; None if `e` is something else."""
    text = str(e)
    if not (isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    asked = re.search(r"tried to allocate ([\d.]+) ?([KMGT]i?B|bytes)", text)
    if asked is None:
        return "an allocation failed: not enough memory"
    value, unit = float(asked.group(1)), asked.group(2)
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    return f"one allocation needs {value * scale.get(unit, 1) / 2**30:,.1f} GiB, more than this machine can give"
