"""Regression gate: compare a current results file against a baseline.

Cells are matched by config hash and averaged over seeds. FLOPs and params must match exactly
(to 1e-9 relative: they are deterministic counts); acc@1/acc@10 may drop by at most a tolerance
in points, by default ``max(sigma × the baseline's seed-to-seed std, min_tolerance)``; latency
is shown but never gates. A baseline cell that is missing or failed in the current file is a
regression; a baseline without a finished cell is refused (it would pass anything). Tolerances
must be finite and not negative: a NaN would switch the gate off, a negative one would report
regressions between identical files.

Across machine types (the baseline's ``environment.machine.id`` is not this machine's, or was not
recorded) float reductions differ, a trained cell is in effect another training run, and a gate of
one point would fail on noise (a smoke cell is 32 queries: one query is 3.1 points). The gate then
judges what still has meaning (``cross_machine``): each cell's accuracy against the test set's
sampling noise (``z`` binomial standard deviations of a mean over the cell's seeds), the mean
change over all cells against the noise of that mean (a real regression moves many cells at once),
and FLOPs/params exactly, except for a cell whose architecture is chosen from the data (its
baseline seeds disagree on FLOPs or params, as a pruned network's do), which may move by
``arch_rel`` of its mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tabulate import tabulate

from sketchbench.base.errors import SketchbenchError
from sketchbench.results.cells import Cell, Row, aggregate

GATED_ACCURACY = ("acc1", "acc10")
EXACT = ("gflops", "params_m")


def check_tolerance(name: str, value: float | None) -> None:
    """A tolerance is a finite number ≥ 0 (points, or seed stds)."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise SketchbenchError(f"{name} {value}: must be a finite number of points, 0 or more")


@dataclass
class Tolerance:
    sigma: float = 2.0
    min_points: float = 1.0
    fixed_points: float | None = None
    cross_machine: bool = False
    z: float = 2.5  # cross_machine: binomial stds a cell may drop, and the mean change over cells
    arch_rel: float = 0.25  # cross_machine: relative move of a data-chosen architecture's FLOPs/params

    def __post_init__(self) -> None:
        check_tolerance("--sigma", self.sigma)
        check_tolerance("--min-tolerance", self.min_points)
        check_tolerance("--tolerance", self.fixed_points)

    def for_row(self, row: Row, metric: str) -> float:
        if self.fixed_points is not None:
            return self.fixed_points
        allowed = max(self.sigma * float(row.std.get(metric) or 0.0), self.min_points)
        if self.cross_machine:
            allowed = max(allowed, self.z * sampling_std(row, metric))
        return allowed


def sampling_std(row: Row, metric: str) -> float:
    """Binomial standard deviation, in points, of the row's mean ``metric`` over its seeds: each seed
    an accuracy over ``num_queries`` queries (0 when the counts are not recorded)."""
    p = (row.mean.get(metric) or 0.0) / 100.0
    counts = [c.num_queries for c in row.cells if getattr(c, "num_queries", None)]
    if not counts:
        return 0.0
    per_seed = [p * (1 - p) / n for n in counts]
    return 100.0 * math.sqrt(sum(per_seed)) / len(per_seed)


def data_chosen_architecture(row: Row) -> bool:
    """The baseline's seeds disagree on FLOPs or params: the architecture comes from the data (pruning)."""
    return any(len({round(float(getattr(c, m) or 0.0), 12) for c in row.cells}) > 1 for m in EXACT)


def _exact_problems(b: Row, c: Row, tol: Tolerance) -> list[str]:
    problems = []
    rel = tol.arch_rel if tol.cross_machine and data_chosen_architecture(b) else 1e-9
    for metric in EXACT:
        bv, cv = b.mean.get(metric), c.mean.get(metric)
        if bv is None or cv is None or not math.isclose(bv, cv, rel_tol=rel, abs_tol=1e-12):
            problems.append(f"{metric} changed {bv} → {cv}" + (f" (more than {rel:.0%})" if rel > 1e-6 else ""))
    return problems


def mean_change_problem(pairs: list[tuple[Row, Row]], tol: Tolerance) -> str | None:
    """Across machines: the mean acc@1 change over matched cells, against the sampling noise of that
    mean. None when it holds (or is not judged)."""
    if not tol.cross_machine or tol.fixed_points is not None:
        return None
    deltas, variances = [], []
    for b, c in pairs:
        if b.mean.get("acc1") is None or c.mean.get("acc1") is None:
            continue
        deltas.append(c.mean["acc1"] - b.mean["acc1"])
        variances.append(sampling_std(b, "acc1") ** 2 + sampling_std(c, "acc1") ** 2)
    if not deltas:
        return None
    mean = sum(deltas) / len(deltas)
    allowed = max(tol.z * math.sqrt(sum(variances)) / len(deltas), tol.min_points)
    if mean < -allowed - 1e-9:
        return f"acc1 over all {len(deltas)} cells dropped {-mean:.2f} points on average (allowed {allowed:.2f})"
    return None


def _identity(row: Row) -> str:
    """What a cell is, whatever its configuration (variant included): used with ``allow_config_change``."""
    k = row.key
    return f"{k.method}|{k.teacher}|{k.dataset}|{k.canvas}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def compare(baseline: list[Cell], current: list[Cell], tol: Tolerance, allow_config_change: bool = False
            ) -> tuple[list[list[str]], list[str]]:
    """(table rows, regression messages). Cells are matched by config hash; a cell whose
    configuration changed (same method/teacher/dataset/canvas, other hash) is refused unless
    ``allow_config_change``, which matches cells by that identity instead."""
    base_list, cur_list = aggregate(baseline), aggregate(current)
    if not base_list:  # nothing to compare would pass anything: a gate that gates nothing must fail
        failed = sum(1 for c in baseline if not c.ok)
        raise SketchbenchError(f"the baseline has no finished cell ({failed} failed): it gates nothing; make the "
                               "baseline again from a run whose cells finished")
    key: Callable[[Row], str] = _identity if allow_config_change else (lambda r: r.config_hash)
    if not allow_config_change:
        cur_hashes = {r.config_hash for r in cur_list}
        changed = [b for b in base_list if b.config_hash not in cur_hashes and any(_identity(c) == _identity(b) for c in cur_list)]
        if changed:
            raise SketchbenchError(
                f"{len(changed)} cell(s) changed configuration (e.g. {changed[0].key.label()}): "
                "pass --allow-config-change to compare them anyway"
            )
    base_rows = {key(r): r for r in base_list}
    cur_rows = {key(r): r for r in cur_list}
    failed_current = {(f"{c.method}|{c.teacher}|{c.dataset}|{c.canvas}" if allow_config_change else c.config_hash)
                      for c in current if not c.ok}
    table, regressions = [], []
    pairs: list[tuple[Row, Row]] = []
    for h, b in base_rows.items():
        c = cur_rows.get(h)
        if c is None:
            why = "failed in current" if h in failed_current else "missing in current"
            regressions.append(f"{b.key.label()}: {why}")
            table.append([b.key.label(), _num(b.mean["acc1"], 2), "-", "-", _num(b.mean["gflops"], 4), "-", "-", "REGRESSION: " + why])
            continue
        pairs.append((b, c))
        problems = _exact_problems(b, c, tol)
        deltas = {}
        for metric in GATED_ACCURACY:
            bv, cv = b.mean.get(metric), c.mean.get(metric)
            if bv is None or cv is None:
                if bv is not None:
                    problems.append(f"{metric} is missing in current")
                continue
            d = cv - bv
            deltas[metric] = d
            allowed = tol.for_row(b, metric)
            if d < -allowed - 1e-9:
                problems.append(f"{metric} dropped {-d:.2f} points (allowed {allowed:.2f})")
        lat = "-"
        if b.mean.get("latency_ms") and c.mean.get("latency_ms"):
            lat = f"{c.mean['latency_ms'] / b.mean['latency_ms']:.2f}x"
        status = "REGRESSION: " + "; ".join(problems) if problems else "ok"
        if problems:
            regressions.append(f"{b.key.label()}: " + "; ".join(problems))
        table.append([b.key.label(), _num(b.mean["acc1"], 2), _num(c.mean["acc1"], 2), f"{deltas.get('acc1', 0):+.2f}",
                      _num(b.mean["gflops"], 4), _num(c.mean["gflops"], 4), lat, status])
    for h, c in cur_rows.items():
        if h not in base_rows:
            table.append([c.key.label(), "-", _num(c.mean["acc1"], 2), "-", "-", _num(c.mean["gflops"], 4), "-", "new (not gated)"])
    overall = mean_change_problem(pairs, tol)
    if overall:
        regressions.append(overall)
    return table, regressions


def render_comparison(table: list[list[str]]) -> str:
    headers = ["cell", "acc@1 base", "acc@1 now", "Δ", "GFLOPs base", "GFLOPs now", "latency now/base", "status"]
    return tabulate(table, headers=headers, disable_numparse=True)
