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
    "launcher": "--launcher", "gpus": "--gpus", "resources": "--resources", "out": "--out", "shard": "--shard",
}


_LAUNCH_KEYS = ("launcher", "launch_dir", "jobs", "resources", "partition", "gpus", "cpus", "mem", "time_min", "no_wait")
_SLURM_ONLY = {"resources": "--resources", "partition": "--partition", "cpus": "--cpus", "mem": "--mem",
               "no_wait": "--no-wait"}


def launcher_options(fn: Callable) -> Callable:
    """--launcher and the resources of its jobs, handed to the command as one ``launch`` dict."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, launch={k: kwargs.pop(k) for k in _LAUNCH_KEYS}, **kwargs)

    return _stack(
        click.option("--launcher", type=click.Choice(["local", "slurm"]), default=None,
                     help="Run the grid as jobs through submitit, one per model, each after the models it builds on: "
                          "'slurm' (a cluster) or 'local' (processes here). See docs/distributed.md."),
        click.option("--launch-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Launcher: the jobs' logs and pickles (default: beside the results file, OUT.jobs/)."),
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="--launcher local: jobs at once."),
        click.option("--resources", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="--launcher slurm: a TOML file whose [slurm] table gives each job's resources (flags override)."),
        click.option("--partition", default=None, help="--launcher slurm: the partition."),
        click.option("--gpus", type=click.IntRange(min=0), default=None,
                     help="Launcher: GPUs per job (default 1); several = one process per GPU, trained with DDP."),
        click.option("--cpus", type=click.IntRange(min=1), default=None, help="--launcher slurm: CPU cores per process."),
        click.option("--mem", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GB",
                     help="--launcher slurm: memory per job in GB."),
        click.option("--time", "time_min", type=click.IntRange(min=1), default=None, metavar="MINUTES",
                     help="Launcher: time limit per job (default: 720 on Slurm, a week locally); a job that runs out is "
                          "queued again and resumes."),
        click.option("--no-wait", is_flag=True, help="--launcher slurm: submit and return (the cells arrive in --out)."),
    )(wrapper)


def launch_options(launch: dict[str, Any]) -> Any:
    """The ``LaunchOptions`` of a command's ``launch`` dict (``None`` without ``--launcher``)."""
    from sketchbench.run.launch import LaunchOptions, Resources

    if launch["launcher"] != "slurm":
        given = [flag for key, flag in _SLURM_ONLY.items() if launch[key] not in (None, False)]
        if given:
            raise SketchbenchError(f"{given[0]} is for --launcher slurm")
    if launch["launcher"] is None:
        if launch["gpus"] is not None or launch["time_min"] is not None or launch["launch_dir"] is not None or launch["jobs"] != 1:
            raise SketchbenchError("--gpus, --jobs, --time and --launch-dir are for --launcher local|slurm")
        return None
    resources = Resources.from_toml(launch["resources"]) if launch["resources"] else Resources()
    flags = {"partition": launch["partition"], "gpus": launch["gpus"], "cpus": launch["cpus"],
             "mem_gb": launch["mem"], "time_min": launch["time_min"]}
    for key, value in flags.items():
        if value is not None:
            setattr(resources, key, value)
    return LaunchOptions(launch["launcher"], launch["launch_dir"], resources, parallel=launch["jobs"],
                         wait=not launch["no_wait"], poll_s=1.0 if launch["launcher"] == "local" else 30.0)
