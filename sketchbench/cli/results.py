"""Commands on results files: ``report``, ``compare``, ``merge``, ``plot``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sketchbench.base.errors import ExitCode, SketchbenchError


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "markdown", "csv", "json"]), show_default=True)
@click.option("--analysis", "analyses", multiple=True, type=click.Choice(["resolution", "smallest-rank1", "selector"]),
              help="Also print the pilot study's tables (accuracy as the canvas falls; smallest canvas with the photo "
                   "first) or, for dynamic cells, what the canvas selector found against constants, the random mix "
                   "and oracles (selector).")
def report(results: tuple[Path, ...], fmt: str, analyses: tuple[str, ...]) -> None:
    """Print a paper-style table from one or more results files (a cell in several files counts once).

    \b
    Examples:
      sketchbench report results/run-*.json
      sketchbench report a.json b.json --format markdown
      sketchbench report results/bench-cpu/pilot.json --analysis resolution --analysis smallest-rank1
      sketchbench report docs/results/chairv2-cpu-imagenet/main.json --analysis selector
    """
    from sketchbench.results.report import render
    from sketchbench.results.resolution import render_resolution, render_smallest_rank1
    from sketchbench.results.schema import load_cells
    from sketchbench.results.selector import render_selector

    # a finished cell found in several files (e.g. a teacher a bench also ran) counts once
    cells = load_cells(results)
    if not cells:  # a report of nothing would look like a report
        raise SketchbenchError(f"{', '.join(map(str, results))}: no cells to report (the run wrote its header only)")
    click.echo(render(cells, fmt))
    table_fmt = "github" if fmt == "markdown" else "simple"
    renderers = {"resolution": render_resolution, "smallest-rank1": render_smallest_rank1, "selector": render_selector}
    for name in dict.fromkeys(analyses):
        fn = renderers[name]
        click.echo(f"\n{name}:\n{fn(cells, table_fmt)}")



@click.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--tolerance", type=float, default=None, help="Allowed accuracy drop in points (overrides the default).")
@click.option("--sigma", type=float, default=2.0, show_default=True, help="Default tolerance: this many baseline seed stds...")
@click.option("--min-tolerance", type=float, default=1.0, show_default=True, help="...but at least this many points.")
@click.option("--allow-config-change", is_flag=True, help="Match cells by method/teacher/dataset/canvas when their configuration changed.")
@click.option("--strict", is_flag=True, help="Judge as on the baseline's machine type even when this one differs.")
def compare(baseline: Path, current: Path, tolerance: float | None, sigma: float, min_tolerance: float,
            allow_config_change: bool, strict: bool) -> None:
    """Regression gate: exit 0 when CURRENT does not regress against BASELINE, 1 when it does,
    2 on an error. FLOPs and params must match exactly; accuracy may drop by the tolerance;
    latency is shown but never gates.

    Float results differ between CPU types, so a baseline NAME-<machine id>.json made on this
    machine type, beside BASELINE, is used instead when it exists (the id is in every results
    file's environment.machine). Against a baseline of another machine type (or none recorded),
    accuracy is judged against the test set's sampling noise, per cell and as the mean over all
    cells, and a pruned (data-chosen) architecture's FLOPs may move by 25 %; --strict judges as
    on the same machine.

    \b
    Examples:
      sketchbench compare benchmarks/baselines/smoke.json results/smoke.json
      sketchbench compare base.json now.json --tolerance 2.5
    """
    from sketchbench.results.compare import Tolerance, render_comparison
    from sketchbench.results.compare import compare as do_compare
    from sketchbench.results.schema import baseline_for, cells_of, load_results

    chosen = baseline_for(baseline)
    if chosen != baseline:
        click.echo(f"comparing with {chosen}, the baseline made on this machine type", err=True)
    base, cur = load_results(chosen), load_results(current)
    base_machine = base.get("environment", {}).get("machine", {}).get("id")
    cur_machine = cur.get("environment", {}).get("machine", {}).get("id")
    cross_machine = not strict and (base_machine is None or base_machine != cur_machine)
    if cross_machine:
        click.echo(f"note: {chosen} was made on another machine type ({base_machine or 'not recorded'}, this one is "
                   f"{cur_machine or 'not recorded'}): float results differ by whole queries, so accuracy is judged "
                   f"against sampling noise (per cell and on average) and pruned architectures within 25 %; make a "
                   f"baseline for this machine as {Path(baseline).stem}-{cur_machine}.json for the exact gate", err=True)
    tol = Tolerance(sigma, min_tolerance, tolerance, cross_machine=cross_machine)
    try:
        table, regressions = do_compare(cells_of(base), cells_of(cur), tol, allow_config_change)
    except SketchbenchError as exc:
        raise SketchbenchError(f"{chosen} vs {current}: {exc}") from None
    click.echo(render_comparison(table))
    if regressions:
        click.echo(f"\n{len(regressions)} regression(s):", err=True)
        for r in regressions:
            click.echo(f"- {r}", err=True)
        sys.exit(int(ExitCode.FAILED))
    click.echo(f"\nno regression ({len(table)} cells compared)", err=True)



@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="The merged results file.")
@click.option("--allow-partial", is_flag=True, help="Merge even when some shards of the grid are missing.")
def merge(results: tuple[Path, ...], out: Path, allow_partial: bool) -> None:
    """Join results files of shards of one grid (run --shard I/N). Refuses different configs, a
    shard given twice, missing shards, cells two shards measured differently, and an --out that
    exists but is not a results file.

    \b
    Examples:
      sketchbench merge shard1.json shard2.json -o all.json
    """
    from sketchbench.results.merge import merge as do_merge
    from sketchbench.results.schema import load_results, write_results

    if out.exists():
        try:
            load_results(out)
        except SketchbenchError:
            raise SketchbenchError(f"--out {str(out)!r} exists and is not a sketchbench results file: refusing to "
                                   "overwrite it") from None
    merged = do_merge([(str(p), load_results(p)) for p in results], allow_partial=allow_partial)
    write_results(out, merged)
    click.echo(f"{len(merged['cells'])} cells from {len(results)} files written to {out}")



@click.command()
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
    from sketchbench.results.plot import plot_results
    from sketchbench.results.schema import load_cells

    for path in plot_results(load_cells(results), out, metric):
        click.echo(str(path))


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (report, compare, merge, plot)
