"""Paper-style tables from results files: rows method × canvas, columns per dataset Top1 /
Top10 / FLOPs, with the drop against the reference row shown like the poster's "(↓2.55)".

The reference of a row is the same method's largest canvas; for a method with a teacher it is
the teacher's full-canvas row (as in the poster, where SketchyNetV1/V2 are compared with their
teacher at 256×256). Over several seeds, cells show mean ± std. Floors (``--no-train`` rows,
labelled ``[zero-shot]`` / ``[random init]``) are rows of their own.
"""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict

from tabulate import tabulate

from sketchbench.base.canvas import canvas_label, canvas_order, is_dynamic
from sketchbench.base.errors import SketchbenchError
from sketchbench.results.cells import Cell, Row, aggregate

FORMATS = ("table", "markdown", "csv", "json")


def _line(row: Row) -> tuple:
    """A table line: the row's key without the dataset (datasets are columns)."""
    k = row.key
    return (k.method, k.teacher, str(k.canvas), k.variant)


def reference(rows: list[Row], row: Row) -> Row | None:
    """The row ``row``'s accuracy is compared with: its teacher at full canvas, else its own largest canvas."""
    same = [r for r in rows if r.key.dataset == row.key.dataset and not is_dynamic(r.canvas)]
    if row.key.teacher:
        teacher = [r for r in same if r.key.method == row.key.teacher and not r.key.teacher and not r.key.variant]
        if teacher:
            return max(teacher, key=lambda r: int(r.canvas))
    own = [r for r in same if (r.key.method, r.key.teacher, r.key.variant) == (row.key.method, row.key.teacher, row.key.variant)]
    return max(own, key=lambda r: int(r.canvas)) if own else None


def _fmt(row: Row, metric: str, ref: Row | None, digits: int = 2) -> str:
    v = row.mean.get(metric)
    if v is None:
        return "-"
    s = f"{v:.{digits}f}"
    if row.n > 1:
        s += f" ± {row.std.get(metric, 0.0):.{digits}f}"
    if ref is not None and ref is not row and ref.mean.get(metric) is not None and metric in ("acc1", "acc10"):
        d = v - ref.mean[metric]
        s += f" (↓{-d:.2f})" if d < 0 else f" (↑{d:.2f})"
    return s


def build_table(cells: list[Cell]) -> tuple[list[str], list[list[str]], list[Row]]:
    rows = aggregate(cells)
    datasets = list(dict.fromkeys(r.key.dataset for r in rows))
    lines: OrderedDict[tuple, Row] = OrderedDict()
    # the poster's layout: each teacher's rows, then the methods distilled from it; otherwise
    # methods in order of first appearance, canvases ascending, dynamic last
    order = {m: i for i, m in enumerate(dict.fromkeys(r.key.method for r in rows))}
    group = {g: i for i, g in enumerate(dict.fromkeys(r.key.teacher or r.key.method for r in rows))}

    def sort_key(r: Row) -> tuple:
        g = r.key.teacher or r.key.method
        return (group.get(g, 0), r.key.teacher is not None, order[r.key.method], r.key.variant, canvas_order(r.canvas))

    for r in sorted(rows, key=sort_key):
        lines.setdefault(_line(r), r)
    headers = ["Method", "Canvas", "Params (M)"]
    for ds in datasets:
        headers += [f"{ds} Top1 (%)", f"{ds} Top10 (%)", f"{ds} GFLOPs", f"{ds} ms/query"]
    table = []
    for line, first in lines.items():
        params = first.mean.get("params_m")
        out = [first.key.method_label(), canvas_label(first.canvas), f"{params:.2f}" if params is not None else "-"]
        for ds in datasets:
            match = [r for r in rows if r.key.dataset == ds and _line(r) == line]
            if not match:
                out += ["-"] * 4
                continue
            r = match[0]
            ref = reference(rows, r)
            out += [_fmt(r, "acc1", ref), _fmt(r, "acc10", ref), _fmt(r, "gflops", None, 3), _fmt(r, "latency_ms", None, 1)]
        table.append(out)
    return headers, table, rows


def render(cells: list[Cell], fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise SketchbenchError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    headers, table, rows = build_table(cells)
    failed = [c for c in cells if not c.ok]
    if fmt == "json":
        return json.dumps({"rows": [r.to_dict() for r in rows], "failed": [c.to_json() for c in failed]}, indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(headers)
        w.writerows(table)
        return buf.getvalue()
    if not table and not failed:
        return "no results yet"
    text = tabulate(table, headers=headers, tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    for r in (r for r in rows if r.histogram):
        text += f"\n\n{r.key.method_label()} on {r.key.dataset}: chosen canvases " + ", ".join(
            f"{k}: {v}" for k, v in r.histogram.items())
    warned = {(c.key.label(), w) for c in cells if c.ok for w in c.warnings}
    if warned:
        text += "\n\nwarnings:\n" + "\n".join(f"- {label}: {w}" for label, w in sorted(warned))
    if failed:
        text += "\n\nfailed cells:\n" + "\n".join(
            f"- {c.method} on {c.dataset} @ {c.canvas} (seed {c.seed}): {c.error}" for c in failed)
    return text
