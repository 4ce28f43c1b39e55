"""``sketchbench run`` and ``sketchbench bench``: train and evaluate grids."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sketchbench.base.errors import SketchbenchError
from sketchbench.cli.options import (
    SEED,
    choose_preset,
    environment_options,
    init_options,
    launch_options,
    launcher_options,
    parse_shard,
    plugin_host,
    preset_options,
)

EPILOG_RUN = """\b
Examples:
  sketchbench run --method sketchynet-v2 --dataset synthetic
  sketchbench run --method triplet-sn --dataset synthetic --canvas 32 --canvas 64 --preset smoke
  sketchbench run --method sketchynet-v1 --teacher holef-sn --dataset qmul-v1-shoes \\
      --data-root ../shared/data/qmul-v1 --seed 0 --seed 1 --seed 2
  sketchbench run --method sketchynet-v2 --dataset synthetic --param lambda_f=0.3
  sketchbench run -m triplet-sn -d synthetic -c 96 --save-weights weights/
  sketchbench run -m triplet-sn -d qmul-v1-shoes --data-root ../shared/data/qmul-v1 -c 96 \\
      --weights weights/triplet-sn-synthetic-c96-s0.pt
  sketchbench run -m triplet-timm --param backbone=efficientnet_lite0 --pretrained -d tiny -p smoke
  sketchbench run -m mobilenetv2-sn -d chairv2 --data-root ../shared/data/chairv2 --pretrained --no-train
  sketchbench run -m sketchynet-v1 --teacher vgg16-sn --pretrained vgg16-sn=hed-vgg16 \\
      --pretrained sketchynet-v1=torchvision-mobilenetv2 -d chairv2 --data-root ../shared/data/chairv2
  sketchbench run -m sketchynet-v2 -d synthetic -p smoke --seed 0 --seed 1 --launcher local --jobs 2 -o grid.json
  sketchbench run -m sketchynet-v2 -t triplet-sn -d shoev2 --data-root /shared/data -c all --seed 0 --seed 1 \\
      --seed 2 --launcher slurm --partition gpu --gpus 1 --cpus 8 --mem 32 --time 240 -o /shared/results/v2.json
"""



@click.command(epilog=EPILOG_RUN)
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Method name (repeat, or 'all').")
@click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset name (repeat, or 'all'); see 'sketchbench list datasets'.")
@click.option("--teacher", "-t", default=None, help="Teacher for student methods (default: the method's own).")
@click.option("--canvas", "-c", "canvases", multiple=True, help="Canvas size in pixels (repeat), or 'all' (the preset's).")
@preset_options
@click.option("--seed", "seeds", multiple=True, type=SEED, default=(0,), show_default=True, help="Seed (repeat for several).")
@environment_options
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="Results JSON (default results/run-<hash>.json); an existing one is resumed.")
@init_options
@click.option("--save-weights", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write each trained model's weights into this folder (for --weights).")
@click.option("--no-chain", is_flag=True, help="Do not also evaluate the teacher/upstream methods.")
@click.option("--no-train", is_flag=True,
              help="Evaluate the methods as initialised, untrained: the random-init floor, or zero-shot with --pretrained.")
@click.option("--shard", default=None, metavar="I/N", help="Run only the I-th of N interleaved parts of the grid.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "markdown", "csv", "json"]), show_default=True)
@click.option("--debug", is_flag=True, help="Raise errors inside cells instead of recording them.")
@launcher_options
def run(methods, datasets, teacher, canvases, preset, overrides, seeds, params, device, data_root, cache_dir, out,
        pretrained, weights, partial_weights, save_weights, no_chain, no_train, shard, fmt, debug, launch) -> None:
    """Train and evaluate methods on datasets over canvas sizes; print the table.

    Teachers are trained once and cached; a rerun with the same --out resumes and skips
    finished cells. The exit code is 1 when some cells failed (they are recorded with errors).
    With --launcher, the grid runs as jobs (one per model, after the models it builds on).
    """
    from sketchbench.method.params import parse_key_values
    from sketchbench.run.api import run_config, run_grid

    options = launch_options(launch)  # before any work: launcher flags without --launcher are refused
    if save_weights is not None:
        try:  # fail before any training, not after it
            save_weights.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SketchbenchError(f"--save-weights {str(save_weights)!r}: cannot create the folder: {exc.strerror}") from None
    grid = dict(
        canvases=canvases or None, seeds=seeds, preset=preset,
        overrides=parse_key_values(overrides, "--set"), teacher=teacher, params=parse_key_values(params, "--param"),
        device=device, host=plugin_host(), data_root=data_root, cache_dir=cache_dir, out=out, pretrained=pretrained,
        weights=weights, partial_weights=partial_weights, chain=not no_chain, train=not no_train,
        shard=parse_shard(shard), debug=debug, save_weights=save_weights,
    )
    if options is not None:
        from sketchbench.run.api import runner_for
        from sketchbench.run.identity import config_hash

        # the configuration the loop would run (a default preset falls back when its weights are missing)
        config = runner_for(run_config(methods, datasets, **grid), grid["host"], preset_named=preset is not None).config
        config.out = out or Path("results") / f"run-{config_hash(config)}.json"  # the loop's default, named now
        sys.exit(int(launched([config], options, grid["host"], fmt)))
    results = run_grid(methods, datasets, **grid)
    if results.main_process:
        click.echo(results.table(fmt))
        click.echo(f"\nresults: {results.path}", err=True)
    sys.exit(int(results.exit_code))


def launched(configs, options, host, fmt: str = "table"):
    """Launch ``configs`` as jobs (``--launcher``); print the results file's table when they are done."""
    from sketchbench.results.report import render
    from sketchbench.results.schema import cells_of, load_results
    from sketchbench.run.launch import launch

    _, code = launch(configs, options, host)
    out = Path(configs[0].out).resolve()
    if options.wait and out.exists():
        click.echo(render(cells_of(load_results(out)), fmt))
    click.echo(f"\nresults: {out}", err=True)
    return code


@click.command()
@click.argument("name", required=False)
@preset_options
@click.option("--dataset", "-d", "datasets", multiple=True, help="Datasets (default: the benchmark's).")
@click.option("--seed", "seeds", multiple=True, type=SEED, help="Seeds (default: the benchmark's).")
@environment_options
@init_options
@click.option("--out-dir", type=click.Path(path_type=Path), default=None, help="Default: results/bench-<preset>/.")
@click.option("--bench-dir", type=click.Path(path_type=Path), default=None, help="Where NAME.toml files are (default ./benchmarks).")
@click.option("--no-plot", is_flag=True, help="Skip the plot.")
@launcher_options
def bench(name, preset, overrides, datasets, seeds, params, device, data_root, cache_dir, pretrained, weights,
          partial_weights, out_dir, bench_dir, no_plot, launch) -> None:
    """Run a benchmark (one table of the paper): results JSON, Markdown table and plot.

    Without NAME, lists the benchmarks.

    \b
    Examples:
      sketchbench bench
      sketchbench bench main --preset smoke
      sketchbench bench main --preset cpu -d qmul-v1-shoes -d qmul-v1-chairs \\
          --data-root ../shared/data/qmul-v1 --seed 0 --seed 1 --seed 2
      sketchbench bench main --preset paper -d shoev2 -d chairv2 --data-root /shared/data \\
          --seed 0 --seed 1 --seed 2 --launcher slurm --resources slurm.toml --out-dir /shared/results
    """
    from sketchbench.base.artifacts import default_cache_dir
    from sketchbench.method.params import parse_key_values
    from sketchbench.run.api import expand_names, runner_for
    from sketchbench.run.bench import bench_names, default_bench_dir, load_spec, run_bench
    from sketchbench.run.config import RunConfig
    from sketchbench.run.presets import fit_machine, load_preset

    bdir = bench_dir or default_bench_dir()
    if name is None:
        for n in bench_names(bdir):
            spec = load_spec(n, bdir)
            click.echo(f"{n:20s} {spec.get('title', '')}")
        return
    spec = load_spec(name, bdir)
    preset_name = choose_preset(preset, device)
    p = load_preset(preset_name, parse_key_values(overrides, "--set"))
    host = plugin_host()
    base = RunConfig(
        methods=[], datasets=expand_names(tuple(datasets) or tuple(spec.get("datasets", [])), host.datasets, "datasets"),
        preset=p, seeds=list(dict.fromkeys(seeds or spec.get("seeds", [0]))),
        params=parse_key_values(params, "--param"), device=device, data_root=data_root,
        cache_dir=cache_dir or default_cache_dir(), pretrained=tuple(pretrained), weights=tuple(weights),
        partial_weights=partial_weights,
    )
    if preset is None:  # a default preset whose weights some row lacks falls back (see runner_for), for every row
        from dataclasses import replace

        from sketchbench.run.bench import expand

        for cfg in expand(spec, base):
            chosen = runner_for(cfg, host, preset_named=False).config.preset
            if chosen.name != base.preset.name:
                base, preset_name = replace(base, preset=chosen), chosen.name
                break
    else:
        fit_machine(p)
    options = launch_options(launch)
    path, code = run_bench(name, spec, base, out_dir or Path("results") / f"bench-{preset_name}", plot=not no_plot,
                           launch=options)
    if options is not None and not options.wait:
        click.echo(f"results: {path} (run the same command once the jobs are done for the table)", err=True)
        sys.exit(int(code))
    click.echo(path.with_suffix(".md").read_text())
    click.echo(f"results: {path} (+ .md, .png, .svg)", err=True)
    sys.exit(int(code))


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (run, bench)
