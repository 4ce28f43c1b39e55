"""The ``sketchbench`` command line."""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import click

from .errors import ExitCode, SketchbenchError

EPILOG_RUN = """\b
Examples:
  sketchbench run --method sketchynet-v2 --dataset synthetic
  sketchbench run --method triplet-sn --dataset synthetic --canvas 32 --canvas 64 --preset smoke
  sketchbench run --method sketchynet-v1 --teacher holef-sn --dataset qmul-v1-shoes \\
      --data-root ../shared/data/qmul-v1 --seed 0 --seed 1 --seed 2
  sketchbench run --method sketchynet-v2 --dataset synthetic --param lambda_f=0.3
  sketchbench run -m triplet-sn -d synthetic -c 96 --save-weights weights/
  sketchbench run -m triplet-sn -d qmul-v1-shoes --data-root ../shared/data/qmul-v1 -c 96 \
      --weights weights/triplet-sn-synthetic-c96-s0.pt
"""


class SketchbenchGroup(click.Group):
    """Turns expected errors into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SketchbenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("interrupted: finished cells are saved in the results file; run again to resume", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # the last guard: never a traceback without --debug
            if os.environ.get("SKETCHBENCH_DEBUG"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc} (set SKETCHBENCH_DEBUG=1 for the traceback)", err=True)
            sys.exit(int(ExitCode.FAILED))


def _host():
    from .plugins import get_host

    return get_host()


@click.group(cls=SketchbenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sketchbench")
@click.option("-v", "--verbose", is_flag=True, help="Log what is trained, cached and reused.")
def cli(verbose: bool) -> None:
    """sketchbench: efficient fine-grained sketch-based image retrieval, benchmarked.

    \b
    Examples:
      sketchbench run --method sketchynet-v2 --dataset synthetic
      sketchbench list methods
      sketchbench report results/run-*.json
      sketchbench flops --backbone vgg16 --canvas 256
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)


def _canvas_option(value: tuple[str, ...], preset) -> list[int] | None:
    from .presets import check_canvas

    if not value or "all" in value:
        return None
    return [check_canvas(v) for v in value]


def _parse_shard(value: str | None) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise SketchbenchError(f"--shard {value!r}: expected I/N, e.g. 1/4") from None
    if n < 1 or not 1 <= i <= n:
        raise SketchbenchError(f"--shard {value!r}: need 1 <= I <= N")
    return (i, n)


def _expand(names: tuple[str, ...], registry) -> list[str]:
    out: list[str] = []
    for n in names:
        for part in n.split(","):
            part = part.strip()
            if part == "all":
                out += registry.names()
            elif part:
                out.append(registry.entry(part).name)
    return list(dict.fromkeys(out))


@cli.command(epilog=EPILOG_RUN)
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Method name (repeat, or 'all').")
@click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset name (repeat, or 'all'); see 'sketchbench list datasets'.")
@click.option("--teacher", "-t", default=None, help="Teacher for student methods (default: the method's own).")
@click.option("--canvas", "-c", "canvases", multiple=True, help="Canvas size in pixels (repeat), or 'all' (the preset's).")
@click.option("--preset", "-p", default=None, help="smoke, cpu or paper (default: paper on CUDA, cpu otherwise).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a preset value, e.g. --set epochs=3.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Method hyper-parameter, e.g. --param lambda_f=0.3 (or METHOD.KEY=VALUE).")
@click.option("--seed", "seeds", multiple=True, type=int, default=(0,), show_default=True, help="Seed (repeat for several).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Dataset root (or SKETCHBENCH_DATA).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Artifact cache (or SKETCHBENCH_CACHE_DIR).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="Results JSON (default results/run-<hash>.json); an existing one is resumed.")
@click.option("--pretrained", is_flag=True, help="Start backbones from ImageNet weights (needs the internet).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Start backbones from this local checkpoint.")
@click.option("--save-weights", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write each trained model's weights into this folder (for --weights).")
@click.option("--no-chain", is_flag=True, help="Do not also evaluate the teacher/upstream methods.")
@click.option("--shard", default=None, metavar="I/N", help="Run only the I-th of N interleaved parts of the grid.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "markdown", "csv", "json"]), show_default=True)
@click.option("--debug", is_flag=True, help="Raise errors inside cells instead of recording them.")
def run(methods, datasets, teacher, canvases, preset, overrides, params, seeds, device, data_root, cache_dir, out,
        pretrained, weights, save_weights, no_chain, shard, fmt, debug) -> None:
    """Train and evaluate methods on datasets over canvas sizes; print the table.

    Teachers are trained once and cached; a rerun with the same --out resumes and skips
    finished cells. The exit code is 1 when some cells failed (they are recorded with errors).
    """
    import torch

    from .cache import default_cache_dir
    from .params import parse_key_values
    from .presets import load_preset
    from .report import render
    from .runner import RunConfig, Runner

    host = _host()
    preset_name = preset or ("paper" if (device != "cpu" and torch.cuda.is_available()) else "cpu")
    p = load_preset(preset_name, parse_key_values(overrides, "--set"))
    if save_weights is not None:
        try:  # fail before any training, not after it
            save_weights.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SketchbenchError(f"--save-weights {str(save_weights)!r}: cannot create the folder: {exc.strerror}") from None
    config = RunConfig(
        methods=_expand(methods, host.methods),
        datasets=_expand(datasets, host.datasets),
        preset=p,
        canvases=_canvas_option(canvases, p),
        teacher=host.methods.entry(teacher).name if teacher else None,
        seeds=list(dict.fromkeys(seeds)),
        params=parse_key_values(params, "--param"),
        device=device,
        data_root=data_root,
        cache_dir=cache_dir or default_cache_dir(),
        out=out,
        pretrained=pretrained,
        weights=weights,
        chain=not no_chain,
        shard=_parse_shard(shard),
        debug=debug,
        save_weights=save_weights,
    )
    from .distributed import is_main, shutdown

    runner = Runner(config, host)
    try:
        results, code = runner.run()
        main_process = is_main()
    finally:
        shutdown()
    if main_process:
        click.echo(render(results["cells"], fmt))
        click.echo(f"\nresults: {results['path']}", err=True)
    sys.exit(int(code))


@cli.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets", "presets"]))
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def list_cmd(what: str, fmt: str) -> None:
    """List registered methods or datasets (without importing them), or presets.

    \b
    Examples:
      sketchbench list methods
      sketchbench list datasets --format json
    """
    from tabulate import tabulate

    if what == "presets":
        from .presets import load_preset, preset_names

        rows = [load_preset(n).to_dict() for n in preset_names()]
        if fmt == "json":
            click.echo(json.dumps(rows, indent=1))
        else:
            click.echo(tabulate([[r["name"], " ".join(map(str, r["canvases"])), r["photo_size"], r["epochs"], r["description"]] for r in rows],
                                headers=["preset", "canvases", "photo", "epochs", "description"]))
        return
    host = _host()
    registry = host.methods if what == "methods" else host.datasets
    rows = []
    for e in registry:
        row = {"name": e.name, "origin": e.origin, "aliases": list(e.aliases), **e.info}
        rows.append(row)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    if what == "methods":
        table = [[r["name"], r.get("kind", ""), r.get("default_teacher") or ("yes" if r.get("needs_teacher") else ""),
                  "yes" if r.get("dynamic") else "", r.get("description", ""), r["origin"]] for r in rows]
        headers = ["method", "kind", "teacher", "dynamic", "description", "plugin"]
    else:
        table = [[r["name"], r.get("modality", ""), r.get("description", ""), r["origin"]] for r in rows]
        headers = ["dataset", "sketches", "description", "plugin"]
    click.echo(tabulate(table, headers=headers))


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "markdown", "csv", "json"]), show_default=True)
@click.option("--analysis", "analyses", multiple=True, type=click.Choice(["resolution", "smallest-rank1"]),
              help="Also print the pilot study's tables: accuracy as the canvas falls; smallest canvas with the photo first.")
def report(results: tuple[Path, ...], fmt: str, analyses: tuple[str, ...]) -> None:
    """Print a paper-style table from one or more results files (a cell in several files counts once).

    \b
    Examples:
      sketchbench report results/run-*.json
      sketchbench report a.json b.json --format markdown
      sketchbench report results/bench-cpu/pilot.json --analysis resolution --analysis smallest-rank1
    """
    from .report import render
    from .resolution import render_resolution, render_smallest_rank1
    from .results import cell_id, load_results

    cells, seen = [], set()
    for path in results:
        for cell in load_results(path)["cells"]:
            # a finished cell found in several files (e.g. a teacher a bench also ran) counts once
            if cell.get("status") == "ok":
                if cell_id(cell) in seen:
                    continue
                seen.add(cell_id(cell))
            cells.append(cell)
    click.echo(render(cells, fmt))
    table_fmt = "github" if fmt == "markdown" else "simple"
    for name in dict.fromkeys(analyses):
        fn = render_resolution if name == "resolution" else render_smallest_rank1
        click.echo(f"\n{name}:\n{fn(cells, table_fmt)}")


@cli.command()
@click.option("--backbone", default=None, help="A timm model name, counted as features + global pool.")
@click.option("--method", default=None, help="A registered method: its sketch branch is counted.")
@click.option("--canvas", "-c", "canvases", multiple=True, required=True, help="Canvas size (repeat).")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def flops(backbone: str | None, method: str | None, canvases: tuple[str, ...], fmt: str) -> None:
    """FLOPs and params of a sketch branch in the paper's convention.

    \b
    Examples:
      sketchbench flops --backbone vgg16 --canvas 256 --format json
      sketchbench flops --backbone mobilenetv2_100 --canvas 32 --canvas 256
      sketchbench flops --method sketchynet-v1 --canvas 256
    """
    import torch

    from .flops import FLOPS_CONVENTION, count_flops
    from .presets import check_canvas

    if (backbone is None) == (method is None):
        raise SketchbenchError("give exactly one of --backbone NAME or --method NAME")
    sizes = [check_canvas(c) for c in canvases]
    if backbone is not None:
        from .training import create_backbone

        module = create_backbone(backbone).eval()
        def example(c: int) -> torch.Tensor:
            return torch.zeros(1, 3, c, c)
        label = backbone
    else:
        from .method import MethodContext
        from .params import resolve_params
        from .presets import load_preset

        host = _host()
        cls = host.methods.get(method)
        preset = load_preset("paper")
        m = cls(MethodContext(name=method, params=resolve_params(method, cls.params, "paper", {}), preset=preset,
                              device=torch.device("cpu"), seed=0))
        module = m.sketch_branch().eval()
        example = m.sketch_input
        label = method
    rows = []
    for c in sizes:
        f, p = count_flops(module, example(c))
        rows.append({"name": label, "canvas": c, "gflops": round(f / 1e9, 4), "params_m": round(p / 1e6, 4),
                     "flops": int(f), "params": p})
    if fmt == "json":
        click.echo(json.dumps({"convention": FLOPS_CONVENTION, "results": rows} if len(rows) > 1 else {**rows[0], "convention": FLOPS_CONVENTION}, indent=1))
    else:
        from tabulate import tabulate

        click.echo(tabulate([[r["name"], f"{r['canvas']}x{r['canvas']}", r["gflops"], r["params_m"]] for r in rows],
                            headers=["sketch branch", "canvas", "GFLOPs", "params (M)"]))


@cli.command()
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def plugins(fmt: str) -> None:
    """Show loaded plugins: where each comes from, its version and hooks.

    \b
    Examples:
      sketchbench plugins
      SKETCHBENCH_LOAD_PLUGINS= sketchbench plugins   # built-ins only
    """
    host = _host()
    rows = [vars(p) for p in host.plugins.values()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    from tabulate import tabulate

    click.echo(tabulate([[r["name"], r["source"], r["distribution"] or "", r["version"] or "", ", ".join(r["hooks"]),
                          r["error"] or "ok"] for r in rows],
                        headers=["plugin", "source", "distribution", "version", "hooks", "status"]))


@cli.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--tolerance", type=float, default=None, help="Allowed accuracy drop in points (overrides the default).")
@click.option("--sigma", type=float, default=2.0, show_default=True, help="Default tolerance: this many baseline seed stds...")
@click.option("--min-tolerance", type=float, default=1.0, show_default=True, help="...but at least this many points.")
@click.option("--allow-config-change", is_flag=True, help="Match cells by method/teacher/dataset/canvas when their configuration changed.")
def compare(baseline: Path, current: Path, tolerance: float | None, sigma: float, min_tolerance: float,
            allow_config_change: bool) -> None:
    """Regression gate: exit 0 when CURRENT does not regress against BASELINE, 1 when it does,
    2 on an error. FLOPs and params must match exactly; accuracy may drop by the tolerance;
    latency is shown but never gates.

    \b
    Examples:
      sketchbench compare benchmarks/baselines/smoke.json results/smoke.json
      sketchbench compare base.json now.json --tolerance 2.5
    """
    from .compare import Tolerance, render_comparison
    from .compare import compare as do_compare
    from .results import load_results

    base, cur = load_results(baseline), load_results(current)
    table, regressions = do_compare(base, cur, Tolerance(sigma, min_tolerance, tolerance), allow_config_change)
    click.echo(render_comparison(table))
    if regressions:
        click.echo(f"\n{len(regressions)} regression(s):", err=True)
        for r in regressions:
            click.echo(f"- {r}", err=True)
        sys.exit(int(ExitCode.FAILED))
    click.echo(f"\nno regression ({len(table)} cells compared)", err=True)


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="The merged results file.")
def merge(results: tuple[Path, ...], out: Path) -> None:
    """Join results files of shards of one grid (run --shard I/N); refuses different configs.

    \b
    Examples:
      sketchbench merge shard1.json shard2.json -o all.json
    """
    from .merge import merge as do_merge
    from .results import load_results, write_results

    merged = do_merge([(str(p), load_results(p)) for p in results])
    write_results(out, merged)
    click.echo(f"{len(merged['cells'])} cells from {len(results)} files written to {out}")


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("plot"), show_default=True,
              help="Output prefix: writes PREFIX.png and PREFIX.svg.")
@click.option("--metric", default="acc1", type=click.Choice(["acc1", "acc10"]), show_default=True)
def plot(results: tuple[Path, ...], out: Path, metric: str) -> None:
    """Accuracy vs FLOPs (log axis, Pareto front marked) and latency vs FLOPs, per dataset.

    \b
    Examples:
      sketchbench plot results/run-*.json -o docs/results/main
    """
    from .plot import plot_results
    from .results import load_results

    cells = []
    for p in results:
        cells += load_results(p)["cells"]
    for path in plot_results(cells, out, metric):
        click.echo(str(path))


@cli.command()
@click.argument("name", required=False)
@click.option("--preset", "-p", default=None, help="smoke, cpu or paper (default: paper on CUDA, cpu otherwise).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a preset value.")
@click.option("--dataset", "-d", "datasets", multiple=True, help="Datasets (default: the benchmark's).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Seeds (default: the benchmark's).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Extra method parameters.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Dataset root (or SKETCHBENCH_DATA).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Artifact cache (or SKETCHBENCH_CACHE_DIR).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Start backbones from this local checkpoint.")
@click.option("--out-dir", type=click.Path(path_type=Path), default=None, help="Default: results/bench-<preset>/.")
@click.option("--bench-dir", type=click.Path(path_type=Path), default=None, help="Where NAME.toml files are (default ./benchmarks).")
@click.option("--no-plot", is_flag=True, help="Skip the plot.")
def bench(name, preset, overrides, datasets, seeds, params, device, data_root, cache_dir, weights, out_dir, bench_dir,
          no_plot) -> None:
    """Run a benchmark (one table of the paper): results JSON, Markdown table and plot.

    Without NAME, lists the benchmarks.

    \b
    Examples:
      sketchbench bench
      sketchbench bench main --preset smoke
      sketchbench bench main --preset cpu -d qmul-v1-shoes -d qmul-v1-chairs \\
          --data-root ../shared/data/qmul-v1 --seed 0 --seed 1 --seed 2
    """
    import torch

    from .bench import bench_names, default_bench_dir, load_spec, run_bench
    from .cache import default_cache_dir
    from .params import parse_key_values
    from .presets import load_preset
    from .runner import RunConfig

    bdir = bench_dir or default_bench_dir()
    if name is None:
        for n in bench_names(bdir):
            spec = load_spec(n, bdir)
            click.echo(f"{n:20s} {spec.get('title', '')}")
        return
    spec = load_spec(name, bdir)
    preset_name = preset or ("paper" if (device != "cpu" and torch.cuda.is_available()) else "cpu")
    p = load_preset(preset_name, parse_key_values(overrides, "--set"))
    host = _host()
    base = RunConfig(
        methods=[], datasets=_expand(tuple(datasets) or tuple(spec.get("datasets", [])), host.datasets),
        preset=p, seeds=list(dict.fromkeys(seeds or spec.get("seeds", [0]))),
        params=parse_key_values(params, "--param"), device=device, data_root=data_root,
        cache_dir=cache_dir or default_cache_dir(), weights=weights,
    )
    path, code = run_bench(name, spec, base, out_dir or Path("results") / f"bench-{preset_name}", plot=not no_plot)
    click.echo(path.with_suffix(".md").read_text())
    click.echo(f"results: {path} (+ .md, .png, .svg)", err=True)
    sys.exit(int(code))


@cli.group()
def data() -> None:
    """Inspect datasets.

    \b
    Examples:
      sketchbench data info synthetic
      sketchbench data info chairv2 --data-root ../shared/data/chairv2
    """


@data.command("info")
@click.argument("dataset")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Dataset root (or SKETCHBENCH_DATA).")
@click.option("--preset", default="cpu", show_default=True, help="Sizes for generated datasets.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def data_info(dataset: str, data_root: Path | None, preset: str, fmt: str) -> None:
    """Counts per split, sketches per photo, points and strokes per sketch.

    \b
    Examples:
      sketchbench data info chairv2 --data-root ../shared/data/chairv2
      sketchbench data info qmul-v1-shoes --data-root ../shared/data/qmul-v1
    """
    from .dataset import DatasetOptions
    from .presets import load_preset

    host = _host()
    p = load_preset(preset)
    root = data_root or os.environ.get("SKETCHBENCH_DATA")
    source = host.datasets.get(dataset)()
    ds = source.load(DatasetOptions(root=Path(root) if root else None, photo_size=p.photo_size, need_photos=False,
                                    size={"instances": p.instances, "sketches_per_instance": p.sketches_per_instance}))
    info: dict[str, Any] = {"dataset": ds.name, "photos_available": ds.has_photos, **ds.meta}
    for split_name in ("train", "test"):
        split = ds.split(split_name)
        per_photo: dict[int, int] = {}
        for s in split.sketches:
            per_photo[s.photo] = per_photo.get(s.photo, 0) + 1
        vectors = [s.vector for s in split.sketches if s.vector is not None]
        entry: dict[str, Any] = {
            "sketches": len(split.sketches),
            "photos": len(split.photo_ids),
            "sketches_per_photo": _stats(list(per_photo.values())),
            "vector_sketches": len(vectors),
            "raster_sketches": sum(1 for s in split.sketches if s.vector is None and s.raster is not None),
        }
        if vectors:
            entry["points_per_sketch"] = _stats([len(v) for v in vectors])
            entry["strokes_per_sketch"] = _stats([v.num_strokes for v in vectors])
        info[split_name] = entry
    if fmt == "json":
        click.echo(json.dumps(info, indent=1, default=str))
        return
    click.echo(f"{ds.name}: photos {'available' if ds.has_photos else 'NOT available (retrieval impossible)'}")
    for split_name in ("train", "test"):
        e = info[split_name]
        click.echo(f"  {split_name}: {e['sketches']} sketches, {e['photos']} photos; "
                   f"sketches/photo {_fmt_stats(e['sketches_per_photo'])}; "
                   f"{e['vector_sketches']} vector, {e['raster_sketches']} raster")
        if "points_per_sketch" in e:
            click.echo(f"    points/sketch {_fmt_stats(e['points_per_sketch'])}; strokes/sketch {_fmt_stats(e['strokes_per_sketch'])}")
    for k, v in ds.meta.items():
        click.echo(f"  {k}: {v}")


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": min(values), "mean": round(statistics.fmean(values), 2), "max": max(values)}


def _fmt_stats(s: dict[str, float]) -> str:
    return f"min {s['min']} / mean {s['mean']} / max {s['max']}" if s else "-"


def main() -> None:
    host = None
    try:
        host = _host()
        host.add_commands(cli)
    except SketchbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    del host
    cli(prog_name="sketchbench")


if __name__ == "__main__":  # pragma: no cover
    main()
