"""Loading plugins: the built-in ones from a list, third-party ones from entry points, into the
registries the host is handed (it knows no interface: :mod:`sketchbench.method.registries` builds the
process-wide host with its typed, checked registries).

Each third-party plugin is loaded on its own: one that fails to import (or whose hook raises)
costs one warning line on stderr naming it, and everything else still loads. Environment:

- ``SKETCHBENCH_LOAD_PLUGINS=a,b``: load only these third-party plugins (empty: none).
- ``SKETCHBENCH_DISABLE_PLUGINS=a,b``: never load these (built-ins included).
- ``SKETCHBENCH_STRICT_PLUGINS=1``: a plugin that fails to load is fatal (exit code 4).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from sketchbench.base.errors import ExitCode, PluginError, did_you_mean
from sketchbench.host import hookspecs
from sketchbench.host.registry import Registry

ENTRY_POINT_GROUP = "sketchbench"

#: Built-in plugin packages, shipped in this distribution under ``plugins/``. They use only the
#: public API, exactly like a third-party plugin; the core never names a method or a dataset.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "sketchbench_datasets",
    "sketchbench_teachers",
    "sketchbench_students",
    "sketchbench_dynamic",
    "sketchbench_weights",
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


M = TypeVar("M")
D = TypeVar("D")
W = TypeVar("W")
S = TypeVar("S")


class PluginHost(Generic[M, D, W, S]):
    """Owns the pluggy manager and fills the registries it is handed: methods (hook
    ``register_methods``), datasets (``register_datasets``), weight sources (``register_weights``)
    and canvas selectors (``register_selectors``)."""

    def __init__(self, methods: Registry[M], datasets: Registry[D], weights: Registry[W], selectors: Registry[S]) -> None:
        self.pm = pluggy.PluginManager("sketchbench")
        self.pm.add_hookspecs(hookspecs)
        self.methods = methods
        self.datasets = datasets
        self.weights = weights
        self.selectors = selectors
        self.plugins: dict[str, PluginInfo] = {}
        self._registered = False

    # -- loading --------------------------------------------------------------------------
    def _fail(self, info: PluginInfo, message: str) -> None:
        # the whole message (pluggy's cause is often on a later line), joined into one line
        message = " | ".join(line.strip() for line in message.splitlines() if line.strip()) or message.strip()
        info.error = message
        where = ""
        if info.source == "entry point" and info.distribution:
            where = f" (from {info.distribution}{' ' + info.version if info.version else ''})"
        if _strict():
            raise PluginError(f"plugin {info.name!r}{where} failed to load: {message}")
        print(f"warning: skipping plugin {info.name!r}{where}: {message}", file=sys.stderr)

    @contextlib.contextmanager
    def _guard(self, info: PluginInfo, what: str) -> Iterator[None]:
        """Plugin code runs inside this: an exception (``SystemExit`` included: a plugin cannot end the
        command) costs the plugin, with one warning; ``KeyboardInterrupt`` stops the command in one
        line naming the plugin, never a traceback."""
        try:
            yield
        except KeyboardInterrupt:
            raise PluginError(f"interrupted while loading plugin {info.name!r} ({what})",
                              exit_code=ExitCode.INTERRUPTED) from None
        except (Exception, SystemExit) as exc:
            self._fail(info, _describe(exc))

    def _register(self, plugin: object, info: PluginInfo) -> None:
        """Register with pluggy, refusing hook implementations no hookspec declares (a typo such
        as ``register_method`` would otherwise be ignored without a word)."""
        self.pm.register(plugin, name=info.name)
        unknown = [c.name for c in self.pm.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            self.pm.unregister(name=info.name)
            known = [n for n, caller in vars(self.pm.hook).items() if caller.has_spec()]
            raise PluginError(f"unknown hook {unknown[0]!r}." + did_you_mean(unknown[0], known))

    def load_builtins(self, modules: tuple[str, ...] = BUILTIN_PLUGINS) -> None:
        blocked = _env_list("SKETCHBENCH_DISABLE_PLUGINS") or set()
        for module_name in modules:
            if module_name in blocked:
                continue
            info = PluginInfo(module_name, "builtin", "sketchbench", _version())
            self.plugins[module_name] = info
            with self._guard(info, "import"):
                self._register(importlib.import_module(module_name), info)

    def load_entry_points(self) -> None:
        allowed = _env_list("SKETCHBENCH_LOAD_PLUGINS")
        blocked = _env_list("SKETCHBENCH_DISABLE_PLUGINS") or set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                continue
            dist_name, dist_version = _distribution(ep)
            seen = self.plugins.get(ep.name)
            if seen is not None:
                # the same distribution found twice on sys.path is fine; two distributions
                # claiming one plugin name are not: the first one wins, loudly
                if seen.distribution != dist_name:
                    self._fail(PluginInfo(ep.name, "entry point", dist_name, dist_version),
                               f"plugin name already used by {seen.distribution or seen.source}")
                continue
            info = PluginInfo(ep.name, "entry point", dist_name, dist_version)
            self.plugins[ep.name] = info
            with self._guard(info, "import"):
                self._register(ep.load(), info)

    def register_plugin(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, notebooks)."""
        info = PluginInfo(name, "in-process")
        self._register(plugin, info)
        self.plugins[name] = info
        if self._registered:
            self._collect_from(name)

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        for registry in (self.methods, self.datasets, self.weights, self.selectors):
            registry.remove_origin(name)

    # -- registration ---------------------------------------------------------------------
    def _collect_from(self, only: str | None = None) -> None:
        for hook_name, registry in (
            ("register_methods", self.methods),
            ("register_datasets", self.datasets),
            ("register_weights", self.weights),
            ("register_selectors", self.selectors),
        ):
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if only is not None and impl.plugin_name != only:
                    continue
                origin = impl.plugin_name
                info = self.plugins.get(origin)
                try:
                    impl.function(register=_Registrar(registry, origin))
                except _Clash as clash:
                    # a name another plugin already has (or no name at all): the later plugin is skipped
                    registry.remove_origin(origin)
                    self._fail(info or PluginInfo(origin, "in-process"), str(clash))
                except PluginError:
                    raise
                except KeyboardInterrupt:
                    raise PluginError(f"interrupted while plugin {origin!r} ran {hook_name}",
                                      exit_code=ExitCode.INTERRUPTED) from None
                except (Exception, SystemExit) as exc:
                    if info is None:
                        raise
                    registry.remove_origin(origin)  # no half-registered plugin
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
        """Let plugins add commands. Each plugin's ``register_commands`` fills a group of its own, whose
        commands are then copied into ``cli``: a plugin may not replace a command that exists (``run``,
        ``report``, another plugin's), nor remove one. A clashing command is refused with a warning
        naming the plugin (fatal under ``SKETCHBENCH_STRICT_PLUGINS=1``); its other commands are kept."""
        import click

        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.plugins.get(impl.plugin_name, PluginInfo(impl.plugin_name, "in-process"))
            before = dict(cli.commands)
            own = click.Group(name=cli.name)
            try:
                impl.function(cli=own)
            except KeyboardInterrupt:
                raise PluginError(f"interrupted while plugin {impl.plugin_name!r} added its commands",
                                  exit_code=ExitCode.INTERRUPTED) from None
            except (Exception, SystemExit) as exc:
                self._fail(info, f"register_commands raised {type(exc).__name__}: {exc}")
                continue
            finally:
                if cli.commands != before:  # it reached the real group some other way: undone
                    cli.commands = before
                    self._fail(info, "it changed sketchbench's own commands: undone (add commands to the group "
                                     "register_commands receives)")
            for name, command in own.commands.items():
                owner = getattr(before.get(name), "sketchbench_plugin", "sketchbench") if name in before else None
                if owner is not None and owner != impl.plugin_name:
                    # a built-in or another plugin's command: never replaced
                    self._fail(info, f"it adds a command {name!r}, which {owner} has already: refused "
                                     "(its other commands are kept)")
                    continue
                command.sketchbench_plugin = impl.plugin_name  # who added it (it may add it again)
                cli.commands[name] = command


def _describe(exc: Exception) -> str:
    # our own errors already read as a sentence; others need their type (ImportError: ...)
    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


class _Clash(PluginError):
    """A plugin registered a name another plugin has."""


class _Registrar:
    """The ``register`` function a registration hook receives: ``register(name, target, *,
    aliases=(), **info)`` into one registry, in the name of one plugin."""

    def __init__(self, registry: Registry[Any], origin: str) -> None:
        self._registry, self._origin = registry, origin

    def __call__(self, name: str, target: Any, *, aliases: tuple[str, ...] = (), **info: Any) -> Any:
        try:  # a name the command line could never use: the plugin is skipped, like a clash
            for key in (name, *aliases):
                self._registry.check_name(key, self._origin)
        except PluginError as exc:
            raise _Clash(str(exc)) from None
        taken = next(((k, e) for k in (name, *aliases) if (e := self._registry.clash(k)) is not None), None)
        if taken is not None and taken[1].origin != self._origin:
            key, clash = taken
            raise _Clash(f"{self._registry.kind} {key!r} is registered twice: by {clash.origin} and by "
                         f"{self._origin}; {self._origin}'s registrations are skipped (disable one of the two with "
                         "SKETCHBENCH_DISABLE_PLUGINS)")
        return self._registry.add(name, target, origin=self._origin, aliases=tuple(aliases), **info)


def _distribution(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    """Name and version of the distribution declaring ``ep``; ``None`` when its metadata is
    missing or unreadable (a hand-made ``.dist-info`` must not break loading)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        meta = dist.metadata
        return (meta.get("Name") if meta is not None else None), dist.version
    except Exception:
        return None, None


def _version() -> str:
    from sketchbench.base.version import __version__

    return __version__
