"""Drawing a vector sketch on a c×c canvas, directly at that size (numpy + Pillow): the renderer
every sketchbench encoder was trained on (``sketchbench.render_sketch`` calls this), so a deployed
query sees exactly the training images.

Pillow lines at ``supersample(c)``× the canvas (≈ 512 px), round caps and joints, box-filtered
down, so the edges are anti-aliased; the line width follows :func:`stroke_width`. Output: uint8
``(c, c)``, black (0) strokes on white (255). The algorithm, the width table and measured speeds
are in ``docs/rendering.md``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sketchbench_query.points import SketchInputError

#: anti-aliasing: lines are drawn on a canvas of about this size, then box-filtered down
DRAW_SIZE = 512
#: the largest supersampling factor (the automatic smallest is 2; a recipe may ask for 1)
SUPERSAMPLE = 8
#: the largest drawing side (canvas × supersampling) a query may ask for: bounds the image a
#: manifest's recipe (untrusted) can make allocate (64 MB of 8-bit pixels)
MAX_DRAW = 8192
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


def render_points(points: np.ndarray, canvas: int, factor: int | None = None) -> np.ndarray:
    """Draw ``(N, 3)`` ``x, y, pen`` points on a ``canvas``×``canvas`` uint8 image, black on white,
    anti-aliased. The unit box maps to the canvas minus :data:`MARGIN` on each side.

    ``factor`` overrides :func:`supersample` (1 = no anti-aliasing): the ``thumbnail`` selector
    input draws at 2× because its cost is on every query's path and a selector needs no fine grey
    levels (``docs/deploy.md``, "The selection path"); every canvas an encoder sees uses the default."""
    if canvas < 1:
        raise SketchInputError(f"canvas must be a positive size, got {canvas}")
    if factor is not None and not 1 <= int(factor) <= SUPERSAMPLE:
        raise SketchInputError(f"supersampling factor must be 1 to {SUPERSAMPLE}, got {factor}")
    s = supersample(canvas) if factor is None else int(factor)
    size = canvas * s
    if size > MAX_DRAW:
        raise SketchInputError(f"canvas {canvas} at {s}x supersampling is a {size}-px drawing (at most {MAX_DRAW})")
    width = max(1, round(stroke_width(canvas) * s))
    # continuous coordinates u in [0, size); Pillow's integer coordinate k is the centre of
    # pixel [k, k + 1), hence the -0.5 (measured: a width-w line at k covers the same rows as
    # an ellipse with bounding box [k + 0.5 - r, k + 0.5 + r], r = (w - 1) / 2)
    xy = points[:, :2].astype(np.float64) * (size * (1 - 2 * MARGIN)) + (size * MARGIN - 0.5)
    ends = np.nonzero(points[:, 2] > 0.5)[0] + 1
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
