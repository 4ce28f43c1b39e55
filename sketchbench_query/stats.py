"""Whole-sketch statistics: the input of the ``stats`` canvas selector, and what the selector analysis
(``sketchbench report --analysis selector``) asks of a query when it measures how much of the
per-query canvas choice the sketch alone predicts.

Ten numbers per sketch, from one vectorised pass over its points (no per-point Python loop): the
number of strokes and of points (log), the ink length (sum of segment lengths within strokes), the
extent (width, height of the box), the ink density (ink per unit of box area), the mean and longest
stroke, the share of short strokes (< 0.05 of the box) and the total turning per unit of ink (how
curly the lines are). A detailed sketch has many strokes, much ink and many short strokes; those are
the sketches whose details a small canvas merges.
"""

from __future__ import annotations

import numpy as np

#: the numbers :func:`sketch_stats` gives, in order
SKETCH_STATS = ("log_strokes", "log_points", "ink_length", "width", "height", "ink_density", "mean_stroke_length",
                "longest_stroke", "short_stroke_share", "turning_per_ink")
#: a stroke shorter than this (in the unit box) counts as short
SHORT_STROKE = 0.05


def sketch_stats(points: np.ndarray) -> np.ndarray:
    """The statistics of ``(N, 3)`` unit-box points (``x, y, pen``; ``pen == 1`` ends a stroke), float32
    ``(len(SKETCH_STATS),)``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = len(pts)
    xy = pts[:, :2]
    pen = pts[:, 2] > 0.5
    if n:
        pen[-1] = True
    n_strokes = int(pen.sum())
    seg = np.diff(xy, axis=0)
    inside = ~pen[:-1]  # the segment from point i to i + 1 stays in one stroke unless point i ends it
    length = np.hypot(seg[:, 0], seg[:, 1]) * inside
    # the stroke each segment belongs to: the number of strokes ended before its first point
    stroke_of = np.cumsum(np.concatenate([[0], pen[:-2]])).astype(np.int64) if n > 1 else np.zeros(0, dtype=np.int64)
    per_stroke = np.bincount(stroke_of, weights=length, minlength=n_strokes) if n > 1 else np.zeros(n_strokes)
    ink = float(length.sum())
    width, height = (float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1]))) if n else (0.0, 0.0)
    turning = 0.0
    if n > 2:
        angle = np.arctan2(seg[:, 1], seg[:, 0])
        pair = inside[:-1] & inside[1:] & (length[:-1] > 1e-9) & (length[1:] > 1e-9)
        turn = np.abs(np.angle(np.exp(1j * (angle[1:] - angle[:-1]))))
        turning = float(turn[pair].sum())
    return np.array([
        np.log1p(n_strokes), np.log1p(n), ink, width, height, ink / max(width * height, 1e-3),
        ink / max(n_strokes, 1), float(per_stroke.max()) if n_strokes else 0.0,
        float((per_stroke < SHORT_STROKE).mean()) if n_strokes else 0.0, turning / max(ink, 1e-3),
    ], dtype=np.float32)


def stats_input(points: np.ndarray, recipe: object = None) -> np.ndarray:
    """The ``stats`` recipe: float32 ``(1, len(SKETCH_STATS))`` (standardisation is inside the graph)."""
    return sketch_stats(points)[None]
