"""The process-wide plugin host, with a typed registry per interface a plugin implements: methods
(:class:`~sketchbench.method.interface.Method`), datasets (:class:`~sketchbench.data.dataset.DatasetSource`)
and weight sources (:class:`~sketchbench.method.weights.WeightSource`).

It is built here, in the lowest layer that knows all three interfaces, and the host below is handed
its registries (and the check of a method's registration) instead of importing them: the host knows
how plugins load, this module what they register.
"""

from __future__ import annotations

import inspect
from typing import Any

from sketchbench.base.errors import PluginError
from sketchbench.data.dataset import DatasetSource
from sketchbench.host.plugins import PluginHost
from sketchbench.host.registry import Entry, Registry
from sketchbench.method.interface import Method
from sketchbench.method.selector import CanvasSelector
from sketchbench.method.weights import WeightSource

#: the host of a run: its registries hold the registered classes
Host = PluginHost[type[Method], type[DatasetSource], type[WeightSource], type[CanvasSelector]]

#: the listing metadata a method's registration may give, and the class attribute each must equal
METHOD_INFO = ("kind", "needs_teacher", "default_teacher", "dynamic", "upstream", "description")


def check_method(entry: Entry[Any], cls: type[Method]) -> None:
    """A method's class, when it loads (the registry has checked that it is a ``Method`` subclass):
    concrete, with class attributes that agree with what its registration told ``sketchbench list``
    (metadata is declared once, on the class; a registration that repeats it for lazy listing must
    say the same)."""
    where = f"method {entry.name!r} (from {entry.origin})"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise PluginError(f"{where}: {cls.__name__} does not implement {missing}")
    for key in METHOD_INFO:
        if key == "description" and not getattr(cls, key, ""):
            continue  # a class without a description takes the registration's
        if key in entry.info and getattr(cls, key, None) != entry.info[key]:
            raise PluginError(f"{where}: its registration says {key}={entry.info[key]!r} but {cls.__name__}.{key} is "
                              f"{getattr(cls, key, None)!r}: declare it once, on the class")
    for key in METHOD_INFO:  # fill in what the registration left out (listing then shows the class's)
        if getattr(cls, key, None) not in (None, ""):
            entry.info.setdefault(key, getattr(cls, key))


def check_selector(entry: Entry[Any], cls: type[CanvasSelector]) -> None:
    """A selector's class, when it loads: concrete, named as registered, reading a known recipe."""
    from sketchbench_query import RECIPES

    where = f"canvas selector {entry.name!r} (from {entry.origin})"
    if inspect.isabstract(cls):
        raise PluginError(f"{where}: {cls.__name__} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    if cls.name != entry.name:
        raise PluginError(f"{where}: {cls.__name__}.name is {cls.name!r}: declare the registered name on the class")
    if entry.info.get("description") and cls.description and entry.info["description"] != cls.description:
        raise PluginError(f"{where}: its registration's description differs from {cls.__name__}.description: declare it once")
    entry.info.setdefault("description", cls.description)
    if cls.recipe not in RECIPES:
        raise PluginError(f"{where}: {cls.__name__}.recipe {cls.recipe!r} is not an input recipe "
                          f"(one of {', '.join(RECIPES)}: sketchbench_query.RECIPES)")


def selector_class(name: str) -> type[CanvasSelector]:
    """The registered canvas selector ``name`` (one line naming the registered ones otherwise)."""
    return get_host().selectors.get(name)


def new_host() -> Host:
    """A host with empty, typed registries (no plugin loaded yet)."""
    return PluginHost(
        methods=Registry("method", base_cls=Method, check=check_method, reserved=("all",)),
        datasets=Registry("dataset", base_cls=DatasetSource, reserved=("all",)),
        weights=Registry("weight source", base_cls=WeightSource, reserved=("auto", "none")),
        selectors=Registry("canvas selector", base_cls=CanvasSelector, check=check_selector),
    )


_host: Host | None = None


def get_host() -> Host:
    """The process-wide plugin host, loaded on first use (built-in plugins, then entry points)."""
    global _host
    if _host is None:
        host = new_host()
        host.load_builtins()
        host.load_entry_points()
        host.register_all()
        _host = host
    return _host


def reset_host() -> None:
    """Forget loaded plugins (tests; a changed environment)."""
    global _host
    _host = None
