"""The vector sketch: strokes of absolute points with pen lifts, in a unit box.

Storage is one ``(N, 3)`` float32 array ``[x, y, pen]`` (the ShoeV2/ChairV2 convention): x, y in
[0, 1] (y grows downwards, as on a canvas) and ``pen == 1`` on the last point of each stroke.
Every ``Sketch`` is checked on construction: at least one finite point, ``pen`` in {0, 1} and
``pen == 1`` on the last row, so ``strokes()`` never loses trailing points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sketchbench.base.errors import DataError
from sketchbench_query import points as _points
from sketchbench_query.rdp import simplify as _simplify


class BadSketch(DataError, ValueError):
    """A sketch that cannot be used: no points, NaN coordinates, all points equal.

    It is a :class:`~sketchbench.base.errors.DataError` (the CLI prints its one line) and, for older
    callers, a ``ValueError``.
    """


@dataclass(frozen=True, eq=False)
class Sketch:
    points: np.ndarray  # (N, 3) float32: x, y in [0, 1], pen = 1 ends a stroke

    def __post_init__(self) -> None:
        pts = np.ascontiguousarray(self.points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise BadSketch(f"expected an (N, 3) array of x, y, pen, got shape {pts.shape}")
        if len(pts) == 0:
            raise BadSketch("sketch has no points")
        if not np.isfinite(pts).all():
            raise BadSketch("sketch has NaN or infinite coordinates")
        pen = pts[:, 2]
        if pen[-1] != 1 or not ((pen == 0) | (pen == 1)).all():
            # a pen column that is not exactly 0/1, or a last stroke left open, would make
            # strokes() and num_strokes disagree: threshold it and close the last stroke
            pts = pts.copy()
            pts[:, 2] = pts[:, 2] > 0.5
            pts[-1, 2] = 1
        object.__setattr__(self, "points", pts)

    # Value semantics: the generated dataclass __eq__/__hash__ would compare/hash the ndarray
    # and raise; two sketches are equal when their point arrays are identical.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return self.points.shape == other.points.shape and bool(np.array_equal(self.points, other.points))

    def __hash__(self) -> int:
        return hash((self.points.shape, self.points.tobytes()))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_xyp(cls, array: np.ndarray, *, normalise: bool = True, margin: float = 0.0) -> Sketch:
        """From absolute ``(x, y, pen)`` rows (ShoeV2/ChairV2 pickles, FS-COCO .npy).

        With ``normalise`` the sketch is scaled uniformly so that its longer side spans the unit
        box minus ``margin`` on each side, and centred. Raises :class:`BadSketch`.
        """
        try:
            return cls(_points.to_unit_box(array, normalise=normalise, margin=margin))
        except _points.SketchInputError as exc:
            raise BadSketch(str(exc)) from None

    @classmethod
    def from_strokes(cls, strokes: list[np.ndarray], *, normalise: bool = True, margin: float = 0.0) -> Sketch:
        """From a list of ``(n_i, 2)`` point arrays, one per stroke (empty strokes are skipped)."""
        parts = []
        for stroke in strokes:
            s = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
            if len(s) == 0:
                continue
            pen = np.zeros((len(s), 1))
            pen[-1] = 1
            parts.append(np.hstack([s, pen]))
        if not parts:
            raise BadSketch("sketch has no points")
        return cls.from_xyp(np.vstack(parts), normalise=normalise, margin=margin)

    @classmethod
    def from_stroke5(cls, seq: np.ndarray, *, normalise: bool = True) -> Sketch:
        """From stroke-5 rows ``(dx, dy, p1, p2, p3)``: p1 pen down, p2 pen up after this point, p3 end.

        The first row's offset is from the origin (0, 0), as :meth:`to_stroke5` writes it; rows
        from the first ``p3`` on (the end token and any padding) are ignored. ``normalise`` as in
        :meth:`from_xyp` (a no-op on a sketch that already fills the unit box).
        """
        seq = np.asarray(seq, dtype=np.float64)
        if seq.ndim != 2 or seq.shape[1] != 5:
            raise BadSketch(f"expected an (N, 5) stroke-5 array, got shape {seq.shape}")
        end = np.nonzero(seq[:, 4] > 0.5)[0]
        if len(end):
            seq = seq[: end[0]]
        xy = np.cumsum(seq[:, :2], axis=0)
        pen = seq[:, 3]
        return cls.from_xyp(np.hstack([xy, pen[:, None]]), normalise=normalise)

    # -- views and conversions -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.points)

    @property
    def num_strokes(self) -> int:
        return int(self.points[:, 2].sum())

    def strokes(self) -> list[np.ndarray]:
        """The ``(n_i, 2)`` point arrays of each stroke, in drawing order."""
        return _points.strokes(self.points)

    def to_xyp(self, scale: float = 1.0) -> np.ndarray:
        """``(N, 3)`` absolute ``x, y, pen`` rows, coordinates multiplied by ``scale``."""
        out = self.points.astype(np.float64)
        out[:, :2] *= scale
        return out

    def to_stroke5(self) -> np.ndarray:
        """Stroke-5 ``(N + 1, 5)``: offsets from the previous point (the first from the origin
        (0, 0)), one-hot pen state, and a final end-of-sketch row."""
        return _points.stroke5(self.points)

    def prefix(self, num_strokes: int) -> Sketch:
        """The partial sketch made of its first ``num_strokes`` strokes (on-the-fly retrieval).

        ``num_strokes`` is clipped to ``[1, self.num_strokes]``: a sketch has at least one stroke.
        """
        ends = np.nonzero(self.points[:, 2] > 0.5)[0]
        k = max(1, min(int(num_strokes), len(ends)))
        return Sketch(self.points[: ends[k - 1] + 1].copy())

    def simplify(self, max_points: int | None = None, epsilon: float = 0.002) -> Sketch:
        """Ramer–Douglas–Peucker on each stroke with tolerance ``epsilon`` (unit-box units).

        With ``max_points``, ``epsilon`` grows ×1.5 until at most ``max_points`` points remain. RDP
        always keeps the two end points of a stroke, so if that is still too many the shortest
        strokes are dropped (drawing order is kept). ``max_points`` must be at least 2. Compiled
        (the ``simplification`` package) in :func:`sketchbench_query.simplify`, which a deployed
        query runs too; equally distant farthest points split at the first, as before.
        """
        try:
            return Sketch(_simplify(self.points, max_points, epsilon))
        except _points.SketchInputError as exc:
            raise BadSketch(str(exc)) from None

    def bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of all points."""
        lo = self.points[:, :2].min(axis=0)
        hi = self.points[:, :2].max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _rdp_mask(points: np.ndarray, eps: float) -> np.ndarray:
    """Boolean mask of the points Ramer–Douglas–Peucker keeps (iterative, no recursion limit).

    Distances are to the *segment* between the two kept points, not to its infinite line: with
    the line distance a stroke that runs past its end point and doubles back (a tick, a
    scribble) has its far point at distance 0 and is cut short.
    """
    n = len(points)
    keep = np.zeros(n, dtype=bool)
    if n <= 2:
        keep[:] = True
        return keep
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = points[i], points[j]
        seg = points[i + 1 : j]
        ab = b - a
        norm2 = float(ab @ ab)
        if norm2 == 0:
            t = np.zeros(len(seg))
        else:
            t = np.clip((seg - a) @ ab / norm2, 0.0, 1.0)
        dist = np.hypot(*(seg - a - t[:, None] * ab).T)
        k = int(np.argmax(dist))
        if dist[k] > eps:
            m = i + 1 + k
            keep[m] = True
            stack.append((i, m))
            stack.append((m, j))
    return keep
