"""The search space of a study: which config fields, over which ranges, on which scale.

    python -m suite tune gan_ring8 --params lr_g,lr_d
    python -m suite tune dcgan_fashion --params lr_g:1e-5:1e-3:log,beta1:0.3:0.9:lin
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluation import metrics
from recipes.config import config_fields
from suite.core.errors import ConfigError

LR_RANGE = (1e-5, 1e-3)  # default search range of every learning rate (log-uniform)


@dataclass
class Param:
    name: str
    low: float
    high: float
    log: bool
    integer: bool

    def suggest(self, trial):
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def parse_space(text: str | None, cfg) -> list[Param]:
    """'lr_g,lr_d' (learning rates log-uniform over LR_RANGE; other numeric fields over
    [default / 4, default * 4]) or explicit 'name:low:high[:log|:lin]'."""
    fields = config_fields(type(cfg))
    out = []
    for item in (text or "lr_g,lr_d").split(","):
        parts = item.strip().split(":")
        name = parts[0]
        if name not in fields:
            raise ConfigError(f"--params: '{name}' is not a config field of {cfg.family}")
        kind = fields[name]
        if kind not in (int, float):
            raise ConfigError(f"--params: '{name}' is not numeric")
        default = getattr(cfg, name)
        try:
            if len(parts) >= 3:
                low, high = float(parts[1]), float(parts[2])
            elif name.startswith("lr"):
                low, high = LR_RANGE
            else:
                low, high = (max(1, default // 4), default * 4) if kind is int else (default / 4, default * 4)
        except ValueError:
            raise ConfigError(f"--params: cannot read the range in '{item}'") from None
        log = parts[3] != "lin" if len(parts) >= 4 else (name.startswith("lr") or kind is float)
        if not low < high or (log and low <= 0):
            raise ConfigError(f"--params: invalid range for {name}: [{low}, {high}]{' (log)' if log else ''}")
        out.append(Param(name, low, high, log, kind is int))
    return out


def infer_direction(metric: str) -> str:
    """The Optuna direction of an objective, from the metric table."""
    better = metrics.direction(metric)
    if not better:
        raise ConfigError(f"metric '{metric}' has no better side in evaluation.metrics (or is not an evaluation "
                          "metric); pass --direction minimize|maximize")
    return "minimize" if better == "min" else "maximize"
