"""Paper-style tables from results files: rows method × canvas, columns per dataset Top1 /
Top10 / FLOPs, with the drop against the reference row shown like the poster's "(↓2.55)".

The reference of a row is the same method's largest canvas; for a method with a teacher it is
the teacher's full-canvas row (as in the poster, where SketchyNetV1/V2 are compared with their
teacher at 256×256). Over several seeds, cells show mean ± std.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import OrderedDict
from typing import Any

from tabulate import tabulate

from sketchbench.base.errors import SketchbenchError

FORMATS = ("table", "markdown", "csv", "json")


def _key(cell: dict[str, Any]) -> tuple:
    return (cell["method"], cell.get("teacher"), str(cell["canvas"]), cell.get("variant") or "")


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group ok cells by (method, teacher, dataset, canvas, config) and average over seeds."""
    groups: OrderedDict[tuple, list[dict[str, Any]]] = OrderedDict()
    for c in cells:
        if c.get("status") != "ok":
            continue
        groups.setdefault((*_key(c), c["dataset"], c.get("config_hash")), []).append(c)
    rows = []
    for (method, teacher, _canvas, variant, dataset, h), members in groups.items():
        row: dict[str, Any] = {
            "method": method, "teacher": teacher, "canvas": members[0]["canvas"], "dataset": dataset,
            "variant": variant,
            "config_hash": h, "seeds": sorted({m.get("seed", 0) for m in members}), "n": len(members),
            "role": members[0].get("role", "main"), "kind": members[0].get("kind"),
        }
        for metric in ("acc1", "acc10", "mean_rank", "gflops", "params_m", "latency_ms", "train_seconds"):
            vals = [float(m[metric]) for m in members if m.get(metric) is not None]
            row[metric] = statistics.fmean(vals) if vals else None
            row[metric + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        hists = [m["canvas_histogram"] for m in members if m.get("canvas_histogram")]
        if hists:
            row["canvas_histogram"] = {k: sum(h.get(k, 0) for h in hists) for k in hists[0]}
        rows.append(row)
    return rows


def _canvas_sort(canvas: Any) -> tuple[int, int]:
    return (1, 0) if canvas == "dynamic" else (0, int(canvas))


def _reference(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    same_ds = [r for r in rows if r["dataset"] == row["dataset"]]
    if row.get("teacher"):
        teacher_rows = [r for r in same_ds if r["method"] == row["teacher"] and not r.get("teacher")
                        and r["canvas"] != "dynamic" and not r.get("variant")]
        if teacher_rows:
            return max(teacher_rows, key=lambda r: int(r["canvas"]))
    own = [r for r in same_ds if _row_key(r)[:2] == _row_key(row)[:2] and r.get("variant") == row.get("variant")
           and r["canvas"] != "dynamic"]
    return max(own, key=lambda r: int(r["canvas"])) if own else None


def _fmt(row: dict[str, Any], metric: str, ref: dict[str, Any] | None, digits: int = 2) -> str:
    v = row.get(metric)
    if v is None:
        return "-"
    s = f"{v:.{digits}f}"
    if row.get("n", 1) > 1:
        s += f" ± {row.get(metric + '_std', 0.0):.{digits}f}"
    if ref is not None and ref is not row and ref.get(metric) is not None and metric in ("acc1", "acc10"):
        d = v - ref[metric]
        s += f" (↓{-d:.2f})" if d < 0 else f" (↑{d:.2f})"
    return s


def _canvas_label(canvas: Any) -> str:
    return "dynamic" if canvas == "dynamic" else f"{canvas}x{canvas}"


def _method_label(row: dict[str, Any]) -> str:
    label = f"{row['method']} ← {row['teacher']}" if row.get("teacher") else row["method"]
    return f"{label} [{row['variant']}]" if row.get("variant") else label


def _row_key(r: dict[str, Any]) -> tuple:
    return (r["method"], r.get("teacher"), str(r["canvas"]), r.get("variant") or "")


def build_table(cells: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    rows = aggregate(cells)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    line_keys: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
    # the poster's layout: each teacher's rows, then the methods distilled from it; otherwise
    # methods in order of first appearance, canvases ascending, dynamic last
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    group = {g: i for i, g in enumerate(dict.fromkeys(r.get("teacher") or r["method"] for r in rows))}

    def sort_key(r: dict[str, Any]) -> tuple:
        g = r.get("teacher") or r["method"]
        return (group.get(g, 0), r.get("teacher") is not None, order[r["method"]], r.get("variant") or "",
                _canvas_sort(r["canvas"]))

    for r in sorted(rows, key=sort_key):
        line_keys.setdefault(_row_key(r), r)
    headers = ["Method", "Canvas", "Params (M)"]
    for ds in datasets:
        headers += [f"{ds} Top1 (%)", f"{ds} Top10 (%)", f"{ds} GFLOPs", f"{ds} ms/query"]
    table = []
    for key, first in line_keys.items():
        line = [_method_label(first), _canvas_label(first["canvas"]),
                f"{first['params_m']:.2f}" if first.get("params_m") is not None else "-"]
        for ds in datasets:
            match = [r for r in rows if r["dataset"] == ds and _row_key(r) == key]
            if not match:
                line += ["-"] * 4
                continue
            r = match[0]
            ref = _reference(rows, r)
            line += [_fmt(r, "acc1", ref), _fmt(r, "acc10", ref), _fmt(r, "gflops", None, 3), _fmt(r, "latency_ms", None, 1)]
        table.append(line)
    return headers, table, rows


def render(cells: list[dict[str, Any]], fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise SketchbenchError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    headers, table, rows = build_table(cells)
    failed = [c for c in cells if c.get("status") != "ok"]
    if fmt == "json":
        return json.dumps({"rows": rows, "failed": failed}, indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(headers)
        w.writerows(table)
        return buf.getvalue()
    if not table and not failed:
        return "no results yet"
    text = tabulate(table, headers=headers, tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    hists = [r for r in rows if r.get("canvas_histogram")]
    for r in hists:
        text += f"\n\n{_method_label(r)} on {r['dataset']}: chosen canvases " + ", ".join(
            f"{k}: {v}" for k, v in r["canvas_histogram"].items()
        )
    if failed:
        text += "\n\nfailed cells:\n" + "\n".join(
            f"- {c['method']} on {c['dataset']} @ {c['canvas']} (seed {c.get('seed')}): {c.get('error')}" for c in failed
        )
    return text
