"""Latency against FLOPs, per runtime: what a FLOP buys in time on this machine.

From finished cells that carry the latency keys of :func:`sketchbench.measure.latency.cell_latency`
and the machine's compute bound measured in the same run (:func:`~sketchbench.measure.latency.compute_bound`,
per thread count):

- ms per query of the encoder (``latency_ms`` / batch) and end to end (``query_latency_ms``: select,
  render, encode), GFLOPs per query in the paper's convention;
- achieved GFLOP/s = GFLOPs / seconds, and that as a fraction of the bound (1.0 = as fast as a
  large matmul or convolution runs here): how far each query is from compute-bound;
- each row against the most expensive row of its runtime: the FLOPs ratio next to the latency
  ratios (a ratio of latencies that keeps up with the ratio of FLOPs means the FLOPs saved buy time).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from tabulate import tabulate

from sketchbench.base.errors import SketchbenchError
from sketchbench.results.cells import Cell, aggregate


def _extra(cell: Cell, key: str, default: Any = None) -> Any:
    return (cell.model_extra or {}).get(key, default)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _label(row: Any) -> str:
    """The method label without the latency settings (they are columns)."""
    variant = ",".join(p for p in row.key.variant.split(",") if p and not p.startswith("latency_"))
    label = f"{row.key.method} ← {row.key.teacher}" if row.key.teacher else row.key.method
    return f"{label} [{variant}]" if variant else label


def latency_rows(cells: list[Cell], bounds: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell key and configuration (seeds averaged), with the numbers above; ``bounds``
    maps a thread count (as text) to :func:`~sketchbench.measure.latency.compute_bound`'s result."""
    out = []
    for r in aggregate(cells):
        first = r.cells[0]
        runtime = _extra(first, "latency_runtime", "torch")
        threads = _extra(first, "latency_threads")
        batch = int(_extra(first, "latency_batch", 1) or 1)
        gflops = r.mean.get("gflops")
        enc = r.mean.get("latency_ms")
        query = _mean([float(q) for c in r.cells if (q := _extra(c, "query_latency_ms")) is not None])
        parts: dict[str, float] = {}
        for key in ("select", "render", "encode"):
            vals = [float(c.model_extra["query_breakdown_ms"][key]) for c in r.cells
                    if isinstance(_extra(c, "query_breakdown_ms"), dict) and key in c.model_extra["query_breakdown_ms"]]
            if vals:
                parts[key] = statistics.fmean(vals)
        selection = [float(sel["median"]) for c in r.cells if isinstance(sel := _extra(c, "query_selection_ms"), dict)]
        upstream = [float(u) for c in r.cells if (u := _extra(c, "query_upstream_ms")) is not None]
        bound = (bounds.get(str(threads)) or {}).get("bound_gflops_per_s")
        enc_per_query = enc / batch if enc else None
        rate = gflops / (enc_per_query / 1000.0) if gflops and enc_per_query else None
        qrate = gflops / (query / 1000.0) if gflops and query else None
        out.append({
            "label": _label(r), "dataset": r.key.dataset, "canvas": r.key.canvas, "runtime": runtime,
            "threads": threads, "batch": batch, "gflops": gflops, "encoder_ms": enc_per_query, "query_ms": query,
            "parts": parts, "gflops_per_s": rate, "query_gflops_per_s": qrate, "bound": bound,
            "of_bound": rate / bound if rate and bound else None,
            "query_of_bound": qrate / bound if qrate and bound else None,
            "error": _extra(first, "latency_error"),
            "method": r.key.method, "teacher": r.key.teacher, "histogram": r.histogram,
            "upstream": (first.params or {}).get("upstream") if r.key.canvas == "dynamic" else None,
            "select_median_ms": _mean(selection), "upstream_ms": _mean(upstream),
            "selector_gflops": _mean([float(g) for c in r.cells if (g := _extra(c, "selector_gflops")) is not None]),
        })
    for runtime in {row["runtime"] for row in out}:
        for ds in {row["dataset"] for row in out}:
            group = [row for row in out if row["runtime"] == runtime and row["dataset"] == ds and row["gflops"]]
            if not group:
                continue
            top = max(group, key=lambda row: row["gflops"])
            for row in group:
                row["reference"] = f"{top['label']} @ {top['canvas']}"
                row["flops_ratio"] = top["gflops"] / row["gflops"]
                row["encoder_ratio"] = (top["encoder_ms"] / row["encoder_ms"]) if top["encoder_ms"] and row["encoder_ms"] else None
                row["query_ratio"] = (top["query_ms"] / row["query_ms"]) if top["query_ms"] and row["query_ms"] else None
    return out


def stage_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's query by stage, with the fraction of the bound the counted stages reach: select
    (the selector's FLOPs over its time; the input it makes from the sketch is uncounted work inside
    that time), render (no FLOPs in the paper's convention) and encode (the encoder's FLOPs over the
    query's encode time, which includes ``prepare_sketch`` and one call at batch 1)."""
    out = []
    for r in rows:
        parts, bound = r["parts"], r["bound"]
        if not parts or not r["gflops"]:
            continue
        sel_g = r.get("selector_gflops") or 0.0
        enc_g = r["gflops"] - sel_g
        out.append({**r, "select_of_bound": _of_bound(sel_g, parts.get("select"), bound),
                    "encode_of_bound": _of_bound(enc_g, parts.get("encode"), bound), "encode_gflops": enc_g})
    return out


def _of_bound(gflops: float, ms: float | None, bound: float | None) -> float | None:
    return gflops / (ms / 1000.0) / bound if gflops and ms and bound else None


def dynamic_against_upstream(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each dynamic row (a canvas chosen per sketch) against the rows of its upstream (the student
    whose encoder it runs, e.g. SketchyNetV2 over SketchyNetV1) in the same runtime, dataset, threads
    and batch: the upstream's query at the canvases the dynamic method chose (its per-canvas query
    times weighted by the chosen-canvas histogram) and at the upstream's largest canvas."""
    out = []
    for d in rows:
        hist = {int(k): n for k, n in (d.get("histogram") or {}).items() if n}
        if d["canvas"] != "dynamic" or not d["query_ms"] or not hist:
            continue
        same = [r for r in rows if r["method"] == d["upstream"] and r["teacher"] == d["teacher"] and r["canvas"] != "dynamic"
                and all(r[k] == d[k] for k in ("runtime", "dataset", "threads", "batch")) and r["query_ms"]]
        at = {int(r["canvas"]): r["query_ms"] for r in same}
        if not at or not set(hist) <= set(at):
            continue
        chosen = sum(n * at[c] for c, n in hist.items()) / sum(hist.values())
        largest = max(at)
        out.append({**d, "upstream_at_chosen_ms": chosen, "upstream_largest_canvas": largest,
                    "upstream_largest_ms": at[largest], "ratio_chosen": d["query_ms"] / chosen,
                    "ratio_largest": d["query_ms"] / at[largest]})
    return out


def _f(x: Any, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_latency(cells: list[Cell], bounds: dict[str, dict[str, Any]]) -> str:
    """The Markdown of the latency analysis: the bound, the table, the ratios."""
    rows = latency_rows(cells, bounds)
    if not rows:
        raise SketchbenchError("no finished cells with latencies")
    lines = ["Compute bound of this machine, measured in the same run (fp32, eager torch):", ""]
    lines.append(tabulate([[t, b["matmul"], _f(b["matmul_gflops_per_s"], 1), b["conv"], _f(b["conv_gflops_per_s"], 1),
                            _f(b["bound_gflops_per_s"], 1)] for t, b in sorted(bounds.items(), key=lambda kv: int(kv[0]))],
                           headers=["threads", "matmul", "GFLOP/s", "conv", "GFLOP/s", "bound GFLOP/s"], tablefmt="github"))
    lines += ["", "Per query (encoder = the sketch branch on the canvas; query = select + render + encode, batch 1); "
              "'of bound' = achieved GFLOP/s ÷ the bound at the same thread count; '× bound time' = the encoder's "
              "time ÷ the time its FLOPs take at the bound (1 / of bound):", ""]
    table = []
    for r in rows:
        parts = "/".join(_f(r["parts"].get(k)) for k in ("select", "render", "encode")) if r["parts"] else "-"
        table.append([r["label"], r["dataset"], r["canvas"], r["runtime"], r["threads"], r["batch"], _f(r["gflops"], 4),
                      _f(r["encoder_ms"]), _f(r["gflops_per_s"], 2), _f(r["of_bound"], 3),
                      _f(1.0 / r["of_bound"], 1) if r["of_bound"] else "-", _f(r["query_ms"]),
                      parts, _f(r["query_of_bound"], 3), r["error"] or ""])
    lines.append(tabulate(table, headers=["method", "dataset", "canvas", "runtime", "threads", "batch", "GFLOPs",
                                          "encoder ms", "GFLOP/s", "of bound", "× bound time", "query ms",
                                          "select/render/encode ms",
                                          "query of bound", "latency error"], tablefmt="github"))
    lines += ["", "Against the most expensive row of the same runtime (× = how many times fewer FLOPs / less time):", ""]
    ratio = [[r["label"], r["canvas"], r["runtime"], r.get("reference", "-"), _f(r.get("flops_ratio")),
              _f(r.get("encoder_ratio")), _f(r.get("query_ratio"))] for r in rows if r.get("reference")]
    lines.append(tabulate(ratio, headers=["method", "canvas", "runtime", "against", "FLOPs ×", "encoder latency ×",
                                          "query latency ×"], tablefmt="github"))
    stages = stage_rows(rows)
    if stages:
        lines += ["", "The query by stage (ms, batch 1) and the fraction of the bound each counted stage reaches "
                  "(its FLOPs in the paper's convention over its time; rendering has none):", ""]
        lines.append(tabulate([[r["label"], r["canvas"], r["runtime"], _f(r["parts"].get("select"), 3),
                                _f(r["select_of_bound"], 3), _f(r["parts"].get("render"), 3), _f(r["parts"].get("encode"), 3),
                                _f(r["encode_gflops"], 4), _f(r["encode_of_bound"], 3), _f(r["query_ms"], 3)] for r in stages],
                              headers=["method", "canvas", "runtime", "select ms", "select of bound", "render ms",
                                       "encode ms", "encode GFLOPs", "encode of bound", "query ms"], tablefmt="github"))
    dyn = dynamic_against_upstream(rows)
    if dyn:
        lines += ["", "Dynamic methods against their upstream's query, same run and runtime (batch 1): the upstream's "
                  "query at the canvases the dynamic method chose (its per-canvas rows weighted by the chosen-canvas "
                  "histogram) and at its largest canvas; 'select median' = choosing the canvas alone, median over "
                  "up to 32 test sketches; 'paired' = the dynamic method's own timed sketches without their selection, i.e. "
                  "the upstream's query at the chosen canvases on the same sketches, timed in the same runs "
                  "(the steadier comparison: the per-canvas rows are timed at other moments):", ""]
        lines.append(tabulate([[r["label"], r["runtime"], r["threads"], _f(r["query_ms"]), _f(r["select_median_ms"], 3),
                                _f(r["upstream_ms"]),
                                _f(r["query_ms"] / r["upstream_ms"]) if r["query_ms"] and r["upstream_ms"] else "-",
                                ", ".join(f"{c}: {n}" for c, n in r["histogram"].items() if n),
                                _f(r["upstream_at_chosen_ms"]), _f(r["ratio_chosen"]),
                                f"{_f(r['upstream_largest_ms'])} ({r['upstream_largest_canvas']})", _f(r["ratio_largest"])]
                               for r in dyn],
                              headers=["method", "runtime", "threads", "query ms", "select median ms", "paired ms",
                                       "÷ paired", "chosen", "upstream @ chosen ms", "÷ upstream @ chosen",
                                       "upstream @ largest ms", "÷ upstream @ largest"], tablefmt="github"))
    return "\n".join(lines)


def plot_latency(cells: list[Cell], bounds: dict[str, dict[str, Any]], out_prefix: Path) -> list[Path]:
    """Latency against FLOPs (log-log), one colour per runtime: encoder (o) and query (x) per row, the
    ideal proportional line through each runtime's most expensive encoder point (latency ∝ FLOPs) and
    the compute-bound line (FLOPs ÷ the measured bound)."""
    from sketchbench.results.plot import _matplotlib, save_figure

    plt = _matplotlib()
    rows = [r for r in latency_rows(cells, bounds) if r["gflops"] and (r["encoder_ms"] or r["query_ms"])]
    if not rows:
        raise SketchbenchError("no finished cells with latencies to plot")
    fig, ax = plt.subplots(figsize=(8, 6))
    cmap = plt.get_cmap("tab10")
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    lo = min(r["gflops"] for r in rows) / 1.5
    hi = max(r["gflops"] for r in rows) * 1.5
    for i, rt in enumerate(runtimes):
        colour = cmap(i % 10)
        sub = [r for r in rows if r["runtime"] == rt]
        enc = [r for r in sub if r["encoder_ms"]]
        ax.scatter([r["gflops"] for r in enc], [r["encoder_ms"] for r in enc], color=colour, marker="o",
                   label=f"{rt}: encoder")
        qry = [r for r in sub if r["query_ms"]]
        ax.scatter([r["gflops"] for r in qry], [r["query_ms"] for r in qry], color=colour, marker="x",
                   label=f"{rt}: query end to end")
        for r in sub:
            y = r["encoder_ms"] or r["query_ms"]
            ax.annotate(f"{r['label'].split(' ←')[0]} @ {r['canvas']}", (r["gflops"], y), fontsize=6, xytext=(3, 3),
                        textcoords="offset points", color=colour)
        if enc:
            top = max(enc, key=lambda r: r["gflops"])
            k = top["encoder_ms"] / top["gflops"]
            ax.plot([lo, hi], [k * lo, k * hi], ":", color=colour, lw=1, label=f"{rt}: ideal (latency ∝ FLOPs)")
    for t, b in sorted(bounds.items()):
        rate = b["bound_gflops_per_s"]
        ax.plot([lo, hi], [lo / rate * 1000, hi / rate * 1000], "k--", lw=1,
                label=f"compute bound, {t} thread(s): {rate:.0f} GFLOP/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GFLOPs per query (paper's convention, log)")
    ax.set_ylabel("ms per query (log)")
    device = cells[0].device or "?"
    ax.set_title(f"Latency vs FLOPs per runtime ({device})")
    ax.legend(fontsize=7)
    return save_figure(fig, out_prefix)
