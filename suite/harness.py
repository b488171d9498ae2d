"""The training loop: steps, flushes, sample grids, evaluation, checkpoints, resume, NaN guard.

    python -m suite run dcgan_fashion --max-steps 200
    python -m suite run --resume RUN_ID

It knows nothing about any family: it drives a `recipes.base.Trainer` through the attributes
and methods that interface declares (batches per step, progress keys, evaluation samples),
hands what it measures to `suite.core.tracking.Tracker`, and asks `evaluation.metrics` which way
is better. One step is one generator iteration. Setup (config, data, trainer) is in
`suite.run_setup`, stored runs are read back by `suite.stored`, pictures drawn by `suite.pictures`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from evaluation import metrics
from evaluation.evaluate import Result
from recipes import registry
from recipes.base import Trainer
from recipes.config import flatten
from suite import data, pictures, plugins, stored
from suite.core import checkpoint, paths, ranks, signals
from suite.core.errors import (CheckpointError, ConfigError, DiskFull, OutOfMemory, RankLost, Stopped, StopRun,
                               TrackingError, TrainingDiverged, disk_full, out_of_memory)
from suite.core.progress import Progress
from suite.core.rng import isolated_rng, rng_state, set_rng_state
from suite.core.tracking import Follower, Tracker
from suite.run_setup import (Evaluator, Prepared, RunRequest, build_trainer, default_evaluator, make_stream, prepare,
                             resolve_config, run_tags)

FLUSH_EVERY = 25  # steps between metric flushes (one host sync and one async MLflow batch)
CHECKPOINT_FORMAT = 1


def judge(trainer: Trainer, ev: Evaluator, final: bool) -> Result | None:
    """The trainer's samples for this evaluator (the same latents every time), judged. Several
    processes generate their share of the chunks; rank 0 judges them all (None on the others)."""
    with trainer.spread():
        samples = trainer.eval_samples(ev.n, torch.Generator().manual_seed(ev.seed), ev.inputs(trainer.cfg.image_size))
    return None if samples is None else ev(samples, final=final)


@dataclass
class Remote:
    """What a rank other than 0 knows of rank 0's evaluator: enough to generate its share."""

    primary: str
    n: int
    seed: int
    held_out: dict | None

    def inputs(self, image_size: int) -> dict | None:
        return self.held_out


def log_evaluation(tracker: Tracker, result: Result, step: int, tag: str) -> None:
    """Store what a run keeps of a full evaluation: its JSON, figures and verdict tags."""
    for path, content in result.files(step, tag).items():
        if isinstance(content, str):
            tracker.log_text(content, path)
        else:
            tracker.log_image(content, path)
    if tags := result.tags():
        tracker.set_tags(tags)


class Session:
    """One training run in progress: the loop and everything it writes."""

    def __init__(self, p: Prepared, trainer: Trainer, stream: data.BatchStream, tracker: Tracker,
                 evaluator: Evaluator | None, progress: bool | None, skip_through: int = 0, best: dict | None = None,
                 on_eval=None, evaluated: int | None = None):
        self.p, self.cfg, self.trainer, self.stream, self.tracker = p, p.cfg, trainer, stream, tracker
        self.ranks = ranks.current()
        self.lead = self.ranks is None or self.ranks.lead  # rank 0 alone writes: store, grids, checkpoints
        self.evaluator, self.on_eval = evaluator, on_eval
        self.skip_through = skip_through  # steps already in the run's metric history (resume)
        self.best = best or {}
        # last step whose evaluation (if any) completed: a stopped run owes the one it dropped
        self.evaluated = trainer.step if evaluated is None else evaluated
        self.saved = -1  # step of the newest checkpoints/last.pt
        self.total = p.total
        self.ckpt_dir = paths.run_dir(tracker.run_id) / "checkpoints"
        self.pending: list[tuple[int, dict]] = []
        self.progress = Progress(self.total, trainer.step, desc=p.recipe, enabled=progress if self.lead else False)
        tracker.start_writer()
        self.last_values: dict[str, float] = {}
        self._t_mark, self._batches_mark, self._wait_mark = time.perf_counter(), self._batches(), stream.wait_s
        self.t_start, self.start_step = self._t_mark, trainer.step

    def _batches(self) -> int:
        return self.stream.epoch * self.stream.steps_per_epoch + self.stream.pos

    # -- the loop
    def run(self, until: int | None = None) -> None:
        """Train to the end (or up to step `until`: benchmarks drive the loop in slices). A stop
        signal ends it after the current step (an evaluation is dropped and owed) with a checkpoint."""
        try:
            self._run(until)
        except signals.Interrupted:
            self.stop()

    def _run(self, until: int | None) -> None:
        t = self.trainer
        if t.step == 0 and self.lead:
            pictures.log_samples(self.tracker, self.p, t, 0)
        if self.evaluator is not None and self.evaluated < t.step and self.evaluation_step(t.step):
            self.evaluate(t.step)  # owed by a run stopped during this evaluation
            self.save_checkpoint()
        end = self.total if until is None else min(until, self.total)
        while t.step < end:
            if signum := self.stop_requested():
                self.stop(signum)
            self.step()
        if t.step == self.total:
            self.finish()

    def stop_requested(self) -> int | None:
        """The stop signal to act on now: this process's, or (several processes) the one all agreed on."""
        if self.ranks is None:
            return signals.requested()
        return self.ranks.agreed_stop(signals.requested())

    def evaluation_step(self, step: int) -> bool:
        return step == self.total or bool(self.cfg.eval_every and step % self.cfg.eval_every == 0)

    def step(self) -> None:
        """One generator iteration and what follows it: flush, samples, evaluation, checkpoint."""
        t, cfg = self.trainer, self.cfg
        with t.autocast(), ranks.training():
            out = t.train_step(self.stream)
        t.step += 1
        self.pending.append((t.step, out))
        while t.epoch < self.stream.epochs_done:
            t.epoch += 1
            t.on_epoch_end()
            if t.step > self.skip_through:
                self.tracker.log_metrics(t.step, t.learning_rates())
        last = t.step == self.total
        evaluating = self.evaluator is not None and self.evaluation_step(t.step)
        if len(self.pending) >= FLUSH_EVERY or last or t.step % cfg.sample_every == 0 or evaluating or \
                t.step % cfg.checkpoint_every == 0:
            self.flush()
        self.progress.update(t.step)
        if (t.step % cfg.sample_every == 0 or last) and self.lead:
            pictures.log_samples(self.tracker, self.p, t, t.step)
        if evaluating:
            self.evaluate(t.step)
        else:
            self.evaluated = t.step
        if t.step % cfg.checkpoint_every == 0 or last:
            self.save_checkpoint()

    def stop(self, signum: int | None = None) -> None:
        """A stop signal: everything logged, a checkpoint of this very step, then Stopped."""
        signum = signum or signals.requested()
        step = self.trainer.step
        if self.saved != step or self.evaluated < step:
            self.save_checkpoint()
        raise Stopped(f"stopped by {signals.name(signum)} at step {step}/{self.total}: run {self.tracker.run_id} "
                      f"marked KILLED; resume with: {self.resume_command()}", signum)

    def resume_command(self) -> str:
        device = self.p.device.type if self.ranks is not None else self.p.device  # each rank picks its own cuda:N
        extra = "" if self.p.device.type == "cpu" else f" --device {device}"
        extra += f" --data-root {self.p.data_root}" if self.p.data_root else ""
        extra += f" --nproc {self.ranks.world}" if self.ranks is not None else ""
        return f"python -m suite run --resume {self.tracker.run_id}{extra}"

    def flush(self) -> None:
        """Move buffered step metrics to the host once, stop on non-finite losses, log."""
        if not self.pending:
            return
        last = self.pending[-1][1]
        tkeys = [k for k, v in last.items() if torch.is_tensor(v)]
        fkeys = [k for k in last if k not in tkeys]
        keys = tkeys + fkeys
        steps = [step for step, _ in self.pending]
        # One stack and one device->host copy per flush, not one sync (or one stack) per value per step.
        tvals = [[] for _ in steps]
        if tkeys:
            stacked = torch.stack([d[k] for _, d in self.pending for k in tkeys]).float().cpu().view(len(steps), -1)
            if self.ranks is not None:  # each rank's values are of its part: the global batch's are their mean
                stacked = self.ranks.mean(stacked)
            tvals = stacked.tolist()
        table = [tv + [float(d[k]) for k in fkeys] for tv, (_, d) in zip(tvals, self.pending)] if fkeys else tvals
        now = time.perf_counter()
        batches = self._batches()
        rate = (batches - self._batches_mark) * self.cfg.batch_size / max(now - self._t_mark, 1e-9)
        steps_rate = len(steps) / max(now - self._t_mark, 1e-9)
        data_wait = (self.stream.wait_s - self._wait_mark) / max(now - self._t_mark, 1e-9)  # share of the wall time
        self._t_mark, self._batches_mark, self._wait_mark = now, batches, self.stream.wait_s
        losses = [i for i, k in enumerate(keys) if k.startswith("loss")]
        bad = next((i for i, row in enumerate(table) if not all(math.isfinite(row[j]) for j in losses)), None)
        good = len(table) if bad is None else bad + 1  # the steps up to the first non-finite one are stored
        first = next((i for i, step in enumerate(steps) if step > self.skip_through), good)
        self.tracker.log_rows(keys, steps[first:good], table[first:good])
        values = dict(zip(keys, table[good - 1]))
        if bad is not None:
            bad = (steps[bad], {k: v for k, v in values.items() if not math.isfinite(v)})
        last_step = self.pending[-1][0]
        self.pending.clear()
        if bad is not None:
            step, which = bad
            raise TrainingDiverged(
                f"non-finite loss at step {step} ({', '.join(f'{k}={v}' for k, v in which.items())}); "
                f"run marked FAILED, last good checkpoint kept")
        if last_step > self.skip_through:
            # Learning rates change only at epoch ends: logged at every flush (and after each
            # change, see run()), the curve is exact without storing a constant at every step.
            self.tracker.log_metrics(last_step, {"perf/images_per_s": rate, "perf/steps_per_s": steps_rate,
                                                 "perf/data_wait": data_wait, **self.trainer.learning_rates(),
                                                 **({"perf/fp16_skipped_steps": self.trainer.skipped}
                                                    if self.cfg.precision == "fp16" else {})})
        self.last_values = {k: v for k, v in values.items() if k.startswith(self.trainer.progress_keys)}
        self.progress.show(self.last_values, rate)
        self.tracker.flush()
        self.tracker.renew()

    def evaluate(self, step: int) -> None:
        ev, final = self.evaluator, step == self.total
        # dropped on a stop signal, redone on resume (several processes: finished, then the stop agreed)
        interruptible = signals.interruptible() if self.ranks is None else contextlib.nullcontext()
        with isolated_rng():
            with interruptible:
                result = judge(self.trainer, ev, final)
            if result is None:  # not rank 0: its share generated, nothing to judge or log
                self.evaluated = step
                return
            if final:
                log_evaluation(self.tracker, result, step, "final")
        values = result.metrics
        stored = values
        if step <= self.skip_through:  # a resumed run stores what the stopped one had not
            stored = {k: v for k, v in values.items() if self.tracker.last_step(k) < step}
        self.tracker.log_metrics(step, stored)
        value = values.get(ev.primary)
        if value is not None and metrics.better(ev.primary, value, self.best.get("value")):
            self.best = {"metric": ev.primary, "value": value, "step": step}
            self.save_checkpoint("best")
            self.tracker.set_tags({"suite.best_step": step, "suite.best_metric": ev.primary,
                                   "suite.best_value": f"{value:.6g}"})
        if self.on_eval is not None:
            self.on_eval(step, values)
        self.evaluated = step

    def checkpoint_state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "recipe": self.p.recipe,
            "family": self.p.family,
            "config": dataclasses.asdict(self.cfg),
            "trainer": self.trainer.state_dict(),
            "stream": self.stream.state_dict(),
            "rng": rng_state(),
            "best": self.best,
            "evaluated": self.evaluated,
            "nproc": self.ranks.world if self.ranks else 1,
        }

    def save_checkpoint(self, name: str = "last") -> None:
        self.flush()  # never checkpoint weights that produced a non-finite loss
        self.tracker.flush(wait=True)  # every value up to a checkpoint is stored before it exists
        if not self.lead:  # the ranks hold the same state: rank 0 writes it
            self.saved = self.trainer.step if name == "last" else self.saved
            return
        path = checkpoint.save(self.checkpoint_state(), self.ckpt_dir / f"{name}.pt")
        self.tracker.log_artifact(path, "checkpoints")
        if name == "last":
            self.saved = self.trainer.step

    def finish(self) -> None:
        if not self.lead:
            return
        gen = {"family": self.p.family, "recipe": self.p.recipe, "config": dataclasses.asdict(self.cfg),
               "kind": self.p.info.kind, "shape": list(self.p.info.shape),
               "generator": self.trainer.generator_state()}
        path = checkpoint.save(gen, self.ckpt_dir / "generator.pt")
        self.tracker.log_artifact(path, "checkpoints")
        if self.trainer.kind == "points":
            pictures.log_animation(self.tracker)
        elapsed = time.perf_counter() - self.t_start
        done = self.trainer.step - self.start_step
        self.progress.close(f"{self.p.recipe}: {done} steps in {elapsed:.1f} s "
                            f"({done / max(elapsed, 1e-9):.2f} steps/s), run {self.tracker.run_id}")


def train(req: RunRequest, evaluator_factory: Callable[[Prepared], Evaluator | None] | None = default_evaluator) -> str:
    """Run (or resume) one training run; returns its MLflow run id. While it is set up (no run
    written yet) a stop signal ends it at once; from then on the step in progress finishes, a
    checkpoint is written, the run marked KILLED and `Stopped` raised (see suite/core/signals.py)."""
    with signals.stoppable():
        try:
            with signals.interruptible():
                p, trainer, state = _prepare(req)
        except signals.Interrupted as e:
            raise Stopped(f"stopped by {signals.name(e.signum)} while setting up, before any run was written", e.signum) \
                from None
        tracker, session = _open(req, p, trainer, state)
        return _run(req, evaluator_factory, tracker, session)


def _prepare(req: RunRequest) -> tuple[Prepared, Trainer, dict | None]:
    """Config, data, trainer and (resuming) the checkpoint, all checked; nothing is written yet.
    Several processes: rank 0 reads the resumed run from the store and sends it to the others."""
    if not req.resume:
        cfg = resolve_config(req.recipe, req.overrides, req.seed, req.max_steps)
        p = prepare(req.recipe, cfg, req.device, req.data_root, req.download)
        return p, build_trainer(p), None
    saved, state = ranks.from_lead(lambda: _stored_run(req))
    values = dict(saved["config"])
    if req.max_steps is not None:
        values["max_steps"] = req.max_steps
    p = prepare(saved["recipe"], stored.rebuild_config(saved, values), req.device, req.data_root, req.download)
    trainer = build_trainer(p)
    try:
        if state.get("format") != CHECKPOINT_FORMAT or state.get("family") != p.family:
            raise CheckpointError(f"checkpoint of run {req.resume} does not match its config")
        try:
            trainer.load_state_dict(state["trainer"])
        except (RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint of run {req.resume} does not fit the model: {str(e)[:200]}") from None
        state["stream"], state["rng"]  # noqa: B018 - every section present before anything is written
    except KeyError as e:
        raise CheckpointError(f"checkpoint of run {req.resume} lacks '{e.args[0]}'") from None
    return p, trainer, state


def _stored_run(req: RunRequest) -> tuple[dict, dict]:
    """The resumed run's training config and last checkpoint, from the store."""
    tracker = Tracker.attach(req.resume)
    saved = stored.training_config(tracker, req.allow_changed_plugin)
    if req.overrides:
        raise ConfigError("--set cannot change a resumed run's config (only --max-steps can extend it)")
    return saved, stored.stored_checkpoint(tracker, "last", "checkpoint to resume from (checkpoints/last.pt)")


def _open(req: RunRequest, p: Prepared, trainer: Trainer, state: dict | None) -> tuple[Tracker, Session]:
    """The run created (or taken over for resuming) and its session, ready for the next step.
    Several processes: rank 0 takes the run, the others follow it without touching the store."""
    stream = make_stream(p)
    try:
        taken = ranks.from_lead(lambda: _take_run(req, p, state), send=lambda t: t.run_id)
    except BaseException:
        stream.close()
        raise
    tracker = Follower(taken) if isinstance(taken, str) else taken
    resumed = {}
    if state is not None:
        stream.load_state_dict(state["stream"])
        set_rng_state(state["rng"])
        resumed = {"skip_through": tracker.last_step("loss/g"), "best": state.get("best") or {},
                   "evaluated": state.get("evaluated")}
        before, now = state.get("nproc", 1), (ranks.current().world if ranks.current() else 1)
        if before != now and not isinstance(tracker, Follower):
            # the same global batches and latents, summed in another order: close, not bit-exact
            print(f"note: run {tracker.run_id} was trained by {before} process(es) and continues with {now}: the "
                  "same batches and latents, not bit-exact", file=sys.stderr, flush=True)
            tracker.set_tags({"suite.nproc": now, "suite.nproc_changed": f"{before}->{now} at step {trainer.step}"})
    if p.cfg.system_metrics:
        tracker.watch_system()
    session = Session(p, trainer, stream, tracker, None, req.progress, on_eval=req.on_eval, **resumed)
    tracker.resume_hint = session.resume_command()
    return tracker, session


def _take_run(req: RunRequest, p: Prepared, state: dict | None) -> Tracker:
    """The run created, or attached for resuming, with this process its one writer."""
    group = ranks.current()
    if state is None:
        run_name = req.run_name or f"{p.recipe}-s{p.cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        params = {"recipe": p.recipe, "family": p.family, **flatten(dataclasses.asdict(p.cfg))}
        tags = {**run_tags(p, registry.get(p.recipe)), **plugins.origin_tags(p.family), **req.extra_tags,
                "suite.nproc": group.world if group else 1}
        tracker = Tracker.create(req.experiment or p.recipe, run_name, params, tags, p.resolved(),
                                 parent_run_id=req.parent_run_id)
    else:
        tracker = Tracker.attach(req.resume)
    try:
        tracker.acquire()  # one run, one writer: a second resume of a run in training is refused
    except BaseException:
        if state is None:
            tracker.finish("FAILED", "could not take the run's writer lock")
        raise
    if state is not None:
        tracker.mark_running()  # only now: a failed resume leaves the run as it was
    ranks.announce(tracker.run_id)
    return tracker


def _run(req: RunRequest, evaluator_factory, tracker: Tracker, session: Session) -> str:
    """Train the prepared session to its end; however it ends, the run gets its status and reason."""
    try:
        try:
            if req.on_start is not None:
                req.on_start(tracker)
            try:
                if evaluator_factory and req.evaluate:
                    with isolated_rng(), signals.interruptible():  # building one may train a classifier
                        session.evaluator = ranks.from_lead(lambda: evaluator_factory(session.p),
                                                            send=lambda ev: _remote(ev, session.cfg.image_size))
                    if isinstance(session.evaluator, Remote) and session.evaluator.n == 0:
                        session.evaluator = None
            except signals.Interrupted:
                session.stop()  # before the first step: a checkpoint of the start, to resume from
            session.run()
        finally:
            session.stream.close()  # before the writer is told to end, however it ends: DataLoader workers hold its pipe
    except Stopped as e:
        tracker.set_tags({"suite.stop_signal": signals.name(e.signum), "suite.resume_command": session.resume_command()})
        tracker.finish("KILLED", str(e))
        raise
    except TrainingDiverged as e:
        tracker.finish("FAILED", str(e))
        raise
    except StopRun as e:
        tracker.finish("KILLED", str(e))
        raise
    except KeyboardInterrupt:
        tracker.finish("KILLED", "interrupted (KeyboardInterrupt)")
        raise
    except BaseException as e:
        _failed(tracker, session, e)
        raise
    finally:
        session.progress.close()
    tracker.set_tags({"suite.steps": session.trainer.step})  # what a benchmark's cost counts
    tracker.finish("FINISHED")
    return tracker.run_id


def _remote(ev: Evaluator | None, image_size: int) -> Remote:
    """What the other ranks need of rank 0's evaluator (n=0: there is none)."""
    if ev is None:
        return Remote("", 0, 0, None)
    return Remote(ev.primary, ev.n, ev.seed, ev.inputs(image_size))


def _failed(tracker: Tracker, session: Session, e: BaseException) -> None:
    """Mark the run FAILED with why; memory and disk exhaustion become their own one-line errors."""
    if session.ranks is not None and ranks.lost(e):
        why = (f"a process of this run is gone (died or stopped answering: {str(e).splitlines()[0][:160]}); "
               f"resume with: {session.resume_command()}")
        tracker.finish("FAILED", why)
        raise RankLost(f"run {tracker.run_id}: {why}") from None
    if (why := out_of_memory(e)) is not None:
        tracker.finish("FAILED", f"out of memory: {why}")
        raise OutOfMemory(f"out of memory in run {tracker.run_id}: {why}; lower image_size, n_sample, "
                          "batch_size or eval_n") from None
    if not disk_full(e):
        tracker.finish("FAILED", f"{type(e).__name__}: {e}; resume with: {session.resume_command()}")
        if isinstance(e, TrackingError):  # the store or its writer failed: say how to go on
            raise TrackingError(f"{e}; run {tracker.run_id} marked FAILED; resume with: {session.resume_command()}") from None
        return
    why = (f"the disk is full (at step {session.trainer.step}: {str(e).splitlines()[0][:160]}); free space, then "
           f"resume with: {session.resume_command()}")
    try:
        tracker.finish("FAILED", why)
    except Exception:  # noqa: BLE001 - the store is on the full disk too: it stays RUNNING
        why += " (the run could not be marked FAILED: the store is on the full disk)"
    raise DiskFull(why) from None
