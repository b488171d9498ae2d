"""What every registry of the suite shares (families and recipes in `recipes.registry`, datasets
in `suite.data`, extractors and metrics in `evaluation.registry`): the name rule, one line for a
clash, and the origin stamped on what a plugin registers while the loader imports it.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

from suite.core.errors import PluginError

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_origin: dict = {}  # {"plugin", "sha256", "version"} while a plugin is imported; empty for built-ins


def origin() -> dict:
    """Where an entry being registered now comes from (a copy)."""
    return dict(_origin)


@contextmanager
def registering_for(plugin_origin: dict):
    _origin.clear()
    _origin.update(plugin_origin)
    try:
        yield
    finally:
        _origin.clear()


def owner(entry) -> str:
    where = getattr(entry, "origin", None) or {}
    return f"plugin {where['plugin']}" if where else "a built-in"


def check_name(kind: str, name, taken: dict) -> None:
    """A new entry's name: well formed and not taken (by a built-in or another plugin)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise PluginError(f"{kind} name {name!r} must be lower-case letters, digits and _ (starting with a letter)")
    if name in taken:
        raise PluginError(f"{kind} '{name}' is already registered by {owner(taken[name])}; choose another name")
