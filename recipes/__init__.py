"""Recipe families, one file each (its Config with the paper's values, its networks, its Trainer,
and the named recipes that use it), registered through `recipes.registry` — the same door a
plugin uses. The contract a family implements is re-exported here for plugin authors:

    from recipes import BaseConfig, Trainer, register_family, register_recipe, set_requires_grad
"""

from recipes.base import Trainer
from recipes.config import BaseConfig
from recipes.layers import set_requires_grad
from recipes.registry import register_family, register_recipe
from recipes import cnn_gan, cyclegan, dcgan, gan, wgan  # noqa: E402,F401 - the built-ins register themselves

__all__ = ["BaseConfig", "Trainer", "register_family", "register_recipe", "set_requires_grad"]
