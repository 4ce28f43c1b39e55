"""Named, typed registries (lm-eval's ``Registry(name, base_cls=...)``): methods, datasets and
weight sources, filled by plugins through registration hooks.

An entry may be the class itself or a lazy ``"module:attr"`` string, so that listing what is
available never imports a method's heavy modules (torch models, timm). The metadata needed for
listing (kind, description, ...) is passed at registration time. What an entry must be is checked
when it loads: a subclass of the registry's ``base_cls``, then the registry's own ``check``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sketchbench.base.errors import PluginError, SketchbenchError, did_you_mean

T = TypeVar("T")

#: what a registered name may be: the command line splits on ',' and '=', and ``METHOD.KEY`` on the last '.'
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass
class Entry(Generic[T]):
    """One registered name: where it came from and how to get the object."""

    name: str
    target: T | str
    origin: str
    info: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    #: called with the entry and the loaded object the first time it loads (a consistency check)
    check: Callable[[Entry[Any], Any], None] | None = None

    @property
    def is_loaded(self) -> bool:
        return not isinstance(self.target, str)

    def load(self) -> T:
        """Import a lazy ``"module:attr"`` target on first use."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                obj = getattr(importlib.import_module(module_name), attr)
            except (Exception, SystemExit) as exc:  # a broken plugin module must not become a traceback (or an exit)
                raise PluginError(
                    f"{self.name!r} (from {self.origin}) could not be imported from "
                    f"{self.target!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if self.check is not None:
                self.check(self, obj)
            self.target = obj
        return self.target  # type: ignore[return-value]


class Registry(Generic[T]):
    """A name → :class:`Entry` map that refuses duplicates and suggests names for typos. Each
    target must be a class deriving from ``base_cls`` (when given); ``check`` then checks more
    (e.g. a method's registration info against its class)."""

    def __init__(self, kind: str, base_cls: type | None = None,
                 check: Callable[[Entry[Any], Any], None] | None = None, reserved: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.base_cls = base_cls
        self._check = check
        #: words of the command line that can never name an entry (``all``; ``auto``/``none`` for weights)
        self.reserved = reserved
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def check(self, entry: Entry[Any], obj: Any) -> None:
        """Refuse a loaded target that is not what this registry holds, with one line naming it."""
        base = self.base_cls
        if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(f"{self.kind} {entry.name!r} (from {entry.origin}) is {obj!r}, "
                              f"not a subclass of sketchbench.{base.__name__}")
        if self._check is not None:
            self._check(entry, obj)

    def add(
        self,
        name: str,
        target: T | str,
        *,
        origin: str,
        aliases: tuple[str, ...] = (),
        **info: Any,
    ) -> Entry[T]:
        for key in (name, *aliases):
            self.check_name(key, origin)
        for key in (name, *aliases):
            clash = self._entries.get(self._aliases.get(key, key))
            if clash is not None:
                raise PluginError(
                    f"{self.kind} {key!r} is registered twice: by {clash.origin} and by {origin}"
                )
        entry = Entry(name=name, target=target, origin=origin, info=dict(info), aliases=aliases, check=self.check)
        if not isinstance(target, str):
            self.check(entry, target)
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def check_name(self, key: Any, origin: str) -> None:
        """:class:`PluginError` for a name the command line could never use (see :data:`NAME`)."""
        if not isinstance(key, str) or not NAME.match(key) or key in self.reserved:
            why = (f"'{key}' is a keyword of the command line" if key in self.reserved else
                   "use letters, digits, '_', '-', '+', '.', starting with a letter or digit")
            raise PluginError(f"{origin} registered a {self.kind} with an invalid name {key!r:.60}: {why}")

    def remove_origin(self, origin: str) -> int:
        """Remove every entry ``origin`` registered (a plugin unregistered or dropped). Returns how many."""
        gone = [n for n, e in self._entries.items() if e.origin == origin]
        for name in gone:
            entry = self._entries.pop(name)
            for alias in entry.aliases:
                self._aliases.pop(alias, None)
        return len(gone)

    def clash(self, name: str, aliases: tuple[str, ...] = ()) -> Entry[T] | None:
        """The entry a new ``name`` (or one of its aliases) would collide with, if any."""
        for key in (name, *aliases):
            found = self._entries.get(self._aliases.get(key, key))
            if found is not None:
                return found
        return None

    def entry(self, name: str) -> Entry[T]:
        key = self._aliases.get(name, name)
        if key not in self._entries:
            raise SketchbenchError(
                f"unknown {self.kind} {name!r}." + did_you_mean(name, self.names())
            )
        return self._entries[key]

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._aliases.get(name, name) in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
