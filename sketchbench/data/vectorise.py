"""Vectorising: tracing a black-on-white raster back into strokes.

QMUL-V1 ships raster sketches only, but SketchyNetV2's canvas selector reads vector sketches
(stroke-5 sequences). :func:`vectorise` recovers strokes: binarise, Guo–Hall thinning
(scikit-image's ``morphology.thin``) plus a clean-up of redundant staircase pixels, skeleton-graph
tracing between end points and junctions, spur pruning, joining at junctions, RDP. The algorithm
and measured speeds are in ``docs/rendering.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sketchbench.data.render import as_gray
from sketchbench.data.sketch import BadSketch, Sketch, _rdp_mask

# Neighbour bits of a pixel, clockwise from north: bit 0 = N, 1 = NE, 2 = E, 3 = SE, 4 = S,
# 5 = SW, 6 = W, 7 = NW. The 3×3 kernel is for ndimage.correlate, whose kernel[1 + dr, 1 + dc]
# weighs the pixel at offset (dr, dc).
_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
_KERNEL = np.zeros((3, 3), dtype=np.uint8)
for _bit, (_dr, _dc) in enumerate(_OFFSETS):
    _KERNEL[1 + _dr, 1 + _dc] = 1 << _bit


def _neighbourhood_luts() -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables over the 256 neighbourhood codes: the neighbour count, and Yokoi's
    8-connectivity number (1 = removing the pixel changes no connectivity: a "simple" pixel)."""
    count = np.zeros(256, dtype=np.uint8)
    yokoi = np.zeros(256, dtype=np.uint8)
    order = (2, 1, 0, 7, 6, 5, 4, 3)  # x1..x8 = E, NE, N, NW, W, SW, S, SE
    for code in range(256):
        x = [(code >> b) & 1 for b in order]
        count[code] = sum(x)
        # Yokoi's number: sum over the 4-neighbours k of q_k - q_k q_k+1 q_k+2 (q = 1 - x)
        q = [1 - v for v in x]
        yokoi[code] = sum(q[k] - q[k] * q[(k + 1) % 8] * q[(k + 2) % 8] for k in (0, 2, 4, 6))
    return count, yokoi


_COUNT, _YOKOI = _neighbourhood_luts()


def _neighbour_codes(img: np.ndarray) -> np.ndarray:
    return ndimage.correlate(img, _KERNEL, mode="constant", cval=0)


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a boolean mask to a 1-px, 8-connected skeleton: Guo–Hall (scikit-image's
    ``morphology.thin``, Guo & Hall 1989, CACM 32(3)), then a clean-up.

    Guo–Hall rather than Zhang–Suen: both are parallel two-sub-iteration LUT algorithms, but
    Zhang–Suen erases 2-px-thick diagonal lines entirely (measured: one diagonal of an "X"
    rendered at 256 px vanished) while Guo–Hall keeps them. Any redundant "staircase" pixel
    left (3+ neighbours but simple, i.e. Yokoi number 1) would look like a junction to the
    tracer, so such pixels are then removed one at a time (sequentially, so that two redundant
    neighbours cannot both go).
    """
    from skimage.morphology import thin as guo_hall  # imported here: only vectorising needs scikit-image

    img = np.ascontiguousarray(guo_hall(np.asarray(mask, dtype=bool)), dtype=np.uint8)
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
    :class:`~sketchbench.data.sketch.BadSketch` when the raster holds no usable ink.
    """
    img = as_gray(raster)
    ink = img < threshold
    if not ink.any():
        raise BadSketch("raster has no ink")
    side = max(img.shape)
    ink, origin = _ink_box(ink)
    paths, ends, pw = _trace(thin(ink))
    if not paths:
        raise BadSketch("raster has no strokes to trace")
    xys = [_path_xy(p, pw, origin) for p in paths]
    min_px = max(2.0, min_length * side)
    xys, ends = _drop_spurs(xys, ends, min_px)
    strokes = _chain(xys, _links(xys, ends, join_angle))
    # 6. fragments, order, simplification
    strokes = [s for s in strokes if _length(s) >= min_px]
    if not strokes:
        raise BadSketch("raster has no strokes longer than the fragment threshold")
    strokes = [s[_rdp_mask(s, epsilon)] for s in strokes]
    strokes.sort(key=_length, reverse=True)
    return Sketch.from_strokes(strokes)


def _ink_box(ink: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """1. The drawing's box of ``ink`` (less to thin) with pin-holes of at most 4 px inside strokes
    filled, and the box's (row, column) in the raster."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    holes, n_holes = ndimage.label(~ink)
    if n_holes:
        sizes = np.bincount(holes.ravel())
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        small = sizes <= 4
        small[0] = False
        small[border] = False
        ink |= small[holes]
    return ink, (int(rows[0]), int(cols[0]))


def _path_xy(path: list[int], pw: int, origin: tuple[int, int]) -> np.ndarray:
    """A traced path (flat indices into the padded box) → (x, y) in raster pixels (pixel centres)."""
    r, c = np.divmod(np.asarray(path), pw)
    return np.stack([c - 1 + origin[1] + 0.5, r - 1 + origin[0] + 0.5], axis=1).astype(np.float64)


def _drop_spurs(xys: list[np.ndarray], ends: list[tuple[object, object]],
                min_px: float) -> tuple[list[np.ndarray], list[tuple[object, object]]]:
    """4. Spurs (short paths with a free end point) and fragments (short paths with no junction) dropped."""
    keep = []
    for i, (a, b) in enumerate(ends):
        free = (a is None or a[0] == "e") or (b is None or b[0] == "e")  # type: ignore[index]
        if not (free and _length(xys[i]) < min_px):
            keep.append(i)
    if not keep:
        raise BadSketch("raster has no strokes longer than the fragment threshold")
    return [xys[i] for i in keep], [ends[i] for i in keep]


def _links(xys: list[np.ndarray], ends: list[tuple[object, object]],
           join_angle: float) -> dict[tuple[int, int], tuple[int, int]]:
    """5. Which path end continues which, at shared junctions: the two ends where exactly two
    meet, else the pairs that continue each other best (within ``join_angle`` of straight)."""
    at_node: dict[object, list[tuple[int, int]]] = {}
    for i, pair in enumerate(ends):
        for e, k in enumerate(pair):
            if k is not None and k[0] == "j":  # type: ignore[index]
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
    return links


def _chain(xys: list[np.ndarray], links: dict[tuple[int, int], tuple[int, int]]) -> list[np.ndarray]:
    """Paths joined into strokes along ``links``: open chains from their free end, then closed ones."""
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
    return strokes
