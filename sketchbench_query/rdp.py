"""Ramer–Douglas–Peucker to a point budget, by the compiled ``simplification`` package (Rust, the
``geo`` crate): what :meth:`sketchbench.Sketch.simplify` and the ``stroke5`` selector input run.

The budget rule is the one sketchbench always had: RDP on each stroke with tolerance ``epsilon``
(unit-box units), the tolerance grown ×1.5 (capped at 1.01 × the bounding-box diagonal, where every
stroke is down to its end points) until at most ``max_points`` points remain; if the end points
alone are still too many, whole strokes are dropped, shortest drawn length first.

Two facts make this fast and keep the old output:

- RDP's split tree does not depend on the tolerance, so the points kept at a larger tolerance are
  RDP of the points kept at a smaller one: the search over tolerances (a bisection over the ×1.5
  ladder) runs on ever fewer points, and the count kept falls monotonically along the ladder.
- ``geo`` splits an interval at the *last* of equally distant farthest points; sketchbench's RDP
  always split at the *first*. Each stroke is therefore simplified reversed, so that equal
  distances resolve as before. What can still differ is a tie that only one of the two distance
  formulas (``geo``'s cross product, the old projection onto the segment) sees, i.e. points whose
  distances agree to the last bit in one and not the other: 2 of the 1,275 real ChairV2 sketches at
  ``max_points=100`` (integer pixel coordinates make exact ties common there), none of the 199
  Sketchy SVGs (tests/test_simplify.py compares both on every real sketch).
"""

from __future__ import annotations

import numpy as np
from simplification.cutil import simplify_coords_idx

from sketchbench_query.points import SketchInputError, stroke_ends

#: RDP tolerance in unit-box units (0.5 px on a 256 canvas) before the budget grows it
EPSILON = 0.002
#: the tolerance ladder's step
GROWTH = 1.5


def _ladder(points: np.ndarray, epsilon: float) -> list[float]:
    """The tolerances tried, in order: ``epsilon`` × 1.5^k up to the bounding-box diagonal × 1.01."""
    lo = points[:, :2].min(axis=0)
    hi = points[:, :2].max(axis=0)
    x0, y0, x1, y1 = float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
    eps = float(epsilon)
    eps_max = max(float(np.hypot(x1 - x0, y1 - y0)), eps) * 1.01
    out = [eps]
    while eps < eps_max:
        eps = min(eps * GROWTH, eps_max)
        out.append(eps)
    return out


def simplify(points: np.ndarray, max_points: int | None = None, epsilon: float = EPSILON) -> np.ndarray:
    """The points RDP keeps of a ``(N, 3)`` ``x, y, pen`` sketch (rows of ``points``, drawing order
    and pen kept): tolerance ``epsilon``, grown until at most ``max_points`` remain (at least 2)."""
    if max_points is not None and max_points < 2:
        raise SketchInputError(f"max_points must be at least 2, got {max_points}")
    if not (epsilon >= 0 and np.isfinite(epsilon)) or (max_points is not None and epsilon <= 0):
        # a zero tolerance cannot grow to meet a budget (sketchbench's numpy RDP looped forever on it)
        raise SketchInputError(f"epsilon must be finite and >= 0, and > 0 with max_points; got {epsilon}")
    ends = stroke_ends(points)
    starts = np.concatenate([[0], ends[:-1] + 1])
    ladder = [float(epsilon)]  # the rest of the ladder only when the first rung is over budget
    # every stroke reversed (geo splits at the last farthest point: reversed, that is the first),
    # as float64 points and their row numbers; a stroke of <= 2 points is final as it is
    rev = np.ascontiguousarray(points[::-1, :2], dtype=np.float64)
    rows = np.arange(len(points) - 1, -1, -1)
    n = len(points)
    strokes = [(rev[n - 1 - b : n - a], rows[n - 1 - b : n - a]) for a, b in zip(starts.tolist(), ends.tolist())]

    def at(k: int, base: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        eps = ladder[k]
        out = []
        for xy, ids in base:
            if len(ids) > 2:
                keep = simplify_coords_idx(xy, eps)
                xy, ids = xy[keep], ids[keep]
            out.append((xy, ids))
        return out

    def count(kept: list[tuple[np.ndarray, np.ndarray]]) -> int:
        return sum(len(ids) for _, ids in kept)

    best = at(0, strokes)
    if max_points is not None and count(best) > max_points:
        ladder = _ladder(points, epsilon)
    if len(ladder) > 1:
        # bisection over the ladder: rung lo is over budget; rung hi within it, or the last rung.
        # Each rung is RDP of the points the last over-budget rung kept (the same split tree)
        lo, hi, base, found = 0, len(ladder) - 1, best, None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial = at(mid, base)
            if count(trial) <= max_points:
                hi, found = mid, trial
            else:
                lo, base = mid, trial
        best = found if found is not None else at(hi, base)
    kept = [ids[::-1] for _, ids in best]
    if max_points is not None and count(best) > max_points:
        kept = _drop_short_strokes(kept, points, starts, ends, max_points)
    return points[np.concatenate(kept)]


def _drop_short_strokes(kept: list[np.ndarray], points: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                        max_points: int) -> list[np.ndarray]:
    """Whole strokes, longest drawn (unsimplified) length first, while they fit the budget."""
    xy = points[:, :2].astype(np.float64)
    lengths = [float(np.hypot(*np.diff(xy[a : b + 1], axis=0).T).sum()) if b > a else 0.0
               for a, b in zip(starts.tolist(), ends.tolist())]
    keep = np.zeros(len(kept), dtype=bool)
    budget = max_points
    for i in np.argsort(lengths, kind="stable")[::-1]:
        if len(kept[i]) <= budget:
            keep[i] = True
            budget -= len(kept[i])
    return [k for k, flag in zip(kept, keep) if flag]
