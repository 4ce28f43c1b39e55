"""The vector sketch: strokes of absolute points with pen lifts, in a unit box.

Storage is one ``(N, 3)`` float32 array ``[x, y, pen]`` (the ShoeV2/ChairV2 convention): x, y in
[0, 1] (y grows downwards, as on a canvas) and ``pen == 1`` on the last point of each stroke.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class BadSketch(ValueError):
    """A sketch that cannot be used: no points, NaN coordinates, all points equal."""


@dataclass(frozen=True)
class Sketch:
    points: np.ndarray  # (N, 3) float32: x, y in [0, 1], pen = 1 ends a stroke

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_xyp(cls, array: np.ndarray, *, normalise: bool = True, margin: float = 0.0) -> Sketch:
        """From absolute ``(x, y, pen)`` rows (ShoeV2/ChairV2 pickles, FS-COCO .npy).

        With ``normalise`` the sketch is scaled uniformly so that its longer side spans the unit
        box minus ``margin`` on each side, and centred. Raises :class:`BadSketch`.
        """
        arr = np.asarray(array, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise BadSketch(f"expected an (N, 3) array of x, y, pen, got shape {arr.shape}")
        if len(arr) == 0:
            raise BadSketch("sketch has no points")
        if not np.isfinite(arr).all():
            raise BadSketch("sketch has NaN or infinite coordinates")
        pts = arr.copy()
        pts[:, 2] = (pts[:, 2] > 0.5).astype(np.float64)
        pts[-1, 2] = 1.0
        if normalise:
            lo = pts[:, :2].min(axis=0)
            hi = pts[:, :2].max(axis=0)
            extent = float((hi - lo).max())
            if extent <= 0:
                raise BadSketch("all points of the sketch are equal")
            scale = (1.0 - 2 * margin) / extent
            centre = (lo + hi) / 2
            pts[:, :2] = (pts[:, :2] - centre) * scale + 0.5
        return cls(pts.astype(np.float32))

    @classmethod
    def from_strokes(cls, strokes: list[np.ndarray], *, normalise: bool = True, margin: float = 0.0) -> Sketch:
        """From a list of ``(n_i, 2)`` point arrays, one per stroke."""
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
        """From stroke-5 rows ``(dx, dy, p1, p2, p3)``: p1 pen down, p2 pen up after this point, p3 end."""
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
        ends = np.nonzero(self.points[:, 2] > 0.5)[0]
        out, start = [], 0
        for end in ends:
            out.append(self.points[start : end + 1, :2])
            start = end + 1
        return out

    def to_xyp(self, scale: float = 1.0) -> np.ndarray:
        """``(N, 3)`` absolute ``x, y, pen`` rows, coordinates multiplied by ``scale``."""
        out = self.points.astype(np.float64).copy()
        out[:, :2] *= scale
        return out

    def to_stroke5(self) -> np.ndarray:
        """Stroke-5 ``(N + 1, 5)``: offsets from the previous point (the first from the origin
        (0, 0)), one-hot pen state, and a final end-of-sketch row."""
        pts = self.points.astype(np.float32)
        n = len(pts)
        out = np.zeros((n + 1, 5), dtype=np.float32)
        out[0, :2] = pts[0, :2]
        out[1:n, :2] = pts[1:, :2] - pts[:-1, :2]
        up = pts[:, 2] > 0.5
        out[:n, 2] = ~up
        out[:n, 3] = up
        out[n, 4] = 1
        return out

    def prefix(self, num_strokes: int) -> Sketch:
        """The partial sketch made of its first ``num_strokes`` strokes (on-the-fly retrieval)."""
        ends = np.nonzero(self.points[:, 2] > 0.5)[0]
        k = max(1, min(num_strokes, len(ends)))
        return Sketch(self.points[: ends[k - 1] + 1].copy())

    def simplify(self, max_points: int | None = None, epsilon: float = 0.002) -> Sketch:
        """Ramer–Douglas–Peucker on each stroke; ``epsilon`` grows until at most ``max_points``
        remain (the stroke end points are always kept)."""
        eps = epsilon
        while True:
            kept = [s[_rdp_mask(s, eps)] for s in self.strokes()]
            total = sum(len(k) for k in kept)
            if max_points is None or total <= max_points or eps > 1.0:
                break
            eps *= 1.5
        return Sketch.from_strokes(kept, normalise=False)

    def bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of all points."""
        lo = self.points[:, :2].min(axis=0)
        hi = self.points[:, :2].max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _rdp_mask(points: np.ndarray, eps: float) -> np.ndarray:
    """Boolean mask of the points Ramer–Douglas–Peucker keeps (iterative, no recursion limit)."""
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
        norm = float(np.hypot(*ab))
        if norm == 0:
            dist = np.hypot(*(seg - a).T)
        else:
            dist = np.abs(ab[0] * (seg[:, 1] - a[1]) - ab[1] * (seg[:, 0] - a[0])) / norm
        k = int(np.argmax(dist))
        if dist[k] > eps:
            m = i + 1 + k
            keep[m] = True
            stack.append((i, m))
            stack.append((m, j))
    return keep
