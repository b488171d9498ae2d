"""Recipes are faithful by default, and their training mechanics do what the papers say."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from recipes import cnn_gan, cyclegan, dcgan, gan, registry, wgan
from suite.data import DataInfo


def info(shape=(1, 32, 32), kind="image", n=1000) -> DataInfo:
    return DataInfo("test", kind, shape, n, n // 16)


def stream_of(shape, batch, kind="image"):
    g = torch.Generator().manual_seed(123)

    def next_batch():
        if kind == "unpaired":
            return torch.rand(batch, *shape, generator=g) * 2 - 1, torch.rand(batch, *shape, generator=g) * 2 - 1
        return torch.rand(batch, *shape, generator=g) * 2 - 1

    return next_batch


def params_of(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- paper defaults


def test_dcgan_defaults_match_the_tutorial():
    cfg = dcgan.Config()
    assert (cfg.image_size, cfg.nz, cfg.ngf, cfg.ndf, cfg.batch_size) == (64, 100, 64, 64, 128)
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2) == (2e-4, 2e-4, 0.5, 0.999)
    torch.manual_seed(0)
    t = dcgan.DCGANTrainer(cfg, info((3, 64, 64)), "cpu")
    assert isinstance(t.opt_g, torch.optim.Adam) and t.opt_g.defaults["betas"] == (0.5, 0.999)
    convs = [m.weight for m in itertools.chain(t.G.modules(), t.D.modules())
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3  # N(0, 0.02)
    bns = [m for m in itertools.chain(t.G.modules(), t.D.modules()) if isinstance(m, nn.BatchNorm2d)]
    bw = torch.cat([b.weight.flatten() for b in bns])
    assert abs(bw.mean() - 1) < 5e-3 and abs(bw.std() - 0.02) < 5e-3  # N(1, 0.02)
    assert all(torch.count_nonzero(b.bias) == 0 for b in bns)
    # G: 4x4 map of ngf*8 channels up to 64x64 with tanh; D: no BatchNorm on the first layer
    assert t.G.net[0].out_channels == 64 * 8 and isinstance(t.G.net[-1], nn.Tanh)
    assert isinstance(t.D.net[0], nn.Conv2d) and isinstance(t.D.net[1], nn.LeakyReLU)
    assert t.G(t.noise(2)).shape == (2, 3, 64, 64) and t.D(torch.zeros(2, 3, 64, 64)).shape == (2,)


def test_wgan_defaults_match_the_paper():
    cfg = wgan.Config()
    assert (cfg.lr_g, cfg.lr_d, cfg.clip_value, cfg.n_critic, cfg.batch_size) == (5e-5, 5e-5, 0.01, 5, 64)
    assert (cfg.critic_burst, cfg.burst_first, cfg.burst_every) == (100, 25, 500)
    t = wgan.WGANTrainer(cfg, info((3, 64, 64)), "cpu")
    assert isinstance(t.opt_d, torch.optim.RMSprop) and t.opt_d.defaults["lr"] == 5e-5
    assert not any(isinstance(m, nn.Sigmoid) for m in t.D.modules())  # a critic, not a classifier
    assert isinstance(list(t.D.modules())[-1], nn.Conv2d)
    lsun = registry.resolve("wgan_lsun")
    assert lsun.n_extra_layers == 1 and lsun.image_size == 64 and lsun.dataset == "lsun_bedroom"


def test_cyclegan_defaults_match_the_paper():
    cfg = cyclegan.Config()
    assert (cfg.image_size, cfg.load_size, cfg.flip, cfg.batch_size, cfg.pool_size) == (256, 286, True, 1, 50)
    assert (cfg.lambda_cycle, cfg.lambda_identity, cfg.lr_g, cfg.beta1) == (10.0, 0.5, 2e-4, 0.5)
    assert cfg.blocks == 9 and cyclegan.Config(image_size=128).blocks == 6
    assert (cfg.epochs, cfg.decay_start_epoch) == (200, 100)
    g = cyclegan.ResnetGenerator(3, 3, 64, 9)
    assert sum(isinstance(m, cyclegan.ResnetBlock) for m in g.modules()) == 9
    assert any(isinstance(m, nn.ReflectionPad2d) for m in g.modules())
    assert all(not m.affine for m in g.modules() if isinstance(m, nn.InstanceNorm2d))
    d = cyclegan.PatchDiscriminator(3, 64, 3)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    # receptive field of one output unit is 70x70
    rf = 1
    for c in reversed(convs):
        rf = (rf - 1) * c.stride[0] + c.kernel_size[0]
    assert rf == 70


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no training here
def test_cyclegan_lr_is_constant_then_linear_to_zero():
    cfg = cyclegan.Config(image_size=32, load_size=32, ngf=4, ndf=4, epochs=10, decay_start_epoch=5)
    t = cyclegan.CycleGANTrainer(cfg, info((1, 32, 32), "unpaired"), "cpu")
    lrs = []
    for _ in range(10):
        lrs.append(t.opt_g.param_groups[0]["lr"])
        t.on_epoch_end()
    assert lrs[:5] == [2e-4] * 5
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(2e-4 / 6)  # junyanz: 1 - (epoch + 1 - n_epochs) / (n_epochs_decay + 1)


def test_gan_and_cnn_gan_defaults():
    g = gan.Config()
    assert (g.nz, g.g_hidden, g.d_hidden, g.lr_g, g.beta1) == (100, (256, 512, 1024), (512, 256), 2e-4, 0.5)
    t = gan.GANTrainer(g, info((1, 28, 28)), "cpu")
    assert isinstance(t.G.net[-1], nn.Tanh) and sum(isinstance(m, nn.BatchNorm1d) for m in t.G.modules()) == 3
    c = cnn_gan.Config()
    tc = cnn_gan.CNNGANTrainer(c, info((1, 28, 28)), "cpu")
    assert (c.lr_g, c.lr_d, c.nz, c.epochs) == (2e-4, 2e-4, 100, 20)
    assert tc.G(tc.noise(3)).shape == (3, 1, 28, 28) and tc.D.fc1.in_features == 320


def test_every_named_recipe_resolves_and_builds():
    for name, r in registry.RECIPES.items():
        cfg = registry.resolve(name)
        assert cfg.family == r.family and cfg.dataset == r.dataset
    required = {"gan_mnist", "cnn_gan_mnist", "dcgan_celeba", "dcgan_lsun", "wgan_lsun", "cyclegan_horse2zebra",
                "gan_ring8", "gan_grid25", "gan_fashion", "dcgan_fashion", "wgan_fashion", "dcgan_digits",
                "wgan_digits", "cyclegan_fashion"}
    assert required <= set(registry.RECIPES)
    assert registry.resolve("wgan_fashion").image_size == 32 == registry.resolve("dcgan_fashion").image_size


# ----------------------------------------------------------------------------- mechanics


@pytest.mark.parametrize("family", ["gan", "cnn_gan", "dcgan"])
def test_d_step_does_not_update_g_and_g_step_does_not_update_d(family):
    torch.manual_seed(0)
    if family == "gan":
        t = gan.GANTrainer(gan.Config(g_hidden=(32, 32), d_hidden=(32,)), info((1, 28, 28)), "cpu")
        shape = (1, 28, 28)
    elif family == "cnn_gan":
        t, shape = cnn_gan.CNNGANTrainer(cnn_gan.Config(), info((1, 28, 28)), "cpu"), (1, 28, 28)
    else:
        t, shape = dcgan.DCGANTrainer(dcgan.Config(image_size=16, ngf=8, ndf=8), info((1, 16, 16)), "cpu"), (1, 16, 16)
    real = torch.rand(8, *shape) * 2 - 1
    g0, d0 = params_of(t.G), params_of(t.D)
    fake = t.G(t.noise(8))
    t.d_step(real, fake)
    g1, d1 = params_of(t.G), params_of(t.D)
    assert same(g0, g1), "the D step changed G"
    assert not same(d0, d1), "the D step did not change D"
    t.g_step(t.G(t.noise(8)))
    g2, d2 = params_of(t.G), params_of(t.D)
    assert same(d1, d2), "the G step changed D"
    assert not same(g1, g2), "the G step did not change G"
    assert all(p.requires_grad for p in t.D.parameters())  # D unfrozen again after the G step


def test_wgan_critic_weights_stay_clipped_after_every_critic_step():
    torch.manual_seed(0)
    cfg = wgan.Config(image_size=16, ngf=8, ndf=8, batch_size=16, lr_d=5e-3)  # large lr: updates leave the box
    t = wgan.WGANTrainer(cfg, info((1, 16, 16)), "cpu")
    assert max(p.abs().max() for p in t.D.parameters()) > 0.01  # N(0, 0.02) init starts outside
    maxima = []
    original = t.critic_step

    def critic_step(real):
        out = original(real)
        maxima.append(max(float(p.detach().abs().max()) for p in t.D.parameters()))
        return out

    t.critic_step = critic_step
    nb = stream_of((1, 16, 16), 16)
    for _ in range(3):
        t.train_step(nb)
        t.step += 1
    assert len(maxima) == 300 and max(maxima) <= 0.01


def test_wgan_critic_schedule_counts_critic_updates_per_generator_step():
    cfg = wgan.Config(image_size=16, ngf=4, ndf=4, batch_size=4)
    t = wgan.WGANTrainer(cfg, info((1, 16, 16)), "cpu")
    calls = []
    step = t.opt_d.step
    t.opt_d.step = lambda *a, **k: (calls.append(t.step), step(*a, **k))[1]
    nb = stream_of((1, 16, 16), 4)
    expected = {}
    for g in [0, 1, 24, 25, 26, 499, 500, 501, 1000, 1001]:
        t.step = g
        out = t.train_step(nb)
        expected[g] = 100 if g < 25 or g % 500 == 0 else 5
        assert out["critic_steps"] == expected[g]
    counts = {g: calls.count(g) for g in expected}
    assert counts == expected
    assert [wgan.critic_iters(cfg, g) for g in range(30)] == [100] * 25 + [5] * 5


def test_wgan_critic_step_does_not_update_generator_and_vice_versa():
    torch.manual_seed(0)
    t = wgan.WGANTrainer(wgan.Config(image_size=16, ngf=8, ndf=8), info((1, 16, 16)), "cpu")
    g0, d0 = params_of(t.G), params_of(t.D)
    _, w = t.critic_step(torch.rand(8, 1, 16, 16) * 2 - 1)
    assert same(g0, params_of(t.G)) and not same(d0, params_of(t.D))
    d1 = params_of(t.D)
    t.generator_step(8)
    assert same(d1, params_of(t.D)) and not same(g0, params_of(t.G))


def test_a_critic_step_raises_the_wasserstein_estimate_and_clamps_every_critic_parameter():
    """Real images are bright, the untrained generator's are near grey: one critic update must
    move f(real) - f(fake) up on those very batches (a flipped loss sign moves it down), and
    every critic parameter, BatchNorm's affine weights (initialised near 1) included, must end
    inside [-c, c]."""
    torch.manual_seed(0)
    cfg = wgan.Config(image_size=16, ngf=8, ndf=8, lr_d=1e-3)
    t = wgan.WGANTrainer(cfg, info((1, 16, 16)), "cpu")
    real = torch.full((16, 1, 16, 16), 0.9) + 0.05 * torch.randn(16, 1, 16, 16)
    z = torch.randn(16, cfg.nz, 1, 1)
    t.noise = lambda n, generator=None: z[:n]  # the critic step's fakes: G(z), the same batch before and after

    def estimate() -> float:
        t.clip_critic()  # the critic the step starts from is the clipped one
        with torch.no_grad():
            return float(t.D(real).mean() - t.D(t.G(z)).mean())

    norms = [m for m in t.D.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and max(float(m.weight.abs().max()) for m in norms) > cfg.clip_value  # N(1, 0.02) init
    before = estimate()
    t.critic_step(real)
    with torch.no_grad():
        after = float(t.D(real).mean() - t.D(t.G(z)).mean())
    assert after > before + 1e-6
    for name, p in t.D.named_parameters():
        assert float(p.abs().max()) <= cfg.clip_value, name
    assert max(float(m.weight.abs().max()) for m in norms) <= cfg.clip_value


def test_cyclegan_pool_returns_old_images_half_the_time_once_full():
    torch.manual_seed(0)
    pool = cyclegan.ImagePool(50)
    seen = {}
    for i in range(50):  # filling: every image comes straight back
        img = torch.full((1, 1, 2, 2), float(i))
        assert torch.equal(pool.query(img), img)
    old = 0
    n = 4000
    for i in range(50, 50 + n):
        img = torch.full((1, 1, 2, 2), float(i))
        out = pool.query(img)
        v = float(out[0, 0, 0, 0])
        assert v <= i
        old += v < i
        seen[v] = True
    rate = old / n
    assert abs(rate - 0.5) < 4 * (0.25 / n) ** 0.5  # binomial(n, 1/2) within 4 sigma
    assert len(pool.images) == 50
    assert torch.equal(cyclegan.ImagePool(0).query(img), img)


def test_cyclegan_step_logs_its_loss_terms_and_uses_the_pool():
    torch.manual_seed(0)
    cfg = cyclegan.Config(image_size=32, load_size=32, ngf=4, ndf=4, n_blocks=1, pool_size=3)
    t = cyclegan.CycleGANTrainer(cfg, info((1, 32, 32), "unpaired"), "cpu")
    out = t.train_step(stream_of((1, 32, 32), 1, "unpaired"))
    for k in ("loss/g", "loss/d_a", "loss/d_b", "loss/cycle_a", "loss/cycle_b", "loss/idt_a", "loss/idt_b",
              "loss/g_adv_a", "loss/g_adv_b"):
        assert torch.isfinite(out[k]), k
    assert len(t.pool_a.images) == 1 and len(t.pool_b.images) == 1


def test_cyclegan_loss_weights_match_the_paper_on_fixed_tensors():
    """lambda_cycle = 10 and identity 0.5 * lambda = 5, LSGAN terms, D loss halved: the logged terms
    equal the paper's formulas evaluated by hand with the same (pre-step) networks."""
    import copy

    torch.manual_seed(0)
    cfg = cyclegan.Config(image_size=32, load_size=32, ngf=4, ndf=4, n_blocks=1)
    assert (cfg.lambda_cycle, cfg.lambda_identity) == (10.0, 0.5)
    t = cyclegan.CycleGANTrainer(cfg, info((1, 32, 32), "unpaired"), "cpu")
    a, b = torch.rand(1, 1, 32, 32) * 2 - 1, torch.rand(1, 1, 32, 32) * 2 - 1
    G_A, G_B, D_A, D_B = (copy.deepcopy(m) for m in (t.G_A, t.G_B, t.D_A, t.D_B))
    out = t.train_step(lambda: (a, b))
    with torch.no_grad():
        fake_b, fake_a = G_A(a), G_B(b)
        mse1 = lambda x: ((x - 1) ** 2).mean()  # noqa: E731
        hand = {
            "loss/cycle_a": 10 * (G_B(fake_b) - a).abs().mean(),
            "loss/cycle_b": 10 * (G_A(fake_a) - b).abs().mean(),
            "loss/idt_a": 5 * (G_A(b) - b).abs().mean(),
            "loss/idt_b": 5 * (G_B(a) - a).abs().mean(),
            "loss/g_adv_a": mse1(D_A(fake_b)),
            "loss/g_adv_b": mse1(D_B(fake_a)),
            # the pool is empty, so D sees this step's fakes
            "loss/d_a": 0.5 * (mse1(D_A(b)) + (D_A(fake_b) ** 2).mean()),
            "loss/d_b": 0.5 * (mse1(D_B(a)) + (D_B(fake_a) ** 2).mean()),
        }
    for key, value in hand.items():
        assert torch.allclose(out[key], value, rtol=1e-5, atol=1e-7), key


def test_the_optimizer_is_part_of_every_recipe_and_settable():
    """The paper's optimizer is a config field (so `suite show` and the MLflow params carry it) and
    `--set optimizer=adam` runs the WGAN paper's own ablation."""
    import json

    from recipes.config import flatten
    from tests.helpers import run_main

    papers = {"gan": "adam", "cnn_gan": "adam", "dcgan": "adam", "wgan": "rmsprop", "cyclegan": "adam"}
    for name, family in registry.FAMILIES.items():
        assert family.config().optimizer == papers[name], name
    shown = json.loads(run_main("show", "wgan_lsun").stdout)["config"]
    assert shown["optimizer"] == "rmsprop" and shown["rms_alpha"] == 0.99 and shown["momentum"] == 0.0
    assert flatten(shown)["optimizer"] == "rmsprop"  # what the run logs as its params
    rms = wgan.WGANTrainer(registry.resolve("wgan_fashion", {"image_size": 16, "ngf": 4, "ndf": 4}), info((1, 16, 16)), "cpu")
    assert isinstance(rms.opt_d, torch.optim.RMSprop) and rms.opt_d.defaults["alpha"] == 0.99
    adam = wgan.WGANTrainer(registry.resolve("wgan_fashion", {"image_size": 16, "ngf": 4, "ndf": 4,
                                                              "optimizer": "adam", "beta1": 0.5}),
                            info((1, 16, 16)), "cpu")
    assert isinstance(adam.opt_d, torch.optim.Adam) and adam.opt_d.defaults["betas"] == (0.5, 0.999)
    assert adam.opt_d.defaults["lr"] == 5e-5
    bad = run_main("show", "wgan_lsun", "--set", "optimizer=lbfgs")
    assert bad.returncode == 2 and "invalid optimizer='lbfgs'" in bad.stderr
