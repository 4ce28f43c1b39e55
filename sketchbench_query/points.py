"""Vector sketches as plain arrays: ``(N, 3)`` float32 rows ``x, y, pen`` in the unit box.

The layout of :class:`sketchbench.Sketch` (whose constructors call these functions): x, y in [0, 1]
(y grows downwards, as on a canvas), ``pen == 1`` on the last point of each stroke. Stroke-5 rows
``(dx, dy, p1, p2, p3)`` are sketch-RNN's: offsets from the previous point (the first from the
origin), one-hot pen state, a final end-of-sketch row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SketchInputError(ValueError):
    """A sketch that cannot be used (no points, NaN, all points equal, a bad shape): one line."""


def to_unit_box(xyp: np.ndarray, *, normalise: bool = True, margin: float = 0.0) -> np.ndarray:
    """Absolute ``(x, y, pen)`` rows → float32 points: ``pen`` thresholded at 0.5 and closed on the
    last row; with ``normalise`` scaled uniformly so that the longer side spans the unit box minus
    ``margin`` on each side, and centred (what the dataset loaders do)."""
    arr = np.asarray(xyp, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise SketchInputError(f"expected an (N, 3) array of x, y, pen, got shape {arr.shape}")
    if len(arr) == 0:
        raise SketchInputError("sketch has no points")
    if not np.isfinite(arr).all():
        raise SketchInputError("sketch has NaN or infinite coordinates")
    if not 0.0 <= margin < 0.5:
        raise SketchInputError(f"margin must be in [0, 0.5), got {margin}")
    pts = arr.copy()
    pts[:, 2] = (pts[:, 2] > 0.5).astype(np.float64)
    pts[-1, 2] = 1.0
    if normalise:
        lo = pts[:, :2].min(axis=0)
        hi = pts[:, :2].max(axis=0)
        extent = float((hi - lo).max())
        if extent <= 0:
            raise SketchInputError("all points of the sketch are equal")
        scale = (1.0 - 2 * margin) / extent
        centre = (lo + hi) / 2
        # clip away float rounding (-1e-16) so that the [0, 1] contract holds exactly
        pts[:, :2] = np.clip((pts[:, :2] - centre) * scale + 0.5, 0.0, 1.0)
    return pts.astype(np.float32)


def polylines_to_xyp(strokes: Sequence[np.ndarray | Sequence[Sequence[float]]]) -> np.ndarray:
    """One ``(n_i, 2)`` polyline per stroke → ``(N, 3)`` float64 ``x, y, pen`` rows (empty strokes
    are skipped)."""
    if isinstance(strokes, np.ndarray) or not isinstance(strokes, Sequence):
        raise SketchInputError("strokes must be a list of polylines")
    parts = []
    for k, stroke in enumerate(strokes):
        try:
            s = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError):
            raise SketchInputError(f"stroke {k} is not a list of [x, y] points") from None
        if s.size == 0:
            continue
        if s.ndim != 2 or s.shape[1] != 2:
            raise SketchInputError(f"stroke {k} is not a list of [x, y] points (shape {s.shape})")
        pen = np.zeros((len(s), 1))
        pen[-1] = 1
        parts.append(np.hstack([s, pen]))
    if not parts:
        raise SketchInputError("sketch has no points")
    return np.vstack(parts)


def query_points(sketch: np.ndarray | Sequence) -> np.ndarray:
    """A user's sketch as points, by the rule of ``sketchbench retrieve`` and ``demo``: an ``(N, 3)``
    ``x, y, pen`` array or a list of ``(n_i, 2)`` polylines; kept as is when every coordinate lies in
    [0, 1] (a sketch already in the unit box), else scaled uniformly into it (pixels)."""
    if isinstance(sketch, np.ndarray) and sketch.ndim == 2 and sketch.shape[1] == 3:
        arr = np.asarray(sketch, dtype=np.float64)
    else:
        arr = polylines_to_xyp(sketch)
    inside = len(arr) and np.isfinite(arr).all() and arr[:, :2].min() >= 0.0 and arr[:, :2].max() <= 1.0
    return to_unit_box(arr, normalise=not inside)


def stroke_ends(points: np.ndarray) -> np.ndarray:
    """Index of the last point of each stroke."""
    return np.flatnonzero(points[:, 2] > 0.5)


def strokes(points: np.ndarray) -> list[np.ndarray]:
    """The ``(n_i, 2)`` point arrays of each stroke, in drawing order."""
    return np.split(points[:, :2], stroke_ends(points)[:-1] + 1)


def stroke5(points: np.ndarray) -> np.ndarray:
    """Stroke-5 ``(N + 1, 5)`` float32: offsets from the previous point (the first from the origin
    (0, 0)), one-hot pen state, and a final end-of-sketch row."""
    pts = points.astype(np.float64)
    n = len(pts)
    out = np.zeros((n + 1, 5), dtype=np.float32)
    out[0, :2] = pts[0, :2]
    out[1:n, :2] = pts[1:, :2] - pts[:-1, :2]
    up = pts[:, 2] > 0.5
    out[:n, 2] = ~up
    out[:n, 3] = up
    out[n, 4] = 1
    return out
