"""Loading plugins: the built-in ones from a list, third-party ones from entry points.

Each third-party plugin is loaded on its own: one that fails to import (or whose hook raises)
costs one warning line on stderr naming it, and everything else still loads. Environment:

- ``SKETCHBENCH_LOAD_PLUGINS=a,b``: load only these third-party plugins (empty: none).
- ``SKETCHBENCH_DISABLE_PLUGINS=a,b``: never load these (built-ins included).
- ``SKETCHBENCH_STRICT_PLUGINS=1``: a plugin that fails to load is fatal (exit code 4).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registry

ENTRY_POINT_GROUP = "sketchbench"

#: Built-in plugin packages, shipped in this distribution under ``plugins/``. They use only the
#: public API, exactly like a third-party plugin; the core never names a method or a dataset.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "sketchbench_datasets",
    "sketchbench_teachers",
    "sketchbench_students",
    "sketchbench_dynamic",
)


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin" or "entry point"
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _strict() -> bool:
    return os.environ.get("SKETCHBENCH_STRICT_PLUGINS", "") not in ("", "0", "false", "no")


class PluginHost:
    """Owns the pluggy manager and the method/dataset registries filled from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("sketchbench")
        self.pm.add_hookspecs(hookspecs)
        self.methods: Registry[Any] = Registry("method")
        self.datasets: Registry[Any] = Registry("dataset")
        self.plugins: dict[str, PluginInfo] = {}
        self._registered = False

    # -- loading --------------------------------------------------------------------------
    def _fail(self, info: PluginInfo, message: str) -> None:
        info.error = message
        if _strict():
            raise PluginError(f"plugin {info.name!r} failed to load: {message}")
        print(f"warning: skipping plugin {info.name!r}: {message}", file=sys.stderr)

    def load_builtins(self, modules: tuple[str, ...] = BUILTIN_PLUGINS) -> None:
        blocked = _env_list("SKETCHBENCH_DISABLE_PLUGINS") or set()
        for module_name in modules:
            if module_name in blocked:
                continue
            info = PluginInfo(module_name, "builtin", "sketchbench", _version())
            self.plugins[module_name] = info
            try:
                module = importlib.import_module(module_name)
                self.pm.register(module, name=module_name)
            except Exception as exc:
                self._fail(info, f"{type(exc).__name__}: {exc}")

    def load_entry_points(self) -> None:
        allowed = _env_list("SKETCHBENCH_LOAD_PLUGINS")
        blocked = _env_list("SKETCHBENCH_DISABLE_PLUGINS") or set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                continue
            if ep.name in self.plugins:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                ep.name,
                "entry point",
                dist.metadata["Name"] if dist is not None else None,
                dist.version if dist is not None else None,
            )
            self.plugins[ep.name] = info
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                self._fail(info, f"{type(exc).__name__}: {exc}")

    def register_plugin(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, notebooks)."""
        self.plugins[name] = PluginInfo(name, "in-process")
        self.pm.register(plugin, name=name)
        if self._registered:
            self._collect_from(name)

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        for registry in (self.methods, self.datasets):
            for entry in list(registry):
                if entry.origin == name:
                    registry._entries.pop(entry.name)
                    for alias in entry.aliases:
                        registry._aliases.pop(alias, None)

    # -- registration ---------------------------------------------------------------------
    def _collect_from(self, only: str | None = None) -> None:
        for hook_name, registry in (
            ("register_methods", self.methods),
            ("register_datasets", self.datasets),
        ):
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if only is not None and impl.plugin_name != only:
                    continue
                origin = impl.plugin_name

                def register(name: str, target: Any, *, aliases: tuple[str, ...] = (), _origin=origin, _reg=registry, **info: Any) -> Any:
                    return _reg.add(name, target, origin=_origin, aliases=tuple(aliases), **info)

                info = self.plugins.get(origin)
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    if info is None:
                        raise
                    self._fail(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
                if info is not None and hook_name not in info.hooks:
                    info.hooks.append(hook_name)
        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.plugins.get(impl.plugin_name)
            if info is not None and "register_commands" not in info.hooks:
                info.hooks.append("register_commands")

    def register_all(self) -> None:
        if not self._registered:
            self._registered = True
            self._collect_from()

    def add_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:
                info = self.plugins.get(impl.plugin_name, PluginInfo(impl.plugin_name, "?"))
                self._fail(info, f"register_commands raised {type(exc).__name__}: {exc}")


def _version() -> str:
    from . import __version__

    return __version__


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        host = PluginHost()
        host.load_builtins()
        host.load_entry_points()
        host.register_all()
        _host = host
    return _host


def reset_host() -> None:
    """Forget loaded plugins (tests; a changed environment)."""
    global _host
    _host = None
