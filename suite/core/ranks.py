"""Several processes, one run (torch.distributed): who this process is, and the few collectives
a run needs — gradients averaged, batch-norm statistics over the global batch, a stop every rank
agrees on, objects sent from rank 0, generated samples gathered in a fixed order.

    python -m suite run dcgan_fashion --nproc 2                # the suite starts torchrun's agent
    torchrun --nproc-per-node 2 -m suite run dcgan_fashion     # the same run, torchrun typed by hand

The recipe's batch_size stays the global batch: each rank takes its contiguous part of every
global batch and of every global latent draw, so N processes train the model one would (only the
order of the sums differs). Without torchrun `current()` is None and nothing here is used.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import signal
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from suite.core import signals
from suite.core.errors import ConfigError, SuiteError

TIMEOUT_S = 1800  # a collective waits at most this long (SUITE_DIST_TIMEOUT_S): rank 0 evaluating holds the others
_current: Ranks | None = None
_syncing = [False]  # batch-norm statistics are global only inside train_step (see `training`)


def usable_cores() -> int:
    """The cores this process may use (its affinity, not the machine's), which the processes on
    this node share."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launched() -> bool:
    """Started by torchrun (or `--nproc`) as one of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def follower() -> bool:
    """One of several processes, not rank 0 (which alone writes and speaks for the run)."""
    return launched() and os.environ.get("RANK", "0") != "0"


def current() -> Ranks | None:
    return _current


@dataclass
class Ranks:
    rank: int
    world: int
    local_rank: int
    local_world: int
    backend: str
    control: object  # a gloo group for the host-side collectives (stop flags, objects), whatever the backend

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous part of n (n divides by the world size: `prepare` checks it)."""
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)

    def reduce_gradients(self, params) -> None:
        """Average the gradients over the ranks: one all-reduce of one flat buffer per optimizer."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The ranks' mean of a host tensor (logged step values: each rank's loss is of its part)."""
        self.settle()
        values = values.clone()
        dist.all_reduce(values, group=self.control)
        return values / self.world

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        self.settle()
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        self.settle()
        out = [None] * self.world if self.lead else None
        dist.gather_object(obj, out, dst=0, group=self.control)
        return out

    # -- stops: every rank stops after the same step
    _pending: tuple | None = None  # the stop flags' all-reduce in flight
    _seen: int | None = None  # a stop it agreed on, not yet acted upon

    def agreed_stop(self, signum: int | None) -> int | None:
        """The stop signal some rank received, agreed by all: this step's flags are reduced while the
        step runs and read before the next one, so the check costs no wait (a stop lands one step later)."""
        self.settle()
        decided, self._seen = self._seen, None
        if decided is None:
            flag = torch.tensor([signum or 0], dtype=torch.int64)
            self._pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.control, async_op=True), flag)
        return decided

    def settle(self) -> None:
        """The stop check in flight completed (every rank calls it at the same points), its outcome kept."""
        if self._pending is not None:
            work, flag = self._pending
            self._pending = None
            work.wait()
            self._seen = self._seen or int(flag.item()) or None


def from_lead(fn: Callable[[], object], send: Callable[[object], object] = lambda value: value):
    """fn() on rank 0 and `send(fn())` on the others, which never run fn (what only rank 0 may do:
    read the store, take the run); an error fn raises is raised on every rank. One process: fn()."""
    group = _current
    if group is None:
        return fn()
    if group.lead:
        try:
            value = fn()
        except BaseException as e:
            group.broadcast(("error", portable(e)))
            raise
        group.broadcast(("value", send(value)))
        return value
    kind, value = group.broadcast(None)
    if kind == "error":
        raise value
    return value


def portable(e: BaseException) -> BaseException:
    """`e` as it can travel to another rank (an error that does not pickle becomes its one line)."""
    try:
        return pickle.loads(pickle.dumps(e))
    except Exception:  # noqa: BLE001 - any unpicklable error: its message and exit code are what matter
        out = SuiteError(str(e))
        out.exit_code = getattr(e, "exit_code", 1)
        return out


def join(device: str) -> Ranks:
    """This process joins the group torchrun started (env RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*):
    nccl on CUDA (device cuda:LOCAL_RANK), gloo on the CPU; it dies with the agent that started it."""
    global _current
    if _current is not None:
        return _current
    signals.die_with_parent(signal.SIGTERM)  # the agent SIGKILLed: this rank still stops politely
    cuda = device.startswith("cuda")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but no CUDA device is available (torch.cuda.is_available() is False)")
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=float(os.environ.get("SUITE_DIST_TIMEOUT_S", TIMEOUT_S)))
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=timeout)
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    _current = Ranks(dist.get_rank(), dist.get_world_size(), local_rank,
                     int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())), backend, control)
    return _current


def announce(run_id: str) -> None:
    """Rank 0 tells the `--nproc` launcher which run it trains (so a launcher whose rank 0 died can
    mark the run FAILED)."""
    if path := os.environ.get("SUITE_RUN_ID_FILE"):
        with open(path, "w") as f:
            f.write(run_id)


def leave(wait: bool = True) -> None:
    """The end of a command: with `wait` (it ended the same way on every rank: finished, or stopped
    after the same step) no rank leaves before rank 0 is done with the store, since torchrun ends a
    job whose rank exits with an error; then the group is gone."""
    global _current
    if _current is None:
        return
    if wait:
        try:
            _current.settle()
            dist.barrier(group=_current.control)
        except Exception:  # noqa: BLE001 - a peer that died already ended the job: nothing to wait for
            pass
    with contextlib.suppress(Exception):
        dist.destroy_process_group()
    _current = None


def lost(e: BaseException) -> bool:
    """Did a collective fail because another rank is gone (died, or timed out)?"""
    return isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("Connection closed by peer", "Connection reset by peer", "Gloo", "NCCL", "timed out")))


def device_of(asked: torch.device, ranks: Ranks | None) -> torch.device:
    return torch.device("cuda", ranks.local_rank) if ranks is not None and asked.type == "cuda" else asked


# --------------------------------------------------------------------------- batch norm over the global batch


@contextlib.contextmanager
def training():
    """Batch-norm statistics are global inside (train_step); sampling outside keeps them local, as
    one process computes them for the same chunk."""
    before, _syncing[0] = _syncing[0], _current is not None
    try:
        yield
    finally:
        _syncing[0] = before


class _GatherStats(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient and keeps this rank's row (torch's
    differentiable all_gather needs reduce_scatter, which gloo lacks)."""

    @staticmethod
    def forward(ctx, stats: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(stats) for _ in range(_current.world)]
        dist.all_gather(out, stats.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[_current.rank]


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch. Written here because
    torch's SyncBatchNorm refuses CPU tensors (gloo runs) and would also sync while sampling.
    Ranks' (count, mean, M2) combine exactly (Chan et al.'s parallel variance)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _syncing[0] and _current is not None):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        n = xf.numel() // xf.shape[1]
        mean = xf.mean(dims)
        m2 = ((xf - mean.view(shape)) ** 2).sum(dims)
        stats = _GatherStats.apply(torch.cat([mean.new_full((1,), float(n)), mean, m2]))
        c = mean.numel()
        counts, means, m2s = stats[:, :1], stats[:, 1:c + 1], stats[:, c + 1:]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_m2 = m2s.sum(0) + (counts * (means - g_mean) ** 2).sum(0)
        var = g_m2 / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(g_mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_((g_m2 / (total - 1)).detach(), alpha=m)
        y = (xf - g_mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> int:
    """Every BatchNorm inside `module` made a SyncedBatchNorm in place, with the same parameter and
    buffer tensors (optimizers and state_dict keys unchanged); returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncedBatchNorm):
            new = SyncedBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.__dict__["_parameters"] = child._parameters
            new.__dict__["_buffers"] = child._buffers
            new.train(child.training)
            setattr(module, name, new)
            count += 1
        else:
            count += sync_batchnorm(child)
    return count
