"""The batch stream the harness trains from: one seeded permutation per epoch (drop_last),
in-memory slicing or a DataLoader over files, so a run resumes mid-epoch with the same batches."""

from __future__ import annotations

import signal
import time

import torch

from suite.core import signals
from suite.data.readers import ArrayImages, UnpairedFiles, resize
from suite.data.spec import Loaded, PairSource, TensorSource


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def augment(x: torch.Tensor, size: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop to `size` and random horizontal flip of an in-memory batch."""
    n, extra = len(x), x.shape[-1] - size
    if extra > 0:
        oy = torch.randint(0, extra + 1, (n,), generator=g)
        ox = torch.randint(0, extra + 1, (n,), generator=g)
        x = torch.stack([x[i, :, oy[i] : oy[i] + size, ox[i] : ox[i] + size] for i in range(n)])
    if flip:
        mask = torch.rand(n, generator=g) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


def _worker_init(_worker_id: int) -> None:
    # A stop signal to the process group must not kill a worker mid-step: the trainer finishes
    # its step with their batches; torch ends them with the loader. A trainer that is gone has no
    # step to finish: killed with it (torch's own check was seen to leave a worker blocked for minutes).
    signals.ignore_stops()
    signals.die_with_parent(signal.SIGKILL)


class BatchStream:
    """Endless batches following a seeded permutation per epoch (drop_last). Its state is the
    epoch and the number of batches consumed in it, so a resumed run sees the same batches."""

    def __init__(self, loaded: Loaded, batch_size: int, seed: int, device, image_size: int = 0, flip: bool = False,
                 num_workers: int = 0, part: slice | None = None):
        self.src, self.bs, self.seed = loaded.train, batch_size, seed
        self.device = torch.device(device)
        self.size, self.flip, self.num_workers = image_size, flip, num_workers
        self.paired = isinstance(self.src, (PairSource, UnpairedFiles))
        self.in_memory = isinstance(self.src, (TensorSource, PairSource))
        # a prepared (memory-mapped) array is read a batch at a time here: workers would only add IPC
        self.mapped = isinstance(self.src, ArrayImages)
        self.steps_per_epoch = len(self.src) // batch_size
        self.epoch, self.pos = 0, 0
        self._order = None
        self._iter = None
        self.part = part  # one of several processes: its part of every global batch (suite/core/ranks.py)
        self.wait_s = 0.0  # time spent waiting for batches (the harness logs its share as perf/data_wait)

    def _epoch_order(self):
        g = _epoch_generator(self.seed, self.epoch)
        n = len(self.src)
        if not self.paired:
            return torch.randperm(n, generator=g)
        na, nb = len(self.src.a), len(self.src.b)
        tile = lambda m: torch.cat([torch.randperm(m, generator=g) for _ in range(-(-n // m))])[:n]  # noqa: E731
        return torch.stack([tile(na), tile(nb)], 1)

    def _in_memory_batch(self, idx):
        g = _epoch_generator(self.seed, 7919 * (self.epoch + 1) + self.pos)
        if self.paired:
            a = self.src.a.x[idx[:, 0]]
            b = self.src.b.x[idx[:, 1]]
            if self.size or self.flip:
                a, b = augment(a, self.size or a.shape[-1], self.flip, g), augment(b, self.size or b.shape[-1], self.flip, g)
            return self._mine(a).to(self.device, non_blocking=True), self._mine(b).to(self.device, non_blocking=True)
        x = self.src.x[idx]
        if x.dim() == 4 and (self.flip or (self.size and x.shape[-1] != self.size)):
            x = augment(x, self.size or x.shape[-1], self.flip, g)  # drawn for the global batch, as one process
        return self._mine(x).to(self.device, non_blocking=True)

    def _mine(self, x):
        return x if self.part is None else x[self.part]

    def _loader_iter(self):
        order = self._epoch_order()
        batches = [self._mine(order[i * self.bs : (i + 1) * self.bs]).tolist() for i in range(self.pos, self.steps_per_epoch)]
        if self.paired:
            batches = [[tuple(ij) for ij in b] for b in batches]
        loader = torch.utils.data.DataLoader(
            self.src, batch_sampler=batches, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            worker_init_fn=_worker_init if self.num_workers else None)
        return iter(loader)

    def __call__(self):
        start = time.perf_counter()
        batch = self._next()
        self.wait_s += time.perf_counter() - start
        return batch

    def _next(self):
        if self.pos >= self.steps_per_epoch:
            self.epoch, self.pos, self._order, self._iter = self.epoch + 1, 0, None, None
        if self.in_memory or self.mapped:
            if self._order is None:
                self._order = self._epoch_order()
            idx = self._order[self.pos * self.bs : (self.pos + 1) * self.bs]
            if self.mapped:
                batch = torch.stack(self.src.__getitems__(self._mine(idx).tolist())).to(self.device, non_blocking=True)
            else:
                batch = self._in_memory_batch(idx)
        else:
            if self._iter is None:
                self._iter = self._loader_iter()
            batch = next(self._iter)
            if self.paired:
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            else:
                batch = batch.to(self.device, non_blocking=True)
        self.pos += 1
        return batch

    def close(self) -> None:
        """End the DataLoader workers now. Forked, they hold copies of every pipe this process has
        open (the metric writer's stdin among them): left to the garbage collector, they keep
        those pipes open after the run ends."""
        self._iter = None

    @property
    def epochs_done(self) -> int:
        """Completed passes (a pass ends when its last batch has been consumed)."""
        return self.epoch + (1 if self.pos >= self.steps_per_epoch else 0)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos, self._order, self._iter = int(state["epoch"]), int(state["pos"]), None, None


def fixed_examples(loaded: Loaded, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n held-out (else training) pairs: the inputs of CycleGAN's triplet grids."""
    src = loaded.test if loaded.test is not None else loaded.train
    if isinstance(src, PairSource):
        size = loaded.shape[-1]
        return resize(src.a.x[:n], size), resize(src.b.x[:n], size)
    pairs = [src[(i % len(src.a), i % len(src.b))] for i in range(n)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
