"""What the commands share: the plugin host, option groups that several commands take (as
decorators, so ``run`` and ``bench`` cannot drift apart), and parsing of canvases, shards, names."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sketchbench.base.errors import SketchbenchError


def plugin_host() -> Any:
    """The process-wide plugin host (loaded on first use)."""
    from sketchbench.method.registries import get_host

    return get_host()


def _stack(*decorators: Callable) -> Callable:
    def apply(fn: Callable) -> Callable:
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return apply


#: --preset and --set
preset_options = _stack(
    click.option("--preset", "-p", default=None, help="smoke, cpu, cpu-imagenet or paper (default: paper on CUDA; else cpu-imagenet when pretrained "
                      "weights are installed, cpu without, or when a method of the run lacks its weights)."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a preset value, e.g. --set epochs=3."),
)

#: where data, cache and device come from, and method parameters
environment_options = _stack(
    click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                 help="Method hyper-parameter, e.g. --param lambda_f=0.3 (or METHOD.KEY=VALUE)."),
    click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
    click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Dataset root (or SKETCHBENCH_DATA)."),
    click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Artifact cache (or SKETCHBENCH_CACHE_DIR)."),
)

#: where networks start from: --pretrained, --weights, --partial-weights
init_options = _stack(
    click.option("--pretrained", "pretrained", multiple=True, is_flag=False, flag_value="auto",
                 metavar="[SOURCE|METHOD=SOURCE]",
                 help="Start backbones from pretrained weights: alone = the first installed source of each backbone "
                      "(sketchbench weights list), or a source, 'none', or METHOD=SOURCE (repeat). Default: the preset's."),
    click.option("--weights", "weights", multiple=True, metavar="FILE|METHOD=FILE",
                 help="Start from a local checkpoint: FILE for the methods named by --method, METHOD=FILE for any "
                      "(e.g. the teacher). It must fill the whole network."),
    click.option("--partial-weights", is_flag=True, help="Allow a --weights file that fills only part of the network."),
)


def choose_preset(name: str | None, device: str) -> str:
    """The preset to run: the one named, else ``paper`` on CUDA; on a CPU ``cpu-imagenet`` (the CPU
    recipe from ImageNet starts) when an offline weight source is installed, ``cpu`` otherwise."""
    if name:
        return name
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return "paper"
    from sketchbench.method.pretrained import sources

    offline = [s for s in sources() if not s.online and any(s.available(b) for b in s.backbones if "*" not in b)]
    return "cpu-imagenet" if offline else "cpu"


#: a preset chosen by default (not named) that needs weights -> the preset to run when they are missing
FALLBACK_PRESET = {"cpu-imagenet": "cpu"}


def fit_machine(preset: Any) -> None:
    """Refuse preset values this machine cannot honour (checked for the command line, not when a
    recorded run is rebuilt): more latency threads than it has cores."""
    cores = os.cpu_count() or 1
    if preset.latency_threads > cores:
        raise SketchbenchError(f"preset value latency_threads={preset.latency_threads}: this machine has {cores} "
                               "cores (0 = torch's current count)")


def runner_for(config: Any, host: Any, *, preset_named: bool) -> Any:
    """The run's :class:`~sketchbench.run.loop.Runner`. When the preset was chosen by default and
    some method of the run needs pretrained weights that are not installed (``cpu-imagenet`` with the
    ``weights`` extra but no ``weights fetch``), the run falls back to ``cpu`` (random init) with a
    note on stderr instead of stopping; a preset named with ``--preset`` is never swapped."""
    import dataclasses

    from sketchbench.method.weights import WeightsMissing
    from sketchbench.run.loop import Runner
    from sketchbench.run.presets import load_preset

    fit_machine(config.preset)
    try:
        return Runner(config, host)
    except WeightsMissing as exc:
        fallback = FALLBACK_PRESET.get(config.preset.name)
        if preset_named or fallback is None:
            raise
        click.echo(f"note: preset {config.preset.name!r} (the default here) needs pretrained weights that are not "
                   f"installed ({exc}); running preset {fallback!r} (random init) instead. Fetch the weights "
                   f"with 'sketchbench weights fetch --all', or choose with --preset.", err=True)
        preset = load_preset(fallback, dict(config.preset.overrides))
        return Runner(dataclasses.replace(config, preset=preset), host)


def canvas_option(value: tuple[str, ...], preset) -> list[int] | None:
    from sketchbench.run.presets import check_canvas

    if not value or "all" in value:
        return None
    return [check_canvas(v) for v in value]


def parse_shard(value: str | None) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise SketchbenchError(f"--shard {value!r}: expected I/N, e.g. 1/4") from None
    if n < 1 or not 1 <= i <= n:
        raise SketchbenchError(f"--shard {value!r}: need 1 <= I <= N")
    return (i, n)


def expand_names(names: tuple[str, ...], registry, option: str | None = None) -> list[str]:
    """Names (repeated, comma-separated, or ``all``) as registered names. Names that were given but
    name nothing (``-m ''``, ``-m ,``) are refused: a command that would do nothing fails."""
    out: list[str] = []
    for n in names:
        for part in n.split(","):
            part = part.strip()
            if part == "all":
                out += registry.names()
            elif part:
                out.append(registry.entry(part).name)
    if names and not out:
        shown = " ".join(repr(n) for n in names)
        raise SketchbenchError(f"{option or registry.kind} {shown}: names no {registry.kind}; see 'sketchbench list'")
    return list(dict.fromkeys(out))


#: a seed NumPy and torch both take
SEED = click.IntRange(0, 2**32 - 1)


#: how the command line spells each setting a library message names (``SketchbenchError.spelled``)
FLAGS: dict[str, str] = {
    "params": "--param", "teacher": "--teacher", "pretrained": "--pretrained", "weights": "--weights",
    "partial_weights": "--partial-weights", "train": "--no-train", "device": "--device", "datasets": "--dataset",
    "dataset": "--dataset", "methods": "--method", "method": "--method", "cache_dir": "--cache-dir",
    "data_root": "--data-root", "overrides": "--set", "canvases": "--canvas", "seeds": "--seed", "preset": "--preset",
}
