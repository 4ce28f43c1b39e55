"""The hooks a sketchbench plugin can implement.

Hooks are *registration callbacks* (the pattern of simonw/llm): the host passes a ``register``
function and the plugin calls it, so plugins never touch global state and the host can refuse
duplicates with both origins named. Implement them with :data:`sketchbench.hookimpl`::

    from sketchbench import hookimpl

    @hookimpl
    def register_methods(register):
        register("my-method", "my_pkg.method:MyMethod", kind="student", description="...")

Each hook's exact signature is listed in ``docs/writing-plugins.md`` (a test keeps it in sync).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

_spec = pluggy.HookspecMarker("sketchbench")


class RegisterFn(Protocol):
    """``register(name, target, *, aliases=(), **info)``.

    ``target`` is a class or a lazy ``"module:attr"`` string. ``info`` is metadata shown by
    ``sketchbench list`` without importing the target (``description``; for methods also
    ``kind``, ``needs_teacher``, ``dynamic``; for weight sources ``backbones``, ``licence``).
    """

    def __call__(self, name: str, target: Any, *, aliases: tuple[str, ...] = (), **info: Any) -> Any: ...


@_spec
def register_methods(register: RegisterFn) -> None:
    """Register FG-SBIR methods: subclasses of :class:`sketchbench.Method`.

    .. versionadded:: 0.1
    """


@_spec
def register_datasets(register: RegisterFn) -> None:
    """Register datasets: subclasses of :class:`sketchbench.DatasetSource`.

    .. versionadded:: 0.1
    """


@_spec
def register_weights(register: RegisterFn) -> None:
    """Register weight sources: subclasses of :class:`sketchbench.WeightSource` that fill timm
    backbones with pretrained weights (``--pretrained``). ``info`` for listing: ``description``,
    ``backbones`` (a tuple of timm names or fnmatch patterns), ``licence``.

    .. versionadded:: 0.2
    """


@_spec
def register_selectors(register: RegisterFn) -> None:
    """Register canvas selectors: subclasses of :class:`sketchbench.CanvasSelector` that a dynamic
    method picks each sketch's canvas with (``--param encoder=NAME`` of SketchyNetV2 and B-DRS).
    ``info`` for listing: ``description``.

    .. versionadded:: 0.3
    """


@_spec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``sketchbench`` command-line group (``cli.add_command(...)``).

    .. versionadded:: 0.1
    """
