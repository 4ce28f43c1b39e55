"""Benchmarks as data: ``benchmarks/NAME.toml`` describes the grids of one table of the paper;
``sketchbench bench NAME`` runs them through the runner into one results file, then writes a
Markdown table in the poster's layout and a plot next to it.

A benchmark file::

    title = "Main table"
    datasets = ["synthetic"]        # default; --dataset overrides
    seeds = [0]                     # default; --seed overrides

    [[grid]]
    methods = ["triplet-sn", "holef-sn"]
    canvases = "all"                # or a list of sizes

    [[grid]]
    methods = ["sketchynet-v1"]
    teachers = ["triplet-sn", "holef-sn"]
    chain = false

    [[grid]]
    methods = ["sketchynet-v2"]
    params = { lambda_f = [0.0, 0.5, 1.0] }   # a sweep: one run per combination
    set = { canvases = ["32,64", "32,64,128"] }  # preset overrides, swept too

Optional ``analyses = ["resolution", "smallest-rank1"]`` adds the pilot study's tables (accuracy
as the canvas falls; the smallest canvas at which each query's photo ranks first, see
:mod:`sketchbench.results.resolution`) to the Markdown, and their plot as ``NAME-resolution.png/svg``.
``analyses = ["latency"]`` measures the machine's compute bound after the grid, at each thread count
the cells were timed at (into the results file as ``compute_bound``), and adds the latency-per-runtime
table of :mod:`sketchbench.results.latency` and its plot, ``NAME-runtimes.png/svg``; sweep runtimes
with ``set = { latency_runtime = ["torch", "onnxruntime"] }``.
"""

from __future__ import annotations

import itertools
import shlex
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from sketchbench.base.errors import ExitCode, SketchbenchError, did_you_mean
from sketchbench.results.report import render
from sketchbench.results.resolution import ANALYSES, plot_resolution, render_resolution, render_smallest_rank1
from sketchbench.results.schema import cells_of, load_results, new_results, write_results
from sketchbench.run.config import RunConfig, resolve_device
from sketchbench.run.loop import Runner
from sketchbench.run.presets import load_preset

if TYPE_CHECKING:
    from sketchbench.run.launch import LaunchOptions

#: the analyses a benchmark file may list: the pilot study's and the latency-per-runtime one
BENCH_ANALYSES = (*ANALYSES, "latency", "selector")


def default_bench_dir() -> Path:
    """``./benchmarks`` when there is one, else the repository's (an editable install, run from
    another folder): sketchbench/run/bench.py -> the repository root is three levels up."""
    here = Path.cwd() / "benchmarks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "benchmarks"


def bench_names(bench_dir: Path) -> list[str]:
    return sorted(p.stem for p in bench_dir.glob("*.toml")) if bench_dir.is_dir() else []


def load_spec(name: str, bench_dir: Path) -> dict[str, Any]:
    path = bench_dir / f"{name}.toml"
    if not path.is_file():
        raise SketchbenchError(f"unknown benchmark {name!r} in {bench_dir}." + did_you_mean(name, bench_names(bench_dir)))
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SketchbenchError(f"{path}: invalid TOML: {exc}") from None
    if not isinstance(spec.get("grid"), list) or not spec["grid"]:
        raise SketchbenchError(f"{path}: needs at least one [[grid]] table")
    for a in spec.get("analyses", []):
        if a not in BENCH_ANALYSES:
            raise SketchbenchError(f"{path}: unknown analysis {a!r} (known: {', '.join(BENCH_ANALYSES)})"
                                   + did_you_mean(a, BENCH_ANALYSES))
    return spec


def _sweep(table: dict[str, Any]) -> list[dict[str, str]]:
    keys = list(table)
    values = [v if isinstance(v, list) else [v] for v in table.values()]
    return [dict(zip(keys, (str(x) for x in combo))) for combo in itertools.product(*values)] or [{}]


def expand(spec: dict[str, Any], base: RunConfig) -> list[RunConfig]:
    """One RunConfig per grid entry × teacher × param combination × preset-override combination."""
    configs = []
    for g in spec["grid"]:
        canv = g.get("canvases", "all")
        canvases = None if canv == "all" else [int(c) for c in canv]
        for teacher in g.get("teachers", [None]):
            for params in _sweep(g.get("params", {})):
                for overrides in _sweep(g.get("set", {})):
                    preset = base.preset
                    if overrides:
                        preset = load_preset(base.preset.name, {**base.preset.overrides, **overrides})
                    configs.append(replace(
                        base, methods=list(g["methods"]), teacher=teacher, canvases=canvases,
                        params={**base.params, **params}, preset=preset, chain=bool(g.get("chain", True)),
                    ))
    return configs


def run_bench(name: str, spec: dict[str, Any], base: RunConfig, out_dir: Path, plot: bool = True,
              launch: LaunchOptions | None = None) -> tuple[Path, ExitCode]:
    """Run every grid of the benchmark into ``out_dir/NAME.json`` (one run after the other, or as jobs
    through ``launch``: each model trained once across the benchmark's runs), then its table and plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / f"{name}.json"
    command = "sketchbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else f"sketchbench bench {name}"
    if not results_path.exists():
        write_results(results_path, new_results(
            {"bench": name, "spec": spec, "preset": base.preset.to_dict(), "datasets": base.datasets, "seeds": base.seeds},
            name, str(resolve_device(base.device)),
        ))
    code = ExitCode.OK
    configs = expand(spec, replace(base, out=results_path))
    if launch is not None:
        from sketchbench.run.launch import launch as launch_jobs

        _, code = launch_jobs(configs, launch)
        if not launch.wait:  # submitted: the same command, once they are done, makes the table
            return results_path, code
    else:
        for cfg in tqdm(configs, desc=f"bench {name}", unit="grid", leave=False):
            _, c = Runner(cfg).run()
            if c != ExitCode.OK:
                code = c
    results = load_results(results_path)
    results["command"] = command
    analyses = spec.get("analyses", [])
    if "latency" in analyses:
        results["compute_bound"] = _compute_bounds(results, base)
    write_results(results_path, results)
    md = [f"# {spec.get('title', name)}", "", spec.get("description", "").strip(), "",
          f"Made by: `{command}`", "",
          f"Preset `{base.preset.name}`, seeds {base.seeds}, device `{results['environment'].get('device')}`, "
          f"sketchbench {results['sketchbench_version']} ({results.get('git_commit') or 'no git'}).", "",
          f"FLOPs convention: {results['flops_convention']}", "",
          render(cells_of(results), "markdown"), ""]
    if "resolution" in analyses:
        md += ["## Accuracy as the query canvas falls", "",
               "acc@1 at each canvas; the drop is from the series' largest canvas to its smallest, per seed.", "",
               render_resolution(cells_of(results)), ""]
    if "smallest-rank1" in analyses:
        md += ["## Smallest canvas at which each query's own photo is ranked first", "",
               "Share of the test queries (%) whose photo first comes top at that canvas (at no smaller one); "
               "'never' = not first at any canvas.", "",
               render_smallest_rank1(cells_of(results)), ""]
    if "latency" in analyses:
        from sketchbench.results.latency import render_latency

        md += ["## Latency per runtime", "", render_latency(cells_of(results), results["compute_bound"]), ""]
    if "selector" in analyses:
        from sketchbench.results.selector import render_selector

        md += ["## What the canvas selectors found, against what could be found", "",
               "docs/results.md#the-selector-analysis says what each column is.", "",
               render_selector(cells_of(results)), ""]
    (out_dir / f"{name}.md").write_text("\n".join(md))
    if plot:
        from sketchbench.results.plot import plot_results

        try:
            plot_results(cells_of(results), out_dir / name)
            if "resolution" in analyses or "smallest-rank1" in analyses:
                plot_resolution(cells_of(results), out_dir / f"{name}-resolution")
            if "latency" in analyses:
                from sketchbench.results.latency import plot_latency

                plot_latency(cells_of(results), results["compute_bound"], out_dir / f"{name}-runtimes")
        except SketchbenchError as exc:
            print(f"warning: no plot: {exc}", file=sys.stderr)
    return results_path, code


def _compute_bounds(results: dict[str, Any], base: RunConfig) -> dict[str, dict[str, Any]]:
    """The machine's compute bound at every thread count the file's cells were timed at, measured now."""
    from sketchbench.measure.latency import compute_bound

    threads = sorted({int(c["latency_threads"]) for c in results["cells"]
                      if c.get("status") == "ok" and c.get("latency_threads") is not None})
    device = resolve_device(base.device)
    return {str(t): compute_bound(t, device) for t in threads}
