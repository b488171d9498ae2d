"""The registration door for families and named recipes: the built-in ones (each family file
registers itself and its recipes at its end) and plugins use the same two calls.

    python -m suite list
    python -m suite list --plugin examples/plugins/wgan_gp.py

A family is its `Config` dataclass (a BaseConfig with the paper's values, every field typed) and
its `Trainer`; a named recipe is a family + a dataset + size overrides + a one-line note.
Registration checks the contract and says in one line what is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field

from recipes.base import Trainer
from recipes.config import BaseConfig, apply_overrides, validate
from suite.core.errors import ConfigError, PluginError
from suite.core.registration import check_name, origin

SCALARS = (bool, int, float, str)
KINDS = ("image", "points", "translation")
DATA_KINDS = ("image", "points", "unpaired")


@dataclass(frozen=True)
class Family:
    name: str
    config: type[BaseConfig]
    trainer: type[Trainer]
    origin: dict = field(default_factory=dict)  # where a plugin family came from (empty: built in)


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    dataset: str
    summary: str
    overrides: dict = field(default_factory=dict)
    cpu_sized: bool = False
    origin: dict = field(default_factory=dict)

    def config(self) -> BaseConfig:
        return apply_overrides(FAMILIES[self.family].config(), {"dataset": self.dataset, **self.overrides})


FAMILIES: dict[str, Family] = {}
RECIPES: dict[str, Recipe] = {}


def _check_config(name: str, config) -> None:
    if not (isinstance(config, type) and issubclass(config, BaseConfig) and "__dataclass_fields__" in vars(config)):
        raise PluginError(f"family '{name}': its Config must be a @dataclass subclass of recipes.BaseConfig, "
                          f"got {config!r}")
    own = config.__dict__.get("__annotations__", {})
    for attr, value in vars(config).items():  # a class attribute with a default but no annotation is no field
        if not attr.startswith("_") and attr not in own and not callable(value) and attr != "family" and \
                not isinstance(value, (classmethod, staticmethod, property)) and attr not in BaseConfig.__dict__:
            raise PluginError(f"family '{name}': Config.{attr} has no type annotation (write `{attr}: "
                              f"{type(value).__name__} = {value!r}`), so --set could not parse it")
    try:
        hints = typing.get_type_hints(config)
    except Exception as e:  # noqa: BLE001 - an annotation that does not resolve
        raise PluginError(f"family '{name}': Config's annotations do not resolve ({type(e).__name__}: {e})") from None
    for f in dataclasses.fields(config):
        kind = hints[f.name]
        args = typing.get_args(kind)
        ok = kind in SCALARS or (typing.get_origin(kind) is tuple and all(a in SCALARS or a is Ellipsis for a in args))
        if not ok:
            raise PluginError(f"family '{name}': Config.{f.name} is typed {kind!r}; fields must be bool, int, float, "
                              "str or a tuple of them (what --set, MLflow params and Optuna can carry)")
    if config.family not in ("", name):
        raise PluginError(f"family '{name}': its Config says family = {config.family!r}")
    try:
        config()
    except Exception as e:  # noqa: BLE001 - the defaults themselves are broken
        raise PluginError(f"family '{name}': Config() fails with its defaults ({type(e).__name__}: {e})") from None


def _check_trainer(name: str, trainer) -> None:
    if not (isinstance(trainer, type) and issubclass(trainer, Trainer)):
        raise PluginError(f"family '{name}': its Trainer must be a subclass of recipes.Trainer, got {trainer!r}")
    if trainer.train_step is Trainer.train_step:
        raise PluginError(f"family '{name}': {trainer.__name__} does not implement train_step(next_batch)")
    if trainer.kind not in KINDS:
        raise PluginError(f"family '{name}': {trainer.__name__}.kind must be one of {', '.join(KINDS)}, got {trainer.kind!r}")
    if trainer.kind != "translation" and trainer.noise is Trainer.noise:
        raise PluginError(f"family '{name}': {trainer.__name__} does not implement noise(n, generator) (latents for G)")
    if not trainer.data_kinds or any(k not in DATA_KINDS for k in trainer.data_kinds):
        raise PluginError(f"family '{name}': {trainer.__name__}.data_kinds must name some of {', '.join(DATA_KINDS)}")
    if not isinstance(trainer.min_batch, int) or trainer.min_batch < 1:
        raise PluginError(f"family '{name}': {trainer.__name__}.min_batch must be an int >= 1")
    if not all(isinstance(k, str) for k in trainer.progress_keys):
        raise PluginError(f"family '{name}': {trainer.__name__}.progress_keys must be a tuple of strings")


def register_family(name: str, config: type[BaseConfig], trainer: type[Trainer]) -> Family:
    """Make a family known to every command: `suite list/show/run/tune/benchmark/report`."""
    check_name("family", name, FAMILIES)
    _check_config(name, config)
    _check_trainer(name, trainer)
    if not config.family:
        config.family = name
    FAMILIES[name] = Family(name, config, trainer, origin())
    return FAMILIES[name]


def register_recipe(name: str, family: str, dataset: str, summary: str, overrides: dict | None = None,
                    cpu_sized: bool = False) -> Recipe:
    """A named recipe: `family` with `dataset` and size overrides (checked against its Config)."""
    check_name("recipe", name, RECIPES)
    if family not in FAMILIES:
        raise PluginError(f"recipe '{name}': no family '{family}' is registered (register the family first)")
    recipe = Recipe(name, family, dataset, summary, dict(overrides or {}), cpu_sized, origin())
    try:
        recipe.config()
    except ConfigError as e:
        raise PluginError(f"recipe '{name}': {e}") from None
    RECIPES[name] = recipe
    return recipe


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"no family '{name}' is registered (a plugin's family needs its --plugin)")
    return FAMILIES[name]


def get(name: str) -> Recipe:
    if name not in RECIPES:
        near = difflib.get_close_matches(name, RECIPES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(f"unknown recipe '{name}'{hint} (see `python -m suite list`; a plugin's recipes need its --plugin)")
    return RECIPES[name]


def resolve(name: str, overrides: dict[str, object] | None = None) -> BaseConfig:
    """The recipe's config with `--set` overrides applied and validated."""
    return validate(apply_overrides(get(name).config(), overrides or {}))


def config_from_dict(family_name: str, values: dict) -> BaseConfig:
    """Rebuild a saved config (e.g. a resumed run's config.json)."""
    cfg_cls = family(family_name).config
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    return validate(apply_overrides(cfg_cls(), {k: (tuple(v) if isinstance(v, list) else v)
                                                for k, v in values.items() if k in names}))
