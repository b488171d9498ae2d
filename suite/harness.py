"""The training loop: seed, device, steps, sample grids, evaluation, checkpoints, resume, NaN guard.

    python -m suite run dcgan_fashion --max-steps 200
    python -m suite run --resume RUN_ID

It knows nothing about any family: it drives a `recipes.base.Trainer` through the attributes
and methods that interface declares (batches per step, progress keys, evaluation samples),
hands what it measures to `suite.core.tracking.Tracker`, and asks `evaluation.metrics` which way
is better. One step is one generator iteration.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from evaluation import metrics
from evaluation.evaluate import MIN_SAMPLES, Result, min_samples_reason
from evaluation.training import training_evaluator
from recipes import registry
from recipes.base import BaseConfig, Trainer, flatten
from suite import data
from suite.core import checkpoint, images, paths, signals
from suite.data import DataInfo
from suite.core.errors import (CheckpointError, ConfigError, DiskFull, OutOfMemory, Stopped, StopRun, TrainingDiverged,
                          disk_full, out_of_memory)
from suite.core.progress import Progress
from suite.core.tracking import Tracker

FLUSH_EVERY = 25  # steps between metric flushes (one host sync and one async MLflow batch)
CHECKPOINT_FORMAT = 1
LANDSCAPE_GRID, LANDSCAPE_POINTS = 80, 400  # heat-map resolution; points and arrows drawn per frame


class Evaluator(Protocol):
    """Judges samples of a trainer's current generator (see evaluation/training.py)."""

    primary: str  # metric that picks the best checkpoint (its direction: evaluation.metrics)
    n: int  # samples per evaluation
    seed: int  # of the latents, the same at every evaluation

    def inputs(self, image_size: int) -> dict | None: ...  # what a translating trainer translates

    def __call__(self, samples, final: bool) -> Result: ...


@dataclass
class RunRequest:
    recipe: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    seed: int | None = None
    device: str = "cpu"
    max_steps: int | None = None
    data_root: str | None = None
    download: bool = False
    resume: str | None = None
    progress: bool | None = None  # None: a bar on a terminal, plain lines otherwise
    evaluate: bool = True
    parent_run_id: str | None = None  # a study's or benchmark's parent run
    experiment: str | None = None  # default: the recipe's (a benchmark keeps its cells with its parent run)
    run_name: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    on_eval: Callable[[int, dict[str, float]], None] | None = None  # e.g. Optuna's report/prune
    on_start: Callable[[Tracker], None] | None = None  # called once the run exists


@dataclass
class Prepared:
    recipe: str
    family: str
    cfg: BaseConfig
    loaded: data.Loaded
    info: DataInfo
    device: torch.device
    data_root: str | None = None

    def resolved(self) -> dict:
        """What `suite show` prints and every run stores as config.json."""
        return {"recipe": self.recipe, "family": self.family, "config": dataclasses.asdict(self.cfg)}


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"invalid --device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available (torch.cuda.is_available() is False)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported --device '{name}': use cpu or cuda")
    return device


def resolve_config(recipe: str, overrides: dict, seed: int | None = None, max_steps: int | None = None) -> BaseConfig:
    overrides = dict(overrides)
    if seed is not None:
        overrides["seed"] = seed
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    return registry.resolve(recipe, overrides)


def prepare(recipe: str, cfg: BaseConfig, device: str = "cpu", data_root=None, download=False) -> Prepared:
    """Config + data + device, checked before anything is logged (a missing dataset makes no run)."""
    dev = resolve_device(device)
    if cfg.eval_n and cfg.eval_n < MIN_SAMPLES:
        raise ConfigError(f"invalid eval_n={cfg.eval_n}: {min_samples_reason()}")
    loaded = data.load(cfg.dataset, data_root=data_root, download=download, image_size=cfg.image_size,
                       load_size=cfg.load_size, flip=cfg.flip, subset=cfg.train_subset)
    if loaded.kind not in registry.FAMILIES[cfg.family][1].data_kinds:
        if loaded.kind == "points":
            able = [f for f, (_, t) in registry.FAMILIES.items() if "points" in t.data_kinds]
            raise ConfigError(f"dataset '{cfg.dataset}' holds 2D points; only the {', '.join(able)} family trains on it")
        raise ConfigError(f"family {cfg.family} cannot train on dataset '{cfg.dataset}' ({loaded.kind})")
    if loaded.kind == "image" and cfg.image_size == 0:
        cfg = dataclasses.replace(cfg, image_size=loaded.shape[-1])
    return Prepared(recipe, cfg.family, cfg, loaded, data.data_info(loaded, cfg.batch_size), dev,
                    str(data_root) if data_root else None)


def build_trainer(p: Prepared) -> Trainer:
    torch.manual_seed(p.cfg.seed)
    trainer = registry.FAMILIES[p.family][1](p.cfg, p.info, p.device)
    if trainer.kind == "translation":
        trainer.fixed_inputs = data.fixed_examples(p.loaded, p.cfg.n_sample)
    else:
        trainer.fixed_noise()  # now, before a run exists: an n_sample too large for memory fails here
    return trainer


def make_stream(p: Prepared) -> data.BatchStream:
    return data.BatchStream(p.loaded, p.cfg.batch_size, p.cfg.seed, p.device, image_size=p.cfg.image_size,
                            flip=p.cfg.flip, num_workers=p.cfg.num_workers)


def default_evaluator(p: Prepared) -> Evaluator | None:
    """The evaluator of a prepared run: its dataset's metrics, `eval_n` samples."""
    return training_evaluator(p.cfg.dataset, p.loaded, p.cfg.eval_n, str(p.device), p.data_root)


def judge(trainer: Trainer, ev: Evaluator, final: bool) -> Result:
    """The trainer's samples for this evaluator (the same latents every time), judged."""
    samples = trainer.eval_samples(ev.n, torch.Generator().manual_seed(ev.seed), ev.inputs(trainer.cfg.image_size))
    return ev(samples, final=final)


def log_evaluation(tracker: Tracker, result: Result, step: int, tag: str) -> None:
    """Store what a run keeps of a full evaluation: its JSON, figures and verdict tags."""
    for path, content in result.files(step, tag).items():
        if isinstance(content, str):
            tracker.log_text(content, path)
        else:
            tracker.log_image(content, path)
    if tags := result.tags():
        tracker.set_tags(tags)


def total_steps(trainer: Trainer, cfg: BaseConfig, info: DataInfo) -> int:
    """max_steps, else the generator iterations that consume `epochs` passes over the data."""
    if cfg.max_steps:
        return cfg.max_steps
    budget, steps = math.ceil(cfg.epochs * info.steps_per_epoch), 0
    while budget > 0:
        budget -= trainer.batches_per_step(steps)
        steps += 1
    return steps


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
def isolated_rng():
    """Whatever runs inside (evaluation, classifier training) leaves training's RNG untouched,
    so a run is the same with or without evaluation and resumes bit-for-bit."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class Session:
    """One training run in progress: the loop and everything it writes."""

    def __init__(self, p: Prepared, trainer: Trainer, stream: data.BatchStream, tracker: Tracker,
                 evaluator: Evaluator | None, progress: bool | None, skip_through: int = 0, best: dict | None = None,
                 on_eval=None, evaluated: int | None = None):
        self.p, self.cfg, self.trainer, self.stream, self.tracker = p, p.cfg, trainer, stream, tracker
        self.evaluator, self.on_eval = evaluator, on_eval
        self.skip_through = skip_through  # steps already in the run's metric history (resume)
        self.best = best or {}
        # last step whose evaluation (if any) completed: a stopped run owes the one it dropped
        self.evaluated = trainer.step if evaluated is None else evaluated
        self.saved = -1  # step of the newest checkpoints/last.pt
        self.total = total_steps(trainer, p.cfg, p.info)
        self.ckpt_dir = paths.run_dir(tracker.run_id) / "checkpoints"
        self.pending: list[tuple[int, dict]] = []
        self.progress = Progress(self.total, trainer.step, desc=p.recipe, enabled=progress)
        tracker.start_writer()
        self.last_values: dict[str, float] = {}
        self._t_mark, self._batches_mark = time.perf_counter(), self._batches()
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
        if t.step == 0:
            self.log_samples(0)
        if self.evaluator is not None and self.evaluated < t.step and self.evaluation_step(t.step):
            self.evaluate(t.step)  # owed by a run stopped during this evaluation
            self.save_checkpoint()
        end = self.total if until is None else min(until, self.total)
        while t.step < end:
            if signals.requested():
                self.stop()
            self.step()
        if t.step == self.total:
            self.finish()

    def evaluation_step(self, step: int) -> bool:
        return step == self.total or bool(self.cfg.eval_every and step % self.cfg.eval_every == 0)

    def step(self) -> None:
        """One generator iteration and what follows it: flush, samples, evaluation, checkpoint."""
        t, cfg = self.trainer, self.cfg
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
        if t.step % cfg.sample_every == 0 or last:
            self.log_samples(t.step)
        if evaluating:
            self.evaluate(t.step)
        else:
            self.evaluated = t.step
        if t.step % cfg.checkpoint_every == 0 or last:
            self.save_checkpoint()

    def stop(self) -> None:
        """A stop signal: everything logged, a checkpoint of this very step, then Stopped."""
        signum = signals.requested()
        step = self.trainer.step
        if self.saved != step or self.evaluated < step:
            self.save_checkpoint()
        raise Stopped(f"stopped by {signals.name(signum)} at step {step}/{self.total}: run {self.tracker.run_id} "
                      f"marked KILLED; resume with: {self.resume_command()}", signum)

    def resume_command(self) -> str:
        extra = "" if self.p.device.type == "cpu" else f" --device {self.p.device}"
        extra += f" --data-root {self.p.data_root}" if self.p.data_root else ""
        return f"python -m suite run --resume {self.tracker.run_id}{extra}"

    def flush(self) -> None:
        """Move buffered step metrics to the host once, stop on non-finite losses, log."""
        if not self.pending:
            return
        last = self.pending[-1][1]
        tkeys = [k for k, v in last.items() if torch.is_tensor(v)]
        fkeys = [k for k in last if k not in tkeys]
        # One device->host copy per flush instead of one sync per value per step.
        tvals = torch.stack([torch.stack([d[k].float() for k in tkeys]) for _, d in self.pending]).cpu().tolist() \
            if tkeys else [[] for _ in self.pending]
        keys = tkeys + fkeys
        table = [tv + [float(d[k]) for k in fkeys] for tv, (_, d) in zip(tvals, self.pending)]
        now = time.perf_counter()
        batches = self._batches()
        rate = (batches - self._batches_mark) * self.cfg.batch_size / max(now - self._t_mark, 1e-9)
        steps_rate = len(self.pending) / max(now - self._t_mark, 1e-9)
        self._t_mark, self._batches_mark = now, batches
        bad = None
        for (step, _), row in zip(self.pending, table):
            values = dict(zip(keys, row))
            if step > self.skip_through:
                self.tracker.log_metrics(step, values)
            if bad is None and not all(math.isfinite(v) for k, v in values.items() if k.startswith("loss")):
                bad = (step, {k: v for k, v in values.items() if not math.isfinite(v)})
                break
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
                                                 **self.trainer.learning_rates()})
        self.last_values = {k: v for k, v in values.items() if k.startswith(self.trainer.progress_keys)}
        self.progress.show(self.last_values, rate)
        self.tracker.flush()
        self.tracker.renew()

    def log_samples(self, step: int) -> None:
        t = self.trainer
        x = t.samples()
        if t.kind == "points":
            picture = images.scatter(x, self.p.loaded.meta.get("modes"), f"{self.p.recipe} step {step}")
            self.log_landscape(step, x)
        else:
            picture = images.grid(x, getattr(t, "grid_nrow", None))
        self.tracker.log_image(picture, f"samples/step_{step:06d}.png")

    def log_landscape(self, step: int, fakes: torch.Tensor) -> None:
        """2D data: the discriminator's output over the plane, real and generated points, the
        generator's gradient at each generated point (GAN Lab's view), one frame per sample step."""
        modes = self.p.loaded.meta.get("modes")
        extent = 1.25 * float(modes.abs().max()) + 0.5 if modes is not None else 1.1 * float(fakes.abs().max())
        axis = torch.linspace(-extent, extent, LANDSCAPE_GRID)
        gy, gx = torch.meshgrid(axis, axis, indexing="ij")  # row i: y = axis[i]; column j: x = axis[j]
        fakes = fakes[:LANDSCAPE_POINTS]
        with isolated_rng():
            view = self.trainer.discriminator_view(torch.stack([gx.flatten(), gy.flatten()], 1), fakes)
        if view is None:
            return
        surface, pull = view
        real = self.p.loaded.train.x[:LANDSCAPE_POINTS].numpy()
        picture = images.landscape(surface.view(LANDSCAPE_GRID, LANDSCAPE_GRID).numpy(), extent, real,
                                   fakes.numpy(), pull.numpy(), None if modes is None else modes.numpy(),
                                   f"{self.p.recipe} step {step}: D(x), generator gradient")
        self.tracker.log_image(picture, f"landscape/step_{step:06d}.png")

    def log_animation(self) -> None:
        """Every landscape frame of the run (a resumed run's earlier ones too) as one GIF."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.tracker.download("landscape", Path(tmp))
            files = sorted(folder.glob("step_*.png")) if folder else []
            if len(files) >= 2:
                gif = Path(tmp) / "animation.gif"
                gif.write_bytes(images.animation([images.load_png(f) for f in files]))
                self.tracker.log_artifact(gif, "landscape")

    def evaluate(self, step: int) -> None:
        ev, final = self.evaluator, step == self.total
        with isolated_rng():
            with signals.interruptible():  # dropped on a stop signal, redone on resume
                result = judge(self.trainer, ev, final)
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
        }

    def save_checkpoint(self, name: str = "last") -> None:
        self.flush()  # never checkpoint weights that produced a non-finite loss
        self.tracker.flush(wait=True)  # every value up to a checkpoint is stored before it exists
        path = checkpoint.save(self.checkpoint_state(), self.ckpt_dir / f"{name}.pt")
        self.tracker.log_artifact(path, "checkpoints")
        if name == "last":
            self.saved = self.trainer.step

    def finish(self) -> None:
        gen = {"family": self.p.family, "recipe": self.p.recipe, "config": dataclasses.asdict(self.cfg),
               "kind": self.p.info.kind, "shape": list(self.p.info.shape),
               "generator": self.trainer.generator_state()}
        path = checkpoint.save(gen, self.ckpt_dir / "generator.pt")
        self.tracker.log_artifact(path, "checkpoints")
        if self.trainer.kind == "points":
            self.log_animation()
        elapsed = time.perf_counter() - self.t_start
        done = self.trainer.step - self.start_step
        self.progress.close(f"{self.p.recipe}: {done} steps in {elapsed:.1f} s "
                            f"({done / max(elapsed, 1e-9):.2f} steps/s), run {self.tracker.run_id}")


def _tags(p: Prepared, recipe_meta) -> dict:
    return {
        "suite.recipe": p.recipe,
        "suite.family": p.family,
        "suite.dataset": p.cfg.dataset,
        "suite.seed": str(p.cfg.seed),
        "suite.device": str(p.device),
        "suite.cpu_sized": str(recipe_meta.cpu_sized),
    }


def training_config(tracker: Tracker) -> dict:
    """A training run's saved config.json; anything else (a study's or benchmark's parent, a
    classifier run, a hand-edited file) is refused in one line."""
    saved = tracker.config()
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


def train(req: RunRequest, evaluator_factory: Callable[[Prepared], Evaluator | None] | None = default_evaluator) -> str:
    """Run (or resume) one training run; returns its MLflow run id. A stop signal ends it with a
    checkpoint, KILLED and `Stopped` (see suite/signals.py)."""
    with signals.stoppable():
        return _train(req, evaluator_factory)


def _train(req: RunRequest, evaluator_factory) -> str:
    evaluated = None
    if req.resume:
        tracker = Tracker.attach(req.resume)
        try:
            saved = training_config(tracker)
            if req.overrides:
                raise ConfigError("--set cannot change a resumed run's config (only --max-steps can extend it)")
            values = dict(saved["config"])
            if req.max_steps is not None:
                values["max_steps"] = req.max_steps
            cfg = rebuild_config(saved, values)
            p = prepare(saved["recipe"], cfg, req.device, req.data_root, req.download)
            state = stored_checkpoint(tracker, "last", "checkpoint to resume from (checkpoints/last.pt)")
            if state.get("format") != CHECKPOINT_FORMAT or state.get("family") != p.family:
                raise CheckpointError(f"checkpoint of run {req.resume} does not match its config")
            trainer = build_trainer(p)
            stream = make_stream(p)
            try:
                trainer.load_state_dict(state["trainer"])
            except (KeyError, RuntimeError, ValueError) as e:
                raise CheckpointError(f"checkpoint of run {req.resume} does not fit the model: {str(e)[:200]}") from None
            stream.load_state_dict(state["stream"])
            set_rng_state(state["rng"])
            skip = tracker.last_step("loss/g")
            best = state.get("best") or {}
            evaluated = state.get("evaluated")
        except KeyError as e:  # a checkpoint missing a section
            raise CheckpointError(f"checkpoint of run {req.resume} lacks '{e.args[0]}'") from None
        tracker.acquire()  # one run, one writer: a second resume of a run in training is refused
        tracker.mark_running()  # only now: a failed resume leaves the run as it was
    else:
        recipe_meta = registry.get(req.recipe)
        cfg = resolve_config(req.recipe, req.overrides, req.seed, req.max_steps)
        p = prepare(req.recipe, cfg, req.device, req.data_root, req.download)
        trainer = build_trainer(p)
        stream = make_stream(p)
        run_name = req.run_name or f"{p.recipe}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        params = {"recipe": p.recipe, "family": p.family, **flatten(dataclasses.asdict(cfg))}
        tracker = Tracker.create(req.experiment or p.recipe, run_name, params, {**_tags(p, recipe_meta), **req.extra_tags},
                                 p.resolved(), parent_run_id=req.parent_run_id)
        tracker.acquire()
        skip, best = 0, {}
    session = None
    try:
        if req.on_start is not None:
            req.on_start(tracker)
        session = Session(p, trainer, stream, tracker, None, req.progress, skip, best, req.on_eval, evaluated)
        tracker.resume_hint = session.resume_command()
        try:
            try:
                if evaluator_factory and req.evaluate:
                    with isolated_rng(), signals.interruptible():  # building one may train a classifier
                        session.evaluator = evaluator_factory(p)
            except signals.Interrupted:
                session.stop()  # before the first step: a checkpoint of the start, to resume from
            session.run()
        finally:
            stream.close()  # before the writer is told to end, however it ends: DataLoader workers hold its pipe
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
        if (why := out_of_memory(e)) is not None:
            tracker.finish("FAILED", f"out of memory: {why}")
            raise OutOfMemory(f"out of memory in run {tracker.run_id}: {why}; lower image_size, n_sample, "
                              "batch_size or eval_n") from None
        if not disk_full(e):
            tracker.finish("FAILED", f"{type(e).__name__}: {e}")
            raise
        step = session.trainer.step if session is not None else 0
        why = (f"the disk is full (at step {step}: {str(e).splitlines()[0][:160]}); free space, then resume with: "
               f"python -m suite run --resume {tracker.run_id}")
        try:
            tracker.finish("FAILED", why)
        except Exception:  # noqa: BLE001 - the store is on the full disk too: it stays RUNNING
            why += " (the run could not be marked FAILED: the store is on the full disk)"
        raise DiskFull(why) from None
    finally:
        if session is not None:
            session.progress.close()
    tracker.finish("FINISHED")
    return tracker.run_id
