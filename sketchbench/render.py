"""Rendering sketches on a c×c canvas, directly at that size, and the raster → vector way back.

* :func:`render_sketch` draws a vector sketch at the canvas size (not by shrinking a 256 image):
  Pillow lines at ``supersample(c)``× the canvas (≈ 512 px), round caps and joints,
  box-filtered down, so the edges are anti-aliased. The line width follows :func:`stroke_width`.
* :func:`downscale_raster` shrinks a black-on-white raster (QMUL-V1 ``.mat`` sketches) so that
  1-px lines survive at 32×32: a grey dilation by the shrink factor, then an area average.
* :func:`vectorise` traces a raster into strokes: binarise, Guo–Hall thinning, skeleton-graph
  tracing between end points and junctions, spur pruning, joining at junctions, RDP.

Output convention everywhere: uint8 (c, c), black (0) strokes on white (255).
The algorithms, the width table and measured speeds are in ``docs/rendering.md``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .sketch import BadSketch, Sketch, _rdp_mask

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


def _as_gray(raster: np.ndarray) -> np.ndarray:
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
    img = _as_gray(raster)
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


# ---------------------------------------------------------------------------------------------
# vectorisation: Guo–Hall thinning + skeleton tracing
# ---------------------------------------------------------------------------------------------

# Neighbour bits of a pixel, clockwise from north: bit 0 = N, 1 = NE, 2 = E, 3 = SE, 4 = S,
# 5 = SW, 6 = W, 7 = NW. The 3×3 kernel is for ndimage.correlate, whose kernel[1 + dr, 1 + dc]
# weighs the pixel at offset (dr, dc).
_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
_KERNEL = np.zeros((3, 3), dtype=np.uint8)
for _bit, (_dr, _dc) in enumerate(_OFFSETS):
    _KERNEL[1 + _dr, 1 + _dc] = 1 << _bit


def _thinning_luts() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Look-up tables over the 256 neighbourhood codes: the deletion tests of the two
    sub-iterations of Guo–Hall's algorithm A2 (Guo & Hall 1989, "Parallel thinning with
    two-subiteration algorithms", CACM 32(3); the variant scikit-image's ``thin`` uses), the
    neighbour count, and Yokoi's 8-connectivity number (1 = removing the pixel changes no
    connectivity: a "simple" pixel)."""
    sub1 = np.zeros(256, dtype=bool)
    sub2 = np.zeros(256, dtype=bool)
    count = np.zeros(256, dtype=np.uint8)
    yokoi = np.zeros(256, dtype=np.uint8)
    order = (2, 1, 0, 7, 6, 5, 4, 3)  # Guo–Hall's x1..x8 = E, NE, N, NW, W, SW, S, SE
    for code in range(256):
        x = [(code >> b) & 1 for b in order]
        # G1: exactly one 8-connected neighbour run (the pixel is simple)
        g1 = sum(1 for i in (0, 2, 4, 6) if not x[i] and (x[i + 1] or x[(i + 2) % 8])) == 1
        # G2: 2 <= min(n1, n2) <= 3, which keeps line end points
        n1 = sum(1 for k in (1, 3, 5, 7) if x[k] or x[k - 1])
        n2 = sum(1 for k in (1, 3, 5, 7) if x[k] or x[(k + 1) % 8])
        g2 = 2 <= min(n1, n2) <= 3
        # G3 / G3': delete from the south-east boundary first, then from the north-west
        g3 = not ((x[1] or x[2] or not x[7]) and x[0])
        g3p = not ((x[5] or x[6] or not x[3]) and x[4])
        sub1[code] = g1 and g2 and g3
        sub2[code] = g1 and g2 and g3p
        count[code] = sum(x)
        # Yokoi's number: sum over the 4-neighbours k of q_k - q_k q_k+1 q_k+2 (q = 1 - x)
        q = [1 - v for v in x]
        yokoi[code] = sum(q[k] - q[k] * q[(k + 1) % 8] * q[(k + 2) % 8] for k in (0, 2, 4, 6))
    return sub1, sub2, count, yokoi


_SUB1, _SUB2, _COUNT, _YOKOI = _thinning_luts()


def _neighbour_codes(img: np.ndarray) -> np.ndarray:
    return ndimage.correlate(img, _KERNEL, mode="constant", cval=0)


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a boolean mask to a 1-px, 8-connected skeleton (Guo–Hall A2, then a clean-up).

    Guo–Hall rather than Zhang–Suen: both are parallel two-sub-iteration LUT algorithms, but
    Zhang–Suen erases 2-px-thick diagonal lines entirely (measured: one diagonal of an "X"
    rendered at 256 px vanished) while Guo–Hall keeps them. Any redundant "staircase" pixel
    left (3+ neighbours but simple, i.e. Yokoi number 1) would look like a junction to the
    tracer, so such pixels are then removed one at a time (sequentially, so that two redundant
    neighbours cannot both go).
    """
    img = np.ascontiguousarray(mask, dtype=np.uint8)
    while True:
        changed = False
        for lut in (_SUB1, _SUB2):
            delete = lut[_neighbour_codes(img)] & (img == 1)
            if delete.any():
                img[delete] = 0
                changed = True
        if not changed:
            break
    h, w = img.shape
    pad = np.zeros((h + 2, w + 2), dtype=np.uint8)
    pad[1:-1, 1:-1] = img
    flat = pad.ravel()
    steps = [dr * (w + 2) + dc for dr, dc in _OFFSETS]
    while True:
        codes = _neighbour_codes(pad)
        cand = np.flatnonzero((pad == 1) & (_COUNT[codes] >= 3))
        removed = 0
        for i in cand.tolist():
            code = 0
            for bit, st in enumerate(steps):
                if flat[i + st]:
                    code |= 1 << bit
            if _COUNT[code] >= 2 and _YOKOI[code] == 1:
                flat[i] = 0
                removed += 1
        if not removed:
            break
    return pad[1:-1, 1:-1].astype(bool)


def _trace(skel: np.ndarray) -> tuple[list[list[int]], list[tuple[object, object]], int]:
    """Split a skeleton into paths between nodes (end points, junction clusters).

    Returns the paths (flat pixel indices into a 1-px padded copy of width ``W + 2``), the node
    key at each path's two ends (a junction cluster's label, an end point's pixel index, or
    ``None`` for closed loops), and the padded width.
    """
    h, w = skel.shape
    pw = w + 2
    pad = np.zeros((h + 2, pw), dtype=np.uint8)
    pad[1:-1, 1:-1] = skel
    deg = _COUNT[_neighbour_codes(pad)] * pad
    junction = deg >= 3
    labels, _ = ndimage.label(junction, structure=np.ones((3, 3)))
    flat_on = pad.ravel().astype(bool).tolist()
    flat_lab = labels.ravel().tolist()
    steps = [dr * pw + dc for dr, dc in _OFFSETS]
    # 4-neighbours first: a walk then prefers the straight step over cutting a corner
    steps = steps[0::2] + steps[1::2]

    def key(i: int) -> object:
        return ("j", flat_lab[i]) if flat_lab[i] else ("e", i)

    nodes = np.flatnonzero((pad == 1) & (deg != 2)).tolist()
    is_node = set(nodes)
    visited: set[int] = set()
    paths: list[list[int]] = []
    ends: list[tuple[object, object]] = []
    for n in nodes:
        for st in steps:
            nb = n + st
            if not flat_on[nb] or nb in visited:
                continue
            if nb in is_node:
                continue  # node–node contacts are inside a junction cluster: no stroke there
            path = [n, nb]
            visited.add(nb)
            prev, cur = n, nb
            while True:
                nxt = None
                for st2 in steps:
                    c = cur + st2
                    if c == prev or not flat_on[c]:
                        continue
                    if c in is_node:
                        if c != n or len(path) > 2:
                            nxt = c
                            break
                    elif c not in visited:
                        nxt = c
                        break
                if nxt is None:
                    break
                path.append(nxt)
                if nxt in is_node:
                    break
                visited.add(nxt)
                prev, cur = cur, nxt
            paths.append(path)
            ends.append((key(path[0]), key(path[-1]) if path[-1] in is_node else None))
    # what is left are closed loops of degree-2 pixels
    loop_px = [i for i in np.flatnonzero(pad == 1).tolist() if i not in visited and i not in is_node]
    for start in loop_px:
        if start in visited:
            continue
        path = [start]
        visited.add(start)
        cur = start
        while True:
            nxt = next((cur + st for st in steps if flat_on[cur + st] and cur + st not in visited), None)
            if nxt is None:
                break
            path.append(nxt)
            visited.add(nxt)
            cur = nxt
        path.append(start)
        paths.append(path)
        ends.append((None, None))
    return paths, ends, pw


def _length(xy: np.ndarray) -> float:
    return float(np.hypot(*np.diff(xy, axis=0).T).sum()) if len(xy) > 1 else 0.0


def _direction(xy: np.ndarray, at_end: int, reach: int = 6) -> np.ndarray:
    """Unit vector pointing out of a path at one end (0 = start, 1 = end), over ``reach`` px."""
    if at_end == 0:
        v = xy[0] - xy[min(reach, len(xy) - 1)]
    else:
        v = xy[-1] - xy[max(-reach - 1, -len(xy))]
    n = float(np.hypot(*v))
    return v / n if n > 0 else v


def vectorise(
    raster: np.ndarray,
    threshold: int = 128,
    *,
    min_length: float = 0.02,
    epsilon: float = 0.75,
    join_angle: float = 45.0,
) -> Sketch:
    """Trace a black-on-white raster into a vector :class:`Sketch` with several strokes.

    1. binarise (``pixel < threshold`` is ink), fill pin-holes of ≤ 4 px inside strokes;
    2. Guo–Hall thinning to a 1-px skeleton (:func:`thin`);
    3. trace the skeleton graph: paths between end points and junction clusters, closed loops;
    4. drop spurs and fragments shorter than ``min_length`` × the raster side (thinning bumps,
       specks);
    5. join paths into strokes where exactly two meet, and at junctions pair the ends that
       continue each other best (within ``join_angle`` degrees of straight);
    6. order the strokes longest first (people draw the long outline strokes first) and
       simplify each with Ramer–Douglas–Peucker (``epsilon`` in raster pixels).

    The sketch is normalised to the unit box like the vector datasets. Raises
    :class:`~sketchbench.sketch.BadSketch` when the raster holds no usable ink.
    """
    img = _as_gray(raster)
    ink = img < threshold
    if not ink.any():
        raise BadSketch("raster has no ink")
    side = max(img.shape)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the drawing's box: less to thin
    holes, n_holes = ndimage.label(~ink)
    if n_holes:
        sizes = np.bincount(holes.ravel())
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        small = sizes <= 4
        small[0] = False
        small[border] = False
        ink |= small[holes]
    skel = thin(ink)
    paths, ends, pw = _trace(skel)
    if not paths:
        raise BadSketch("raster has no strokes to trace")
    # padded flat index -> (x, y) in raster pixels (pixel centres)
    xys = []
    for p in paths:
        idx = np.asarray(p)
        r, c = np.divmod(idx, pw)
        xys.append(np.stack([c - 1 + cols[0] + 0.5, r - 1 + rows[0] + 0.5], axis=1).astype(np.float64))
    lengths = [_length(xy) for xy in xys]
    min_px = max(2.0, min_length * side)

    # 4. spurs: short paths with a free end point; fragments: short paths with no junction
    keep = []
    for i, (a, b) in enumerate(ends):
        free = (a is None or a[0] == "e") or (b is None or b[0] == "e")
        if not (free and lengths[i] < min_px):
            keep.append(i)
    xys = [xys[i] for i in keep]
    ends = [ends[i] for i in keep]
    if not xys:
        raise BadSketch("raster has no strokes longer than the fragment threshold")

    # 5. joins at shared nodes
    at_node: dict[object, list[tuple[int, int]]] = {}
    for i, pair in enumerate(ends):
        for e, k in enumerate(pair):
            if k is not None and k[0] == "j":
                at_node.setdefault(k, []).append((i, e))
    links: dict[tuple[int, int], tuple[int, int]] = {}
    cos_limit = -float(np.cos(np.radians(join_angle)))
    for members in at_node.values():
        if len(members) == 2:
            (i, e), (j, f) = members
            if (i, e) != (j, f):
                links[(i, e)] = (j, f)
                links[(j, f)] = (i, e)
            continue
        dirs = {m: _direction(xys[m[0]], m[1]) for m in members}
        pairs = sorted(
            ((float(dirs[m] @ dirs[n]), m, n) for a, m in enumerate(members) for n in members[a + 1 :]),
            key=lambda t: t[0],
        )
        for dot, m, n in pairs:
            if dot > cos_limit:
                break  # the rest bend more than join_angle
            if m in links or n in links:
                continue
            links[m] = n
            links[n] = m

    used = [False] * len(xys)

    def walk(i: int, entry: int) -> np.ndarray:
        parts = []
        while True:
            used[i] = True
            parts.append(xys[i] if entry == 0 else xys[i][::-1])
            nxt = links.get((i, 1 - entry))
            if nxt is None or used[nxt[0]]:
                break
            i, entry = nxt
        return np.concatenate(parts)

    strokes = []
    for i in range(len(xys)):
        if not used[i] and ((i, 0) not in links or (i, 1) not in links):
            strokes.append(walk(i, 0 if (i, 0) not in links else 1))
    for i in range(len(xys)):  # closed chains
        if not used[i]:
            strokes.append(walk(i, 0))

    # 6. fragments, order, simplification
    strokes = [s for s in strokes if _length(s) >= min_px]
    if not strokes:
        raise BadSketch("raster has no strokes longer than the fragment threshold")
    strokes = [s[_rdp_mask(s, epsilon)] for s in strokes]
    strokes.sort(key=_length, reverse=True)
    return Sketch.from_strokes(strokes)
