"""What a study is: its recipe, search space, objective, storage, sampler and pruner — the
data a coordinator hands its workers (as JSON) and its summary reads back.

    python -m suite tune gan_ring8 --trials 8 --sampler random --pruner none
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import optuna

from suite.core.errors import ConfigError
from suite.tune.space import Param


class ObjectiveMissing(ConfigError):
    """The study's --metric is not among what the recipe's evaluations compute."""


@dataclass
class StudySpec:
    recipe: str
    trials: int = 12
    timeout: float | None = None
    params: list[Param] = field(default_factory=list)
    metric: str | None = None
    direction: str | None = None
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    pruner: str = "median"
    sampler: str = "tpe"
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    max_steps: int | None = None
    device: str = "cpu"
    data_root: str | None = None
    seed_offset: int = 0  # sampler seed = seed + seed_offset + worker; a joining coordinator draws its own offset

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        d = json.loads(text)
        d["params"] = [Param(**p) for p in d["params"]]
        return cls(**d)


SAMPLERS = {  # name -> factory(seed); the CLI's --sampler choices
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
}
PRUNERS = {  # name -> factory(max_steps, eval_every); the CLI's --pruner choices
    "median": lambda max_steps, eval_every: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    "hyperband": lambda max_steps, eval_every: optuna.pruners.HyperbandPruner(min_resource=eval_every,
                                                                              max_resource=max_steps),
    "none": lambda max_steps, eval_every: optuna.pruners.NopPruner(),
}


def make_sampler(name: str, seed: int):
    if name not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{name}'")
    return SAMPLERS[name](seed)


def make_pruner(name: str, max_steps: int, eval_every: int):
    if name not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got '{name}'")
    return PRUNERS[name](max_steps, eval_every)
