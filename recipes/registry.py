"""Named recipes: a family + a dataset + size overrides, nothing more.

    python -m suite list
    python -m suite show wgan_lsun --set lr_d=1e-4

Paper-sized recipes keep every family default. CPU-sized ones change only size knobs (image
size, widths, length, dataset) so that they train on data that exists offline.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from recipes import cnn_gan, cyclegan, dcgan, gan, wgan
from recipes.base import BaseConfig, Trainer, apply_overrides, validate
from suite.core.errors import ConfigError

FAMILIES: dict[str, tuple[type[BaseConfig], type[Trainer]]] = {
    "gan": (gan.Config, gan.GANTrainer),
    "cnn_gan": (cnn_gan.Config, cnn_gan.CNNGANTrainer),
    "dcgan": (dcgan.Config, dcgan.DCGANTrainer),
    "wgan": (wgan.Config, wgan.WGANTrainer),
    "cyclegan": (cyclegan.Config, cyclegan.CycleGANTrainer),
}


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    dataset: str
    summary: str
    overrides: dict = field(default_factory=dict)
    cpu_sized: bool = False

    def config(self) -> BaseConfig:
        cfg_cls = FAMILIES[self.family][0]
        return apply_overrides(cfg_cls(), {"dataset": self.dataset, **self.overrides})


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> None:
    if recipe.name in RECIPES or recipe.family not in FAMILIES:
        raise ValueError(f"bad recipe registration: {recipe.name}")
    RECIPES[recipe.name] = recipe


def get(name: str) -> Recipe:
    if name not in RECIPES:
        near = difflib.get_close_matches(name, RECIPES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(f"unknown recipe '{name}'{hint} (see `python -m suite list`)")
    return RECIPES[name]


def resolve(name: str, overrides: dict[str, object] | None = None) -> BaseConfig:
    """The recipe's config with `--set` overrides applied and validated."""
    return validate(apply_overrides(get(name).config(), overrides or {}))


def config_from_dict(family: str, values: dict) -> BaseConfig:
    """Rebuild a saved config (e.g. a resumed run's config.json)."""
    cfg_cls = FAMILIES[family][0]
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    return validate(apply_overrides(cfg_cls(), {k: (tuple(v) if isinstance(v, list) else v)
                                                for k, v in values.items() if k in names}))


# --- paper-sized recipes (need the dataset locally; see `python -m suite list`)
register(Recipe("gan_mnist", "gan", "mnist", "Goodfellow et al. MLP GAN on MNIST 28x28 (seed 002)"))
register(Recipe("cnn_gan_mnist", "cnn_gan", "mnist", "Lightning lecture CNN GAN on MNIST 28x28 (seed 003)"))
register(Recipe("dcgan_celeba", "dcgan", "celeba", "PyTorch DCGAN tutorial on CelebA 64x64 (seed 000)"))
register(Recipe("dcgan_lsun", "dcgan", "lsun_bedroom", "DCGAN paper on LSUN bedrooms 64x64"))
register(Recipe("wgan_lsun", "wgan", "lsun_bedroom", "WGAN (clipping, RMSprop, n_critic 5) on LSUN bedrooms 64x64",
                {"n_extra_layers": 1}))
register(Recipe("cyclegan_horse2zebra", "cyclegan", "horse2zebra", "CycleGAN horse <-> zebra 256x256, batch 1"))

# --- CPU-sized recipes on offline data
_TOY = {"output_activation": "none", "g_hidden": (128, 128, 128), "d_hidden": (128, 128), "n_sample": 2000,
        "epochs": 20, "sample_every": 1000, "checkpoint_every": 2000}
register(Recipe("gan_ring8", "gan", "ring8", "MLP GAN on a ring of 8 Gaussians (mode-count toy)", _TOY, True))
register(Recipe("gan_grid25", "gan", "grid25", "MLP GAN on a 5x5 grid of Gaussians (mode-count toy)", _TOY, True))
register(Recipe("gan_fashion", "gan", "fashion_mnist", "MLP GAN on Fashion-MNIST 28x28", {"epochs": 10}, True))
register(Recipe("cnn_gan_fashion", "cnn_gan", "fashion_mnist", "Lecture CNN GAN on Fashion-MNIST 28x28",
                {"epochs": 5}, True))
_SMALL_DC = {"image_size": 32, "ngf": 32, "ndf": 32, "sample_every": 200, "checkpoint_every": 500}
register(Recipe("dcgan_fashion", "dcgan", "fashion_mnist", "DCGAN on Fashion-MNIST 32x32, ngf=ndf=32",
                {**_SMALL_DC, "epochs": 2}, True))
register(Recipe("wgan_fashion", "wgan", "fashion_mnist", "WGAN on Fashion-MNIST 32x32, ngf=ndf=32",
                {**_SMALL_DC, "epochs": 5}, True))
register(Recipe("dcgan_digits", "dcgan", "digits", "DCGAN on scikit-learn digits 32x32, ngf=ndf=32",
                {**_SMALL_DC, "epochs": 100}, True))
register(Recipe("wgan_digits", "wgan", "digits", "WGAN on scikit-learn digits 32x32, ngf=ndf=32",
                {**_SMALL_DC, "epochs": 200}, True))
register(Recipe("cyclegan_fashion", "cyclegan", "fashion_unpaired",
                "CycleGAN Fashion-MNIST <-> restyled Fashion-MNIST (disjoint halves, 1k each) 32x32, ngf=ndf=32",
                {"image_size": 32, "load_size": 36, "ngf": 32, "ndf": 32, "train_subset": 1000, "epochs": 6,
                 "decay_start_epoch": 3, "sample_every": 500, "checkpoint_every": 1000}, True))
