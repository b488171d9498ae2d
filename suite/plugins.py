"""Outside code through the registration door: families, recipes, datasets, feature extractors and
metrics from plugins, found (a) in installed packages through the `gan_suite.plugins` entry-point
group and (b) in files or modules the user names.

    python -m suite list --plugin examples/plugins/wgan_gp.py
    SUITE_PLUGINS=examples/plugins/wgan_gp.py:mylab.gans python -m suite run wgangp_fashion

Loading outside code is always the user's choice: nothing is imported from a run's artifacts, a
data folder or the store. A run records where its family came from (tags `suite.plugin`,
`suite.plugin_sha256`, `suite.plugin_version`); resuming it, or joining its study or benchmark,
with a changed plugin source is refused unless the user allows it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from recipes import registry
from suite.core.errors import PluginError
from suite.core.registration import registering_for

ENTRY_POINT_GROUP = "gan_suite.plugins"
ENV = "SUITE_PLUGINS"  # os.pathsep-separated files or modules, loaded as if given with --plugin
LOADED: dict[str, dict] = {}  # plugin key (absolute path or module name) -> its origin
MODULES: dict[str, object] = {}  # plugin key -> the module it was imported as


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec


def _last_line(e: BaseException) -> str:
    return traceback.format_exception_only(type(e), e)[-1].strip()


def _source(spec: str) -> tuple[str, Path | None]:
    """(the plugin's key, its source file), found without importing it."""
    if _is_file(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"--plugin {spec}: no such file")
        return str(path), path
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise PluginError(f"--plugin {spec}: no such module (and no file of that name)")
    return spec, Path(found.origin) if found.origin and found.has_location else None


def _version(module: str) -> str:
    """The installed distribution's version of a module plugin ('' when it is not installed)."""
    top = module.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def _import(key: str, path: Path | None):
    if path is None or not _is_file(key):
        return importlib.import_module(key)
    name = f"suite_plugin_{path.stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses resolve a module's annotations through sys.modules
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_module(path: str):
    """A user's file named on the command line (a --generator), imported as it is: its own choice,
    never a run's artifact. Errors in one line."""
    key, source = _source(path)
    if not _is_file(key):
        raise PluginError(f"{path}: expected a .py file")
    try:
        return _import(key, source)
    except (KeyboardInterrupt, MemoryError):
        raise
    except BaseException as e:  # noqa: BLE001 - the user's own error, in one line
        raise PluginError(f"{path} raised on import: {_last_line(e)}") from None


def load(spec: str) -> dict:
    """Import one plugin (once per process); everything it registers carries its origin."""
    key, path = _source(spec.strip())
    if key in LOADED:
        return LOADED[key]
    origin = {"plugin": key, "sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path else ""}
    if not _is_file(key) and (version := _version(key)):
        origin["version"] = version
    with registering_for(origin):
        try:
            MODULES[key] = _import(key, path)
        except PluginError as e:
            raise PluginError(f"plugin {spec}: {e}") from None
        except (KeyboardInterrupt, MemoryError):
            raise
        except SystemExit as e:
            raise PluginError(f"plugin {spec} called exit({e.code}) on import") from None
        except BaseException as e:  # noqa: BLE001 - the plugin's own error, in one line
            raise PluginError(f"plugin {spec} raised on import: {_last_line(e)}") from None
    LOADED[key] = origin
    return origin


def imported(spec: str):
    """The module a loaded plugin was imported as (its helpers, for tests and notebooks)."""
    return MODULES[_source(spec)[0]]


def load_all(specs: list[str] | None = None) -> list[dict]:
    """Installed plugins (entry points), then SUITE_PLUGINS, then the command's --plugin values."""
    out = [load(ep.value.split(":")[0]) for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    for spec in [*os.environ.get(ENV, "").split(os.pathsep), *(specs or [])]:
        if spec.strip():
            out.append(load(spec))
    return out


def loaded_specs() -> str:
    """What a worker process must load to see the same registries (its SUITE_PLUGINS)."""
    return os.pathsep.join(LOADED)


def origin_tags(family: str) -> dict[str, str]:
    """Tags that say where a plugin family came from; none for a built-in."""
    origin = registry.family(family).origin
    return {("suite.plugin" if k == "plugin" else f"suite.plugin_{k}"): v for k, v in origin.items() if v}


def check_unchanged(tags: dict, allow_changed: bool = False) -> None:
    """A run (or study, benchmark) started from a plugin continues only with the same source."""
    plugin, sha, family = tags.get("suite.plugin"), tags.get("suite.plugin_sha256"), tags.get("suite.family")
    if not plugin:
        return
    if family and family not in registry.FAMILIES:
        raise PluginError(f"this run's family '{family}' comes from plugin {plugin}: pass --plugin {plugin}")
    now = registry.FAMILIES[family].origin if family else LOADED.get(plugin, {})
    if sha and now.get("sha256") != sha and not allow_changed:
        raise PluginError(f"plugin {now.get('plugin', plugin)} has changed since this run started (sha256 {sha[:12]} "
                          f"then, {str(now.get('sha256'))[:12]} now); restore it, or pass --allow-changed-plugin")


def sources(families) -> dict[str, str]:
    """{plugin: sha256 of its source} for the plugin families among `families` (a study's or a
    benchmark's, saved when it is created)."""
    origins = (registry.family(f).origin for f in families)
    return {o["plugin"]: o.get("sha256", "") for o in origins if o}


def check_same_sources(saved: dict[str, str], what: str) -> None:
    """A study or benchmark joined (another host, a later command) runs the plugin source it was
    started with, or is refused in one line: cells trained by other code would be compared."""
    for plugin, sha in saved.items():
        now = LOADED.get(plugin)
        if now is None:
            raise PluginError(f"{what} was started with plugin {plugin}: pass --plugin {plugin}")
        if now.get("sha256") != sha:
            raise PluginError(f"{what} was started with another version of plugin {plugin} (sha256 {sha[:12]} then, "
                              f"{now.get('sha256', '')[:12]} here): every host must run the same source")
