"""Helpers for testing methods, datasets and plugins (for plugin authors too).

>>> from sketchbench.testing import build_method, tiny_data, run_cli
>>> data = tiny_data()
>>> m = build_method("my-method", backbone="test_efficientnet")
>>> m.train(data, m.ctx.preset.canvases)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sketchbench.data.dataset import DatasetOptions
from sketchbench.data.rundata import RunData
from sketchbench.method.interface import Method, MethodContext
from sketchbench.method.registries import get_host, reset_host
from sketchbench.run.presets import load_preset


def tiny_data(dataset: str = "tiny", preset: str = "smoke", seed: int = 0, root: Path | None = None,
              **overrides: Any) -> RunData:
    """A registered dataset loaded at a preset (default: the generated ``tiny`` set at ``smoke``)."""
    p = load_preset(preset, {k: str(v) for k, v in overrides.items()})
    source = get_host().datasets.get(dataset)()
    ds = source.load(DatasetOptions.for_preset(p, root=root, seed=seed))
    return RunData(ds, p, seed=seed)


def build_method(name: str, preset: str = "smoke", seed: int = 0, device: str = "cpu", **params: Any) -> Method:
    """An untrained registered method with the preset's defaults and the given parameters."""
    cls = get_host().methods.get(name)
    return cls(MethodContext.create(name, cls, load_preset(preset), given=params, device=device, seed=seed))


@contextlib.contextmanager
def registered_plugin(plugin: object, name: str = "test-plugin") -> Iterator[None]:
    """Register an in-process plugin object (a module or class with ``@hookimpl`` functions)
    for the duration of a ``with`` block."""
    host = get_host()
    host.register_plugin(plugin, name)
    try:
        yield
    finally:
        host.unregister_plugin(name)


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the ``sketchbench`` CLI in-process: ``(exit code, stdout, stderr)``.

    Commands added by plugins (``register_commands``, including plugins registered with
    :func:`registered_plugin`) are available, on a copy of the group: the real one is untouched.
    """
    import copy

    from click.testing import CliRunner

    from sketchbench.cli.main import cli

    group = copy.copy(cli)
    group.commands = dict(cli.commands)
    get_host().add_commands(group)
    runner = CliRunner()
    result = runner.invoke(group, list(args), env=env, catch_exceptions=False, prog_name="sketchbench")
    return result.exit_code, result.stdout, result.stderr


__all__ = ["build_method", "registered_plugin", "reset_host", "run_cli", "tiny_data"]
