"""What the commands share: the plugin host, option groups that several commands take (as
decorators, so ``run`` and ``bench`` cannot drift apart), and parsing of canvases, shards, names."""

from __future__ import annotations

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
    """The preset to run: the one named, else :func:`sketchbench.run.presets.default_preset`."""
    if name:
        return name
    from sketchbench.run.presets import default_preset

    return default_preset(device)


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


#: a seed NumPy and torch both take
SEED = click.IntRange(0, 2**32 - 1)


#: how the command line spells each setting a library message names (``SketchbenchError.spelled``)
FLAGS: dict[str, str] = {
    "params": "--param", "teacher": "--teacher", "pretrained": "--pretrained", "weights": "--weights",
    "partial_weights": "--partial-weights", "train": "--no-train", "device": "--device", "datasets": "--dataset",
    "dataset": "--dataset", "methods": "--method", "method": "--method", "cache_dir": "--cache-dir",
    "data_root": "--data-root", "overrides": "--set", "canvases": "--canvas", "seeds": "--seed", "preset": "--preset",
}
