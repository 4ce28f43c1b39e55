"""How retrieval holds up as the query's canvas shrinks: the paper's pilot study, as analyses of
finished cells (any methods, any datasets).

- :func:`resolution_rows`: acc@1 of each method at every canvas it was evaluated at, with the drop
  from its own largest canvas, in points and relative to that accuracy. Run for sketch queries
  (FG-SBIR) and photo queries (FG-IBIR) side by side it shows which query type tolerates a
  smaller input.
- :func:`smallest_rank1_rows`: for each query, the smallest canvas at which its own photo is
  ranked first (from the per-query ranks every cell records), as shares of the queries; the
  poster's "percentage of sketches needing a higher input resolution for a perfect retrieval".

Both group cells by (method, teacher, variant, dataset) and average over seeds (mean ± std).
"""

from __future__ import annotations

import itertools
import statistics
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from sketchbench.base.errors import SketchbenchError
from sketchbench.results.cells import Cell, CellKey

#: the table keys a benchmark file may list under ``analyses``
ANALYSES = ("resolution", "smallest-rank1")


def _series_key(cell: Cell) -> tuple:
    return cell.key.series()


def _label(key: tuple) -> str:
    method, teacher, variant, dataset = key
    return CellKey(method, teacher, dataset, 0, variant).method_label()


def _fixed_canvas_cells(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.ok and not c.dynamic]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pm(mean: float, sd: float, n: int) -> str:
    return f"{mean:.2f} ± {sd:.2f}" if n > 1 else f"{mean:.2f}"


def resolution_rows(cells: list[Cell], metric: str = "acc1") -> list[Cell]:
    """One row per series: ``{"key", "label", "dataset", "canvases": {c: (mean, sd, n)},
    "drop_points": (mean, sd), "drop_relative": (mean, sd)}``; drops are from the largest to the
    smallest canvas, computed per seed and then averaged."""
    series: OrderedDict[tuple, dict[int, dict[int, float]]] = OrderedDict()
    for c in _fixed_canvas_cells(cells):
        if getattr(c, metric) is None:
            continue
        series.setdefault(_series_key(c), {}).setdefault(int(c.canvas), {})[c.seed] = float(getattr(c, metric))
    rows = []
    for key, by_canvas in series.items():
        canvases = sorted(by_canvas)
        row: dict[str, Any] = {"key": key, "label": _label(key), "dataset": key[3], "canvases": {}}
        for cv in canvases:
            vals = list(by_canvas[cv].values())
            row["canvases"][cv] = (*_mean_sd(vals), len(vals))
        lo, hi = canvases[0], canvases[-1]
        seeds = sorted(set(by_canvas[lo]) & set(by_canvas[hi]))
        if len(canvases) > 1 and seeds:
            points = [by_canvas[hi][s] - by_canvas[lo][s] for s in seeds]
            # relative to the largest canvas's accuracy; undefined when that is zero
            rel = [(by_canvas[hi][s] - by_canvas[lo][s]) / by_canvas[hi][s] * 100 for s in seeds if by_canvas[hi][s] > 0]
            row["drop_points"] = _mean_sd(points)
            row["drop_relative"] = _mean_sd(rel) if rel else None
            row["n"] = len(seeds)
        rows.append(row)
    return rows


def smallest_rank1_rows(cells: list[Cell]) -> list[Cell]:
    """One row per series: the share (%) of queries whose smallest rank-1 canvas is each canvas,
    and of those never ranked first (``None``), mean ± std over seeds. Needs ``query_ranks`` in
    the cells; series without them are left out."""
    per_seed: OrderedDict[tuple, dict[int, dict[int, list[int]]]] = OrderedDict()
    for c in _fixed_canvas_cells(cells):
        if not c.query_ranks:
            continue
        per_seed.setdefault(_series_key(c), {}).setdefault(c.seed, {})[int(c.canvas)] = c.query_ranks
    rows = []
    for key, seeds in per_seed.items():
        canvases = sorted(set().union(*(set(s) for s in seeds.values())))
        shares: dict[int | None, list[float]] = {cv: [] for cv in [*canvases, None]}
        for ranks_at in seeds.values():
            if sorted(ranks_at) != canvases or len({len(r) for r in ranks_at.values()}) != 1:
                continue  # a seed missing a canvas (or a different query set) cannot be counted per query
            n = len(next(iter(ranks_at.values())))
            first: list[int | None] = []
            for q in range(n):
                first.append(next((cv for cv in canvases if ranks_at[cv][q] == 1), None))
            for cv in shares:
                shares[cv].append(100.0 * sum(1 for f in first if f == cv) / n)
        if not shares[None]:
            continue
        rows.append({"key": key, "label": _label(key), "dataset": key[3], "canvases": canvases,
                     "shares": {cv: (*_mean_sd(v), len(v)) for cv, v in shares.items()}})
    return rows


def render_resolution(cells: list[Cell], fmt: str = "github") -> str:
    rows = resolution_rows(cells)
    if not rows:
        return "no fixed-canvas cells"
    canvases = sorted({cv for r in rows for cv in r["canvases"]})
    headers = ["Method", "Dataset", *[f"{cv}x{cv} acc@1 (%)" for cv in canvases],
               "drop largest→smallest (points)", "drop (% of largest)"]
    table = []
    for r in rows:
        line = [r["label"], r["dataset"]]
        line += [_pm(*r["canvases"][cv]) if cv in r["canvases"] else "-" for cv in canvases]
        n = r.get("n", 0)
        line.append(_pm(*r["drop_points"], n) if r.get("drop_points") else "-")
        line.append(_pm(*r["drop_relative"], n) if r.get("drop_relative") else "-")
        table.append(line)
    return tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)


def render_smallest_rank1(cells: list[Cell], fmt: str = "github") -> str:
    rows = smallest_rank1_rows(cells)
    if not rows:
        return "no cells with per-query ranks at every canvas"
    canvases = sorted({cv for r in rows for cv in r["canvases"]})
    headers = ["Method", "Dataset", *[f"first at {cv}x{cv} (%)" for cv in canvases], "never first (%)"]
    table = []
    for r in rows:
        line = [r["label"], r["dataset"]]
        line += [_pm(*r["shares"][cv]) if cv in r["shares"] else "-" for cv in canvases]
        line.append(_pm(*r["shares"][None]))
        table.append(line)
    return tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)


def _canvas_axis(ax: Any, ticks: list[int], xlabel: str, ylabel: str, title: str) -> None:
    """A log-2 canvas axis labelled with the canvases themselves."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def plot_resolution(cells: list[Cell], out_prefix: Path) -> list[Path]:
    """acc@1 versus canvas per series (top) and the share of queries first ranked first at each
    canvas, cumulated (bottom), one column per dataset; PNG and SVG."""
    from sketchbench.results.plot import _matplotlib, save_figure

    acc_rows, first_rows = resolution_rows(cells), smallest_rank1_rows(cells)
    if not acc_rows:
        raise SketchbenchError("no finished fixed-canvas cells to plot")
    plt = _matplotlib()
    datasets = list(dict.fromkeys(r["dataset"] for r in acc_rows))
    ticks = sorted({c for r in acc_rows for c in r["canvases"]})
    fig, axes = plt.subplots(2, len(datasets), figsize=(6 * len(datasets), 8), squeeze=False)
    for col, ds in enumerate(datasets):
        ax = axes[0][col]
        for r in (r for r in acc_rows if r["dataset"] == ds):
            cvs = sorted(r["canvases"])
            ax.errorbar(cvs, [r["canvases"][c][0] for c in cvs], yerr=[r["canvases"][c][1] for c in cvs],
                        marker="o", capsize=2, label=r["label"])
        _canvas_axis(ax, ticks, "query canvas (px, log)", "acc@1 (%)", f"{ds}: accuracy as the query resolution falls")
        ax2 = axes[1][col]
        for r in (r for r in first_rows if r["dataset"] == ds):
            cum = list(itertools.accumulate(r["shares"][c][0] for c in r["canvases"]))
            ax2.plot(r["canvases"], cum, marker="o", label=r["label"])
        _canvas_axis(ax2, ticks, "canvas (px, log)", "queries ranked first at or below this canvas (%)",
                     f"{ds}: smallest canvas with the own photo first")
    return save_figure(fig, Path(out_prefix))
