"""Rendering sketches on a c×c canvas, directly at that size.

* :func:`render_sketch` draws a vector sketch at the canvas size (not by shrinking a 256 image):
  Pillow lines at ``supersample(c)``× the canvas (≈ 512 px), round caps and joints,
  box-filtered down, so the edges are anti-aliased. The line width follows :func:`stroke_width`.
* :func:`downscale_raster` shrinks a black-on-white raster (QMUL-V1 ``.mat`` sketches) so that
  1-px lines survive at 32×32: a grey dilation by the shrink factor, then an area average.

The way back (raster → strokes, for selectors that read vector sketches) is
:mod:`sketchbench.data.vectorise`.

Output convention everywhere: uint8 (c, c), black (0) strokes on white (255).
The algorithms, the width table and measured speeds are in ``docs/rendering.md``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sketchbench.data.sketch import BadSketch, Sketch

#: anti-aliasing: lines are drawn on a canvas of about this size, then box-filtered down
DRAW_SIZE = 512
#: the largest supersampling factor (the smallest is 2)
SUPERSAMPLE = 8
#: fraction of the canvas left blank on each side
MARGIN = 0.06
#: line width on a 256 canvas: the SketchX reference rasteriser (Bresenham + 3×3 cross
#: dilation, used by Baseline_FGSBIR, StyleMeUp and on-the-fly) draws ≈ 3 px lines at 256
REFERENCE_WIDTH = 3.0


def stroke_width(canvas: int) -> float:
    """Stroke width in canvas pixels: ``max(1, 3 * canvas / 256)``.

    At 256 this is the 3 px of the reference rasteriser of the published FG-SBIR code (ChairV2 and
    ShoeV2 at 256), and above ~86 px the line keeps that same weight relative to the canvas (1.5 px
    at 128), so every canvas shows the same drawing. Below ~86 px a proportional line would be thinner than a
    pixel and anti-aliasing would turn it into a faint grey; the 1 px floor keeps strokes dark, so
    small canvases have relatively heavier lines, as a sketch drawn directly on a small grid has.
    """
    return max(1.0, REFERENCE_WIDTH * canvas / 256.0)


def supersample(canvas: int) -> int:
    """The anti-aliasing factor at ``canvas``: draw at about :data:`DRAW_SIZE` px, 2× to 8×
    (8× at 32 and 64, 4× at 128, 2× at 256).

    A constant drawing size keeps the cost about equal at every canvas and gives the small
    canvases, where each pixel counts most, the finest grey levels: against a 16× reference the
    mean error on inked pixels is ~10 grey levels at 32 and 64, ~21 at 128 and ~29 at 256
    (Pillow snaps line ends to the drawing grid, 1/s canvas px).
    """
    return max(2, min(SUPERSAMPLE, DRAW_SIZE // max(1, canvas)))


def render_sketch(sketch: Sketch, canvas: int) -> np.ndarray:
    """Draw a vector sketch on a ``canvas``×``canvas`` uint8 image, black on white, anti-aliased.

    The sketch's unit box maps to the canvas minus :data:`MARGIN` on each side.
    """
    if canvas < 1:
        raise BadSketch(f"canvas must be a positive size, got {canvas}")
    s = supersample(canvas)
    size = canvas * s
    width = max(1, round(stroke_width(canvas) * s))
    # continuous coordinates u in [0, size); Pillow's integer coordinate k is the centre of
    # pixel [k, k + 1), hence the -0.5 (measured: a width-w line at k covers the same rows as
    # an ellipse with bounding box [k + 0.5 - r, k + 0.5 + r], r = (w - 1) / 2)
    xy = sketch.points[:, :2].astype(np.float64) * (size * (1 - 2 * MARGIN)) + (size * MARGIN - 0.5)
    ends = np.nonzero(sketch.points[:, 2] > 0.5)[0] + 1
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    r = (width - 1) / 2
    # round caps always (Pillow's wide lines end flat); round joints (a disc at each vertex,
    # faster than Pillow's joint="curve") only for lines >= 1.5 canvas px: on thinner lines
    # they change ~1 grey level on average and about double the cost
    round_joints = stroke_width(canvas) >= 1.5
    start = 0
    for end in ends.tolist():
        pts = xy[start:end]
        start = end
        if len(pts) > 1:
            draw.line(pts.ravel().tolist(), fill=0, width=width)
        if width >= 3:
            for x, y in (pts.tolist() if round_joints else (pts[0].tolist(), pts[-1].tolist())):
                draw.ellipse((x - r + 0.5, y - r + 0.5, x + r + 0.5, y + r + 0.5), fill=0)
        elif len(pts) == 1:
            x, y = pts[0].tolist()
            draw.rectangle((x, y, x + width - 1, y + width - 1), fill=0)
    return np.array(img.reduce(s), dtype=np.uint8)


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
