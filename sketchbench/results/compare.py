"""Regression gate: compare a current results file against a baseline.

Cells are matched by config hash and averaged over seeds. FLOPs and params must match exactly
(to 1e-9 relative: they are deterministic counts); acc@1/acc@10 may drop by at most a tolerance
in points, by default ``max(sigma × the baseline's seed-to-seed std, min_tolerance)``; latency
is shown but never gates. A baseline cell that is missing or failed in the current file is a
regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from sketchbench.base.errors import SketchbenchError
from sketchbench.results.report import aggregate

GATED_ACCURACY = ("acc1", "acc10")
EXACT = ("gflops", "params_m")


@dataclass
class Tolerance:
    sigma: float = 2.0
    min_points: float = 1.0
    fixed_points: float | None = None

    def for_row(self, row: dict[str, Any], metric: str) -> float:
        if self.fixed_points is not None:
            return self.fixed_points
        return max(self.sigma * float(row.get(metric + "_std") or 0.0), self.min_points)


def _label(row: dict[str, Any]) -> str:
    teacher = f" ← {row['teacher']}" if row.get("teacher") else ""
    return f"{row['method']}{teacher} / {row['dataset']} @ {row['canvas']}"


def _identity(row: dict[str, Any]) -> str:
    """What a cell is, whatever its configuration: used with ``allow_config_change``."""
    return f"{row['method']}|{row.get('teacher')}|{row['dataset']}|{row['canvas']}"


def compare(
    baseline: dict[str, Any], current: dict[str, Any], tol: Tolerance, allow_config_change: bool = False
) -> tuple[list[list[str]], list[str]]:
    """(table rows, regression messages). Cells are matched by config hash; a cell whose
    configuration changed (same method/teacher/dataset/canvas, other hash) is refused unless
    ``allow_config_change``, which matches cells by that identity instead."""
    base_list, cur_list = aggregate(baseline["cells"]), aggregate(current["cells"])
    key = _identity if allow_config_change else (lambda r: r["config_hash"])
    if not allow_config_change:
        cur_hashes = {r["config_hash"] for r in cur_list}
        changed = [b for b in base_list if b["config_hash"] not in cur_hashes
                   and any(_identity(c) == _identity(b) for c in cur_list)]
        if changed:
            raise SketchbenchError(
                f"{len(changed)} cell(s) changed configuration (e.g. {_label(changed[0])}): "
                "pass --allow-config-change to compare them anyway"
            )
    base_rows = {key(r): r for r in base_list}
    cur_rows = {key(r): r for r in cur_list}
    failed_current = {key({**c, "config_hash": c.get("config_hash")}) for c in current["cells"] if c.get("status") != "ok"}
    table, regressions = [], []
    for h, b in base_rows.items():
        c = cur_rows.get(h)
        if c is None:
            why = "failed in current" if h in failed_current else "missing in current"
            regressions.append(f"{_label(b)}: {why}")
            table.append([_label(b), f"{b['acc1']:.2f}", "-", "-", f"{b['gflops']:.4f}", "-", "-", "REGRESSION: " + why])
            continue
        problems = []
        for metric in EXACT:
            bv, cv = b.get(metric), c.get(metric)
            if bv is None or cv is None or not math.isclose(bv, cv, rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"{metric} changed {bv} → {cv}")
        deltas = {}
        for metric in GATED_ACCURACY:
            if b.get(metric) is None or c.get(metric) is None:
                continue
            d = c[metric] - b[metric]
            deltas[metric] = d
            allowed = tol.for_row(b, metric)
            if d < -allowed - 1e-9:
                problems.append(f"{metric} dropped {-d:.2f} points (allowed {allowed:.2f})")
        lat = "-"
        if b.get("latency_ms") and c.get("latency_ms"):
            lat = f"{c['latency_ms'] / b['latency_ms']:.2f}x"
        status = "REGRESSION: " + "; ".join(problems) if problems else "ok"
        if problems:
            regressions.append(f"{_label(b)}: " + "; ".join(problems))
        table.append([
            _label(b), f"{b['acc1']:.2f}", f"{c['acc1']:.2f}", f"{deltas.get('acc1', 0):+.2f}",
            f"{b['gflops']:.4f}", f"{c['gflops']:.4f}", lat, status,
        ])
    new = [h for h in cur_rows if h not in base_rows]
    for h in new:
        c = cur_rows[h]
        table.append([_label(c), "-", f"{c['acc1']:.2f}", "-", "-", f"{c['gflops']:.4f}", "-", "new (not gated)"])
    return table, regressions


def render_comparison(table: list[list[str]]) -> str:
    headers = ["cell", "acc@1 base", "acc@1 now", "Δ", "GFLOPs base", "GFLOPs now", "latency now/base", "status"]
    return tabulate(table, headers=headers, disable_numparse=True)
