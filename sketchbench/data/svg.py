"""SVG sketches → :class:`~sketchbench.data.sketch.Sketch`, for query files (``sketchbench retrieve``).

A generic reader of the SVG that sketch tools and datasets write: every ``<path>`` (and
``<polyline>``, ``<polygon>``, ``<line>``), with group ``transform``s applied. Each sub-path is one
stroke; line commands keep their end points, Bézier curves (``C S Q T``, relative or absolute,
implicit repeats) are sampled at 8 points per segment and arcs are replaced by their chord. Points
within 0.2 % of the sketch's size of their neighbours' chord are dropped, then the sketch is scaled
into the unit box. These are the rules of the Sketchy loader (``docs/datasets.md``), so a Sketchy SVG
read here gives the sketch that loader gives.

SVG is untrusted input: it is parsed with ``defusedxml`` (no entity expansion, no external entities
or DTD fetching), and an SVG that declares entities is refused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import numpy as np

from sketchbench.base.errors import DataError
from sketchbench.data.sketch import BadSketch, Sketch

#: Ramer–Douglas–Peucker-like tolerance, in units of the sketch's longer side
SIMPLIFY_EPSILON = 0.002

_TOKEN = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


# -- SVG geometry --------------------------------------------------------------------------
#: samples per Bézier segment (Sketchy strokes are chains of short segments; thinning follows)
CURVE_SAMPLES = 8
_T = np.linspace(0, 1, CURVE_SAMPLES + 1)[1:]
#: cubic Bernstein basis at the sample parameters, (CURVE_SAMPLES, 4)
_BASIS = np.stack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T**2, _T**3], axis=1)


def _sample(segments: list[list[float]], lines: list[bool]) -> np.ndarray:
    """Points of one sub-path. Every segment is stored as a cubic ``[x0, y0, ..., x3, y3]`` (a line
    as the degenerate cubic of its end points); all are evaluated in one product, and a line keeps
    only its end point."""
    ctrl = np.asarray(segments, dtype=np.float64).reshape(-1, 4, 2)
    pts = np.einsum("sk,nkd->nsd", _BASIS, ctrl)  # (K, CURVE_SAMPLES, 2)
    keep = np.ones(pts.shape[:2], dtype=bool)
    keep[np.asarray(lines), :-1] = False
    return np.vstack([ctrl[0, 0][None], pts[keep]])


def parse_path_d(d: str) -> list[np.ndarray]:
    """An SVG path ``d`` string as polylines (one ``(n, 2)`` array per sub-path).

    The command loop is plain Python on floats (Sketchy paths are long chains of tiny segments,
    where per-segment NumPy calls would dominate); sampling is one NumPy product per sub-path.
    """
    tokens = _TOKEN.findall(d)
    out: list[np.ndarray] = []
    segs: list[list[float]] = []
    lines: list[bool] = []
    x = y = sx = sy = 0.0
    px = py = None  # the previous control point, reflected by S / T
    prev = ""  # "C" or "Q": the family of the previous segment
    cmd = ""
    i, n_tok = 0, len(tokens)
    pending_start: tuple[float, float] | None = None  # a moveto with no segment yet

    def flush() -> None:
        if segs:
            out.append(_sample(segs, lines))
        elif pending_start is not None:
            out.append(np.array([pending_start]))
        segs.clear()
        lines.clear()

    def seg(c1x: float, c1y: float, c2x: float, c2y: float, ex: float, ey: float, line: bool) -> None:
        segs.append([x, y, c1x, c1y, c2x, c2y, ex, ey])
        lines.append(line)

    while i < n_tok:
        tok = tokens[i]
        if tok.isalpha():
            cmd = tok
            i += 1
            if cmd in "Zz":
                if (x, y) != (sx, sy) and (segs or pending_start is not None):
                    seg(x, y, sx, sy, sx, sy, True)
                x, y, px, prev = sx, sy, None, ""
                continue
        elif not cmd or cmd in "Zz":
            raise ValueError(f"a number where a command was expected in {d[:40]!r}")
        up = cmd.upper()
        n = _ARGS[up]
        if i + n > n_tok:
            raise ValueError(f"command {cmd!r} needs {n} numbers in {d[:40]!r}")
        try:
            v = [float(t) for t in tokens[i : i + n]]
        except ValueError:
            raise ValueError(f"command {cmd!r} needs {n} numbers in {d[:40]!r}") from None
        i += n
        ox, oy = (x, y) if cmd.islower() else (0.0, 0.0)
        if up == "M":
            flush()
            x, y = ox + v[0], oy + v[1]
            sx, sy = x, y
            pending_start = (x, y)
            cmd = "l" if cmd == "m" else "L"  # further pairs after a moveto are linetos
            px, prev = None, ""
            continue
        if not segs and pending_start is None:  # drawing before any moveto starts at the origin
            pending_start = (x, y)
        if up in ("L", "H", "V", "A"):  # an arc is replaced by its chord (sketch strokes do not use arcs)
            if up == "L":
                ex, ey = ox + v[0], oy + v[1]
            elif up == "H":
                ex, ey = ox + v[0], y
            elif up == "V":
                ex, ey = x, oy + v[0]
            else:
                ex, ey = ox + v[5], oy + v[6]
            seg(x, y, ex, ey, ex, ey, True)
            x, y, px, prev = ex, ey, None, ""
        elif up in ("C", "S"):
            if up == "C":
                c1x, c1y, c2x, c2y, ex, ey = ox + v[0], oy + v[1], ox + v[2], oy + v[3], ox + v[4], oy + v[5]
            else:
                c1x, c1y = (2 * x - px, 2 * y - py) if prev == "C" and px is not None else (x, y)
                c2x, c2y, ex, ey = ox + v[0], oy + v[1], ox + v[2], oy + v[3]
            seg(c1x, c1y, c2x, c2y, ex, ey, False)
            x, y, px, py, prev = ex, ey, c2x, c2y, "C"
        else:  # Q / T, elevated to the equivalent cubic
            if up == "Q":
                qx, qy, ex, ey = ox + v[0], oy + v[1], ox + v[2], oy + v[3]
            else:
                qx, qy = (2 * x - px, 2 * y - py) if prev == "Q" and px is not None else (x, y)
                ex, ey = ox + v[0], oy + v[1]
            seg(x + 2 / 3 * (qx - x), y + 2 / 3 * (qy - y), ex + 2 / 3 * (qx - ex), ey + 2 / 3 * (qy - ey), ex, ey, False)
            x, y, px, py, prev = ex, ey, qx, qy, "Q"
    flush()
    return out


def thin(strokes: list[np.ndarray], epsilon: float) -> list[np.ndarray]:
    """Drop points that lie within ``epsilon`` of the chord of their neighbours, in vectorised
    passes over all strokes at once (stroke ends always stay). A cheap stand-in for
    Ramer–Douglas–Peucker: removals alternate between odd and even points, so no two neighbours go
    in the same pass and each decision is made against the current neighbours."""
    lengths = [len(s) for s in strokes]
    pts = np.vstack(strokes)
    fixed = np.zeros(len(pts), dtype=bool)
    ends = np.cumsum(lengths)
    fixed[ends - 1] = True
    fixed[ends - np.asarray(lengths)] = True
    stroke_of = np.repeat(np.arange(len(strokes)), lengths)
    idle = 0
    for k in range(400):
        if len(pts) < 3:
            break
        a, m, b = pts[:-2], pts[1:-1], pts[2:]
        ab = b - a
        norm = np.hypot(ab[:, 0], ab[:, 1])
        cross = np.abs(ab[:, 0] * (m[:, 1] - a[:, 1]) - ab[:, 1] * (m[:, 0] - a[:, 0]))
        dist = np.where(norm > 0, cross / np.maximum(norm, 1e-12), np.hypot(*(m - a).T))
        drop = np.zeros(len(pts), dtype=bool)
        drop[1:-1] = (dist < epsilon) & ~fixed[1:-1]
        drop &= (np.arange(len(pts)) % 2) == (k % 2)
        if not drop.any():
            idle += 1
            if idle >= 2:  # neither parity removes anything: done
                break
            continue
        idle = 0
        keep = ~drop
        pts, fixed, stroke_of = pts[keep], fixed[keep], stroke_of[keep]
    return [pts[stroke_of == i] for i in range(len(strokes))]


def _transform_matrix(text: str | None) -> np.ndarray:
    m = np.eye(3)
    if not text:
        return m
    for name, args in _TRANSFORM.findall(text):
        v = [float(x) for x in _NUM.findall(args)]
        t = np.eye(3)
        if name == "matrix" and len(v) == 6:
            t = np.array([[v[0], v[2], v[4]], [v[1], v[3], v[5]], [0, 0, 1]])
        elif name == "translate" and v:
            t[0, 2], t[1, 2] = v[0], v[1] if len(v) > 1 else 0.0
        elif name == "scale" and v:
            t[0, 0], t[1, 1] = v[0], v[1] if len(v) > 1 else v[0]
        elif name == "rotate" and v:
            a = math.radians(v[0])
            r = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
            if len(v) == 3:
                pre, post = np.eye(3), np.eye(3)
                pre[:2, 2], post[:2, 2] = v[1:3], [-v[1], -v[2]]
                r = pre @ r @ post
            t = r
        elif name == "skewX" and v:
            t[0, 1] = math.tan(math.radians(v[0]))
        elif name == "skewY" and v:
            t[1, 0] = math.tan(math.radians(v[0]))
        m = m @ t
    return m


def _collect(el: Element, matrix: np.ndarray, out: list[np.ndarray]) -> None:
    matrix = matrix @ _transform_matrix(el.get("transform"))
    tag = el.tag.rsplit("}", 1)[-1]
    strokes: list[np.ndarray] = []
    if tag == "path" and el.get("d"):
        strokes = parse_path_d(el.get("d", ""))
    elif tag in ("polyline", "polygon") and el.get("points"):
        pts = np.array([float(x) for x in _NUM.findall(el.get("points", ""))])
        if len(pts) >= 2:
            pts = pts[: len(pts) // 2 * 2].reshape(-1, 2)
            strokes = [np.vstack([pts, pts[:1]]) if tag == "polygon" else pts]
    elif tag == "line":
        strokes = [np.array([[float(el.get(k, 0)) for k in ("x1", "y1")], [float(el.get(k, 0)) for k in ("x2", "y2")]])]
    for s in strokes:
        out.append(s @ matrix[:2, :2].T + matrix[:2, 2])
    for child in el:
        if child.tag.rsplit("}", 1)[-1] not in ("defs", "clipPath", "mask", "symbol", "title", "desc", "metadata"):
            _collect(child, matrix, out)


def svg_strokes(path: Path) -> list[np.ndarray]:
    """Polylines of an SVG sketch file. Raises ValueError/ParseError for a bad file and
    DataError when defusedxml refuses it (entities, external references)."""
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        root = DET.parse(str(path)).getroot()
    except DefusedXmlException as exc:
        raise DataError(f"refused to parse {str(path)!r}: {type(exc).__name__} (unsafe XML)") from None
    out: list[np.ndarray] = []
    _collect(root, np.eye(3), out)
    return out


def load_svg_sketch(path: Path) -> Sketch:
    """One SVG file as a :class:`Sketch` (raises BadSketch/ValueError/ParseError when unusable)."""
    strokes = [s for s in svg_strokes(path) if len(s)]
    if not strokes:
        raise BadSketch("no strokes in the SVG")
    allpts = np.vstack(strokes)
    if not np.isfinite(allpts).all():
        raise BadSketch("the SVG has non-finite coordinates")
    extent = float((allpts.max(axis=0) - allpts.min(axis=0)).max())
    return Sketch.from_strokes(thin(strokes, SIMPLIFY_EPSILON * extent) if extent > 0 else strokes)


def read_svg_sketch(path: Path) -> Sketch:
    """:func:`load_svg_sketch` with every failure as one :class:`DataError` line naming the file."""
    try:
        return load_svg_sketch(Path(path))
    except DataError as exc:
        if isinstance(exc, BadSketch):
            raise DataError(f"SVG {str(path)!r} holds no usable sketch ({exc})") from None
        raise
    except (ParseError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"SVG {str(path)!r} does not parse ({msg})") from None
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None

