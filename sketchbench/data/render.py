"""Rendering sketches on a c×c canvas, directly at that size.

* :func:`render_sketch` draws a vector sketch at the canvas size (not by shrinking a 256 image):
  Pillow lines at ``supersample(c)``× the canvas (≈ 512 px), round caps and joints,
  box-filtered down, so the edges are anti-aliased. The line width follows :func:`stroke_width`.
  The drawing itself lives in :mod:`sketchbench_query.render` (numpy + Pillow, no torch), so that a
  deployed query draws exactly what the encoders were trained on.
* :func:`downscale_raster` shrinks a black-on-white raster (QMUL-V1 ``.mat`` sketches) so that
  1-px lines survive at 32×32: a grey dilation by the shrink factor, then an area average.

The way back (raster → strokes, for selectors that read vector sketches) is
:mod:`sketchbench.data.vectorise`.

Output convention everywhere: uint8 (c, c), black (0) strokes on white (255).
The algorithms, the width table and measured speeds are in ``docs/rendering.md``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sketchbench.data.sketch import BadSketch, Sketch
from sketchbench_query.points import SketchInputError
from sketchbench_query.render import (  # noqa: F401  (the renderer's settings, named here as before)
    DRAW_SIZE,
    MARGIN,
    REFERENCE_WIDTH,
    SUPERSAMPLE,
    render_points,
    stroke_width,
    supersample,
)


def render_sketch(sketch: Sketch, canvas: int) -> np.ndarray:
    """Draw a vector sketch on a ``canvas``×``canvas`` uint8 image, black on white, anti-aliased.

    The sketch's unit box maps to the canvas minus :data:`MARGIN` on each side. The drawing is
    :func:`sketchbench_query.render_points` (numpy + Pillow), which a deployed query runs too.
    """
    try:
        return render_points(sketch.points, canvas)
    except SketchInputError as exc:
        raise BadSketch(str(exc)) from None


def as_gray(raster: np.ndarray) -> np.ndarray:
    """A 2-D uint8 image from a grey (H, W) or colour (H, W, 3|4) raster; BadSketch otherwise."""
    img = np.asarray(raster)
    if img.ndim == 3 and img.shape[2] in (1, 3, 4):
        img = img[..., :3].mean(axis=2) if img.shape[2] > 1 else img[..., 0]
    if img.ndim != 2 or img.size == 0:
        raise BadSketch(f"expected a 2-D grey raster, got shape {np.asarray(raster).shape}")
    if img.dtype != np.uint8:
        if not np.isfinite(img).all():
            raise BadSketch("raster has NaN or infinite values")
        if img.dtype == bool:
            img = np.where(img, 0, 255)  # True = ink
        elif img.max() <= 1.0:
            img = img * 255.0  # a float image in [0, 1]
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    # loadmat gives Fortran-ordered stacks: a strided slice makes every later pass ~3x slower
    return np.ascontiguousarray(img)


def _running_max(a: np.ndarray, k: int) -> np.ndarray:
    """``k``-wide running maximum down axis 0 (window ``[i - k//2, i - k//2 + k)``, zeros
    outside), the window doubled ``log2 k`` times: ~2× faster than ``ndimage.maximum_filter``
    here, with the same result."""
    n, lo = a.shape[0], k // 2
    m = np.zeros((n + k - 1, *a.shape[1:]), dtype=a.dtype)
    m[lo : lo + n] = a
    p = 1
    while 2 * p <= k:  # m[i] = max of the p source rows from i
        m = np.maximum(m[:-p], m[p:])
        p *= 2
    return np.maximum(m[:n], m[k - p : k - p + n])


def downscale_raster(raster: np.ndarray, canvas: int) -> np.ndarray:
    """Ink-preserving downscale of a black-on-white raster to ``canvas``×``canvas``.

    The ink is grey-dilated by the shrink factor ``k = round(side / canvas)`` (a k×k maximum
    filter) and then area-averaged: a 1-px source line becomes k px wide, i.e. exactly one
    output pixel after averaging, so it stays a dark, anti-aliased 1-px line at any canvas (a
    plain area average would fade it to 1/k grey). A non-square raster is padded with white to
    a square first (centred), so the drawing keeps its aspect ratio.
    """
    if canvas < 1:
        raise BadSketch(f"canvas must be a positive size, got {canvas}")
    img = as_gray(raster)
    h, w = img.shape
    if h != w:
        side = max(h, w)
        square = np.full((side, side), 255, dtype=np.uint8)
        square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = img
        img = square
    side = img.shape[0]
    if side == canvas:
        return img.copy()
    ink = 255 - img
    if side > canvas:
        k = int(round(side / canvas))
        if k > 1:
            ink = np.ascontiguousarray(_running_max(_running_max(ink, k).T, k).T)
        out = Image.fromarray(ink).resize((canvas, canvas), Image.BOX)
    else:
        out = Image.fromarray(ink).resize((canvas, canvas), Image.BILINEAR)
    return 255 - np.asarray(out, dtype=np.uint8)


def render_item(vector: Sketch | None, raster: np.ndarray | None, canvas: int) -> np.ndarray:
    """Render a sketch from its vector form when it has one, else from its raster."""
    if vector is not None:
        return render_sketch(vector, canvas)
    if raster is not None:
        return downscale_raster(raster, canvas)
    raise BadSketch("sketch has neither a vector nor a raster form")
