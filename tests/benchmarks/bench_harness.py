"""Harness overhead: a training step through the suite (Session: metric buffer, MLflow logging,
progress, sample grids and checkpoints at the recipe's cadence) against a bare PyTorch loop of the
same networks, data and optimizers, in the same run.

    tox -e bench -- -k step
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from recipes import registry
from suite import harness, run_setup
from suite.data import DataInfo
from suite.core.tracking import Tracker
from tests.benchmarks.conftest import EXTRA, RESULTS, check, goal, record

STEPS = {"dcgan": 40, "wgan": 12, "gan": 150}
RECIPES = {"dcgan": ("dcgan_fashion", {}), "wgan": ("wgan_fashion", {}), "gan": ("gan_fashion", {})}
START = {"dcgan": 190, "wgan": 30, "gan": 190}  # past WGAN's 100-critic bursts; crossing a sample grid
for fam, text in (("dcgan", "DCGAN 32x32 step"), ("wgan", "WGAN 32x32 generator iteration (n_critic 5)"),
                  ("gan", "MLP GAN 28x28 step")):
    goal(f"step_{fam}", "max", 1.03, f"{text}: harness with MLflow / bare PyTorch loop")


def session(fam: str):
    recipe, over = RECIPES[fam]
    cfg = run_setup.resolve_config(recipe, over, max_steps=START[fam] + 30 * STEPS[fam])  # never reached
    p = run_setup.prepare(recipe, cfg)
    trainer = run_setup.build_trainer(p)
    trainer.step = START[fam]
    tracker = Tracker.create(f"bench_{recipe}", "bench", {}, {}, {})
    s = harness.Session(p, trainer, run_setup.make_stream(p), tracker, None, progress=False)
    return s


def bare(fam: str):
    """The same networks, data and optimizers, driven by a plain loop (the tutorials' shape)."""
    recipe, over = RECIPES[fam]
    cfg = run_setup.resolve_config(recipe, over)
    p = run_setup.prepare(recipe, cfg)
    torch.manual_seed(0)
    t = run_setup.build_trainer(p)  # only for its freshly initialised networks and optimizers
    G, D, opt_g, opt_d = t.G, t.D, t.opt_g, t.opt_d
    x, bs, nz = p.loaded.train.x, cfg.batch_size, cfg.nz
    perm = torch.randperm(len(x))
    pos = [0]

    def batch():
        i = pos[0] % (len(x) // bs)
        pos[0] += 1
        return x[perm[i * bs:(i + 1) * bs]]

    def bce_step(z_shape, same_fakes: bool):
        """DCGAN reuses one batch of fakes for both updates; the MLP GAN draws fresh noise."""
        real = batch()
        with torch.set_grad_enabled(same_fakes):
            fake = G(torch.randn(bs, *z_shape))
        opt_d.zero_grad()
        out_r, out_f = D(real), D(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(out_r, torch.ones_like(out_r)) + \
            F.binary_cross_entropy_with_logits(out_f, torch.zeros_like(out_f))
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        opt_g.zero_grad()
        out = D(fake if same_fakes else G(torch.randn(bs, *z_shape)))
        F.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward()
        opt_g.step()
        D.requires_grad_(True)

    def wgan_step(g_iter):
        n_critic = 100 if g_iter < 25 or g_iter % 500 == 0 else 5
        for _ in range(n_critic):
            with torch.no_grad():
                for q in D.parameters():
                    q.clamp_(-0.01, 0.01)
            real = batch()
            with torch.no_grad():
                fake = G(torch.randn(bs, nz, 1, 1))
            opt_d.zero_grad()
            (D(fake).mean() - D(real).mean()).backward()
            opt_d.step()
            with torch.no_grad():
                for q in D.parameters():
                    q.clamp_(-0.01, 0.01)
        D.requires_grad_(False)
        opt_g.zero_grad()
        (-D(G(torch.randn(bs, nz, 1, 1))).mean()).backward()
        opt_g.step()
        D.requires_grad_(True)

    def loop():
        for i in range(STEPS[fam]):
            if fam == "wgan":
                wgan_step(START[fam] + i)
            elif fam == "dcgan":
                bce_step((nz, 1, 1), same_fakes=True)
            else:
                bce_step((nz,), same_fakes=False)

    return loop


@pytest.mark.parametrize("fam", ["gan", "dcgan", "wgan"])
def test_step(benchmark, fam, suite_home):
    """pytest-benchmark times the harness rounds; before each one (untimed by it) a bare-loop
    round of the same length runs and is timed here, so both sides see the same machine state."""
    import time

    loop = bare(fam)
    loop()  # warm-up
    s = session(fam)
    s.tracker.start_writer(wait=True)  # the metric writer process is up, as a few seconds into a run
    s.run(until=s.trainer.step + 5)  # warm-up
    s.tracker.flush(wait=True)
    bare_times = []

    def bare_round():
        t0 = time.perf_counter()
        loop()
        bare_times.append(time.perf_counter() - t0)
        return (), {}

    def steps():
        s.run(until=s.trainer.step + STEPS[fam])
        s.flush()
        s.tracker.flush(wait=True)  # the metrics are stored, not just queued

    benchmark.pedantic(steps, setup=bare_round, rounds=15, iterations=1)
    record(f"step_{fam}", "ours", benchmark)
    RESULTS[f"step_{fam}"]["baseline"] = min(bare_times)
    s.tracker.finish()
    check(f"step_{fam}")


# --------------------------------------------------------------------------- the harness alone

NULL_STEPS = 1000
goal("null_step", "max", 0.01, "the harness's own cost per step (a trainer whose step does nothing) / one bare "
     "DCGAN 64x64 step")


def test_null_step(benchmark, suite_home):
    """What the training thread does around every step (stop check, metric buffer, a flush per 25
    steps with its one host copy, progress, cadence checks), with a train_step that returns at once.
    Grids and checkpoints (every sample_every / checkpoint_every steps) are not per-step work and are
    left out; so is the metric writer's storing, done by its own process while training goes on."""
    recipe = "dcgan_fashion"
    cfg = run_setup.resolve_config(recipe, {"sample_every": 10**6, "checkpoint_every": 10**6}, max_steps=10**7)
    p = run_setup.prepare(recipe, cfg)
    trainer = run_setup.build_trainer(p)
    out = {"loss/d": torch.tensor(0.7), "loss/g": torch.tensor(1.3), "d_real": torch.tensor(0.6)}
    trainer.train_step = lambda next_batch: out
    s = harness.Session(p, trainer, run_setup.make_stream(p), Tracker.create("bench_null", "bench", {}, {}, {}), None,
                        progress=False)
    s.tracker.start_writer(wait=True)
    s.run(until=s.trainer.step + 5)

    def steps():
        s.run(until=s.trainer.step + NULL_STEPS)
        s.flush()

    def stored():  # untimed: the previous round's values are in the store before the next round
        s.tracker.flush(wait=True)
        return (), {}

    benchmark.pedantic(steps, setup=stored, rounds=5, iterations=1)
    per_step = benchmark.stats.stats.min / NULL_STEPS
    RESULTS.setdefault("null_step", {})["ours"] = per_step
    EXTRA["null_step"] = f"{per_step * 1e6:.0f} us per step (a 1 ms GPU step: {per_step / 1e-3:.1%})"
    s.tracker.finish()


def test_null_step_baseline(benchmark):
    """One step of the bare tutorial loop on dcgan_lsun's networks (64x64, batch 128), random data."""
    cfg = run_setup.resolve_config("dcgan_lsun", {})
    torch.manual_seed(0)
    t = registry.family("dcgan").trainer(cfg, DataInfo("random", "image", (3, 64, 64), 1280, 10), torch.device("cpu"))
    G, D, opt_g, opt_d = t.G, t.D, t.opt_g, t.opt_d
    real = torch.rand(cfg.batch_size, 3, 64, 64) * 2 - 1

    def step():
        fake = G(torch.randn(cfg.batch_size, cfg.nz, 1, 1))
        opt_d.zero_grad()
        out_r, out_f = D(real), D(fake.detach())
        (F.binary_cross_entropy_with_logits(out_r, torch.ones_like(out_r)) +
         F.binary_cross_entropy_with_logits(out_f, torch.zeros_like(out_f))).backward()
        opt_d.step()
        opt_g.zero_grad()
        out = D(fake)
        F.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward()
        opt_g.step()

    step()
    benchmark.pedantic(step, rounds=3, iterations=1)
    record("null_step", "baseline", benchmark)
    check("null_step")
