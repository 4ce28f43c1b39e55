"""Rendering sketches on a c×c canvas, directly at that size.

Vector sketches are drawn at the canvas size (not by shrinking a 256 image), anti-aliased by
drawing at ``SUPERSAMPLE``× and box-filtering down. Raster-only sketches (QMUL-V1) are
downscaled with an ink-preserving filter so that thin lines survive at 32×32.

Output convention everywhere: uint8 (c, c), black (0) strokes on white (255).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .sketch import Sketch

SUPERSAMPLE = 4
#: fraction of the canvas left blank on each side
MARGIN = 0.06


def stroke_width(canvas: int) -> float:
    """Stroke width in canvas pixels: 1 px up to 64, then growing as canvas/64 (2 px at 128,
    4 px at 256), so a sketch keeps the same relative line weight at large canvases while small
    canvases keep lines as thin as a pixel allows."""
    return max(1.0, canvas / 64.0)


def render_sketch(sketch: Sketch, canvas: int) -> np.ndarray:
    """Draw a vector sketch on a ``canvas``×``canvas`` image."""
    s = SUPERSAMPLE
    size = canvas * s
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    width = max(1, round(stroke_width(canvas) * s))
    scale = size * (1 - 2 * MARGIN)
    offset = size * MARGIN
    for stroke in sketch.strokes():
        pts = [(float(x) * scale + offset, float(y) * scale + offset) for x, y in stroke]
        if len(pts) == 1:
            x, y = pts[0]
            r = width / 2
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        else:
            draw.line(pts, fill=255, width=width, joint="curve")
    ink = np.asarray(img.resize((canvas, canvas), Image.BOX), dtype=np.uint8)
    return 255 - ink


def downscale_raster(raster: np.ndarray, canvas: int) -> np.ndarray:
    """Ink-preserving downscale of a black-on-white raster: each output pixel takes the darkest
    value of its input block blended with the block mean, so 1-px lines do not vanish."""
    img = np.asarray(raster, dtype=np.uint8)
    if img.shape[0] == canvas and img.shape[1] == canvas:
        return img.copy()
    ink = 255 - img.astype(np.float32)
    pil = Image.fromarray(ink.astype(np.uint8))
    mean = np.asarray(pil.resize((canvas, canvas), Image.BOX), dtype=np.float32)
    # max-pool of ink through a reduce: a line thinner than the block survives
    factor = max(1, img.shape[0] // canvas)
    if factor > 1:
        h = (img.shape[0] // factor) * factor
        w = (img.shape[1] // factor) * factor
        blocks = ink[:h, :w].reshape(h // factor, factor, w // factor, factor).max(axis=(1, 3))
        peak = np.asarray(Image.fromarray(blocks.astype(np.uint8)).resize((canvas, canvas), Image.BOX), dtype=np.float32)
    else:
        peak = mean
    out = np.clip(0.5 * peak + 0.5 * np.minimum(255, mean * 3), 0, 255)
    return (255 - out).astype(np.uint8)


def render_item(vector: Sketch | None, raster: np.ndarray | None, canvas: int) -> np.ndarray:
    """Render a sketch from its vector form when it has one, else from its raster."""
    if vector is not None:
        return render_sketch(vector, canvas)
    if raster is not None:
        return downscale_raster(raster, canvas)
    raise ValueError("sketch has neither a vector nor a raster form")


def vectorise(raster: np.ndarray, threshold: int = 128) -> Sketch:
    """Trace a black-on-white raster into strokes (placeholder: replaced by skeleton tracing)."""
    ys, xs = np.nonzero(np.asarray(raster) < threshold)
    if len(xs) == 0:
        from .sketch import BadSketch

        raise BadSketch("raster has no ink")
    order = np.lexsort((xs, ys))
    pts = np.stack([xs[order], ys[order]], axis=1).astype(np.float64)[::8]
    return Sketch.from_strokes([pts])
